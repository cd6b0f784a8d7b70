//! The webhook as the controller process runs it: certificate source, rotation and the HTTPS server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kaito_api::validation::ValidationContext;
use kube::Client;

use super::cert::{self, CertError, SelfManaged};
use super::server::{self, ServeError, Webhook};

/// How often the certificate is checked for rotation (self-managed) or re-read (cert-manager files).
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// The webhook's settings (the controller's `--webhook-*` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to serve HTTPS on.
    pub addr: SocketAddr,
    /// Name of the webhook Service (the certificate's DNS names).
    pub service: String,
    /// The operator's namespace: holds the certificate Secret and the default ConfigMaps. `None` (a local run)
    /// keeps a generated certificate in memory only.
    pub namespace: Option<String>,
    /// Secret holding the self-managed certificate.
    pub secret: String,
    /// Directory with `tls.crt` and `tls.key` from cert-manager; when set the operator neither generates
    /// certificates nor touches `caBundle`s (cert-manager's CA injector does).
    pub cert_dir: Option<PathBuf>,
    /// ValidatingWebhookConfigurations whose `caBundle` the operator maintains.
    pub webhook_configurations: Vec<String>,
}

/// Why the webhook stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The certificate could not be made or loaded.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Serves the webhook until `shutdown` resolves, rotating or re-reading its certificate every [`CHECK_EVERY`].
pub async fn run(
    options: Options,
    client: Client,
    base: ValidationContext,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let managed = options.namespace.as_ref().map(|namespace| SelfManaged {
        client: client.clone(),
        namespace: namespace.clone(),
        secret: options.secret.clone(),
        service: options.service.clone(),
        webhook_configurations: options.webhook_configurations.clone(),
    });
    let load = || async {
        if let Some(dir) = &options.cert_dir {
            let (cert, key) = cert::read_dir(dir)?;
            return Ok::<_, CertError>((cert, key));
        }
        let serving = match &managed {
            Some(managed) => managed.ensure().await?,
            None => {
                // A local run: an in-memory certificate, published to the configurations it was told about.
                let serving = cert::generate(&options.service, "default", cert::VALIDITY)?;
                for name in &options.webhook_configurations {
                    cert::patch_ca_bundle(&client, name, serving.ca_pem.as_bytes()).await?;
                }
                serving
            }
        };
        Ok((serving.cert_pem.into_bytes(), serving.key_pem.into_bytes()))
    };
    let (mut cert_pem, mut key_pem) = load().await?;
    let webhook =
        Arc::new(Webhook { base, client: Some(client.clone()), release_namespace: options.namespace.clone() });
    let (running, task) = server::start(options.addr, cert::server_config(&cert_pem, &key_pem)?, webhook).await?;
    tracing::info!(addr = %running.addr, "admission webhook serving");
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                // A local run's in-memory certificate is valid for a year: nothing to rotate.
                if options.cert_dir.is_none() && managed.is_none() {
                    continue;
                }
                match load().await {
                    Ok((cert, key)) if (cert != cert_pem || key != key_pem) => {
                        match cert::server_config(&cert, &key) {
                            Ok(config) => {
                                running.tls.reload_from_config(config);
                                tracing::info!("admission webhook certificate reloaded");
                                (cert_pem, key_pem) = (cert, key);
                            }
                            Err(error) => tracing::warn!(%error, "new webhook certificate rejected; keeping the old one"),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "checking the webhook certificate; retrying later"),
                }
            }
        }
    }
    running.handle.graceful_shutdown(Some(Duration::from_secs(5)));
    match task.await {
        Ok(result) => Ok(result?),
        // The server task panicked or was cancelled: the webhook is down either way.
        Err(_) => Ok(()),
    }
}
