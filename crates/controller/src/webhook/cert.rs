//! The webhook's serving certificate: generated with rcgen (a CA and a serving certificate it signs), kept in
//! a Secret so every replica serves the same one, rotated before it expires, and published as the `caBundle`
//! of the webhook configurations the operator owns. With cert-manager, none of this runs: the certificate is
//! read from files and cert-manager's CA injector maintains the `caBundle`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Secret data key of the CA certificate (PEM), as cert-manager names it.
pub const CA_KEY: &str = "ca.crt";
/// Secret data key of the serving certificate (PEM).
pub const CERT_KEY: &str = "tls.crt";
/// Secret data key of the serving key (PEM, PKCS#8).
pub const KEY_KEY: &str = "tls.key";
/// Secret annotation holding the serving certificate's expiry (Unix seconds), so rotation needs no X.509 parser.
pub const NOT_AFTER_ANNOTATION: &str = "kaito.sh/webhook-cert-not-after";
/// How long a generated certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate expiring sooner than this is replaced.
pub const ROTATE_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a certificate could not be made, stored, loaded or published.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen failed.
    #[error("generating the webhook certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("loading the webhook certificate into rustls: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM file or Secret value does not parse.
    #[error("reading PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// Reading certificate files failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The API server refused a read or write.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
}

/// A CA and the serving certificate it signed, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    /// The CA certificate: the `caBundle` the API server trusts.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
    /// When the serving certificate expires.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("ServingCert").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// The DNS names the serving certificate covers for a Service: `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`,
/// `<svc>.<ns>.svc.cluster.local`, plus `localhost` and `127.0.0.1` for webhooks called by URL on the host.
pub fn subject_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ]
}

/// Generates a fresh CA and a serving certificate for `service` in `namespace`, valid for `validity`.
pub fn generate(service: &str, namespace: &str, validity: Duration) -> Result<ServingCert, CertError> {
    let now = time::OffsetDateTime::now_utc();
    // Backdate a little: a replica or API server whose clock is slightly behind must still accept it.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "kaito-webhook-ca");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(subject_names(service, namespace))?;
    params.distinguished_name.push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ServingCert {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after: UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after.unix_timestamp()).unwrap_or(0)),
    })
}

/// A rustls server configuration (ring provider, HTTP/1.1) serving `cert_pem` with `key_pem`.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, CertError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a certificate and key written by cert-manager (`tls.crt`, `tls.key` in `dir`).
pub fn read_dir(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| CertError::Io { path: path.display().to_string(), source })
    };
    Ok((read(CERT_KEY)?, read(KEY_KEY)?))
}

/// Where the operator keeps its own certificate and which webhook configurations it maintains.
// No Debug: kube::Client has none.
#[derive(Clone)]
pub struct SelfManaged {
    /// Client with rights on the Secret and the ValidatingWebhookConfigurations.
    pub client: Client,
    /// Namespace of the Secret and the webhook Service.
    pub namespace: String,
    /// Name of the Secret holding the certificate.
    pub secret: String,
    /// Name of the webhook Service (the certificate's DNS names).
    pub service: String,
    /// ValidatingWebhookConfigurations whose `caBundle` is kept current.
    pub webhook_configurations: Vec<String>,
}

impl SelfManaged {
    /// Returns the certificate in the Secret, replacing it first when it is missing, unreadable or expires
    /// within [`ROTATE_BEFORE`], then writes its CA into every owned webhook configuration.
    ///
    /// Replicas racing here converge: writes carry the Secret's resourceVersion, and the loser of a conflict
    /// re-reads and serves the winner's certificate.
    pub async fn ensure(&self) -> Result<ServingCert, CertError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let kube_err = |what: String| move |source| CertError::Kube { what, source };
        let mut attempts = 0;
        let cert = loop {
            attempts += 1;
            let existing = secrets
                .get_opt(&self.secret)
                .await
                .map_err(kube_err(format!("reading Secret {}/{}", self.namespace, self.secret)))?;
            if let Some(cert) = existing.as_ref().and_then(from_secret)
                && cert.not_after > SystemTime::now() + ROTATE_BEFORE
            {
                break cert;
            }
            let cert = generate(&self.service, &self.namespace, VALIDITY)?;
            let mut secret = to_secret(&cert, &self.secret);
            let written = match existing {
                Some(old) => {
                    secret.metadata.resource_version = old.metadata.resource_version;
                    secrets.replace(&self.secret, &PostParams::default(), &secret).await
                }
                None => secrets.create(&PostParams::default(), &secret).await,
            };
            match written {
                Ok(_) => {
                    tracing::info!(secret = %self.secret, "generated a new webhook serving certificate");
                    break cert;
                }
                Err(kube::Error::Api(status)) if (status.code == 409) && attempts < 5 => continue,
                Err(source) => {
                    return Err(CertError::Kube {
                        what: format!("writing Secret {}/{}", self.namespace, self.secret),
                        source,
                    });
                }
            }
        };
        for name in &self.webhook_configurations {
            patch_ca_bundle(&self.client, name, cert.ca_pem.as_bytes()).await?;
        }
        Ok(cert)
    }
}

fn from_secret(secret: &Secret) -> Option<ServingCert> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    let not_after: u64 = secret.metadata.annotations.as_ref()?.get(NOT_AFTER_ANNOTATION)?.parse().ok()?;
    Some(ServingCert {
        ca_pem: text(CA_KEY)?,
        cert_pem: text(CERT_KEY)?,
        key_pem: text(KEY_KEY)?,
        not_after: UNIX_EPOCH + Duration::from_secs(not_after),
    })
}

/// The Secret a certificate is kept in (type `kubernetes.io/tls`, plus the CA and the expiry annotation).
pub fn to_secret(cert: &ServingCert, name: &str) -> Secret {
    let not_after = cert.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_string());
    secret.metadata.annotations = Some(BTreeMap::from([(NOT_AFTER_ANNOTATION.to_string(), not_after.to_string())]));
    secret.type_ = Some("kubernetes.io/tls".to_string());
    secret.data = Some(BTreeMap::from([
        (CA_KEY.to_string(), ByteString(cert.ca_pem.clone().into_bytes())),
        (CERT_KEY.to_string(), ByteString(cert.cert_pem.clone().into_bytes())),
        (KEY_KEY.to_string(), ByteString(cert.key_pem.clone().into_bytes())),
    ]));
    secret
}

/// Sets the `caBundle` of every webhook in the ValidatingWebhookConfiguration `name` to `ca_pem`. A missing
/// configuration is not an error (it may not be installed yet; the next rotation check retries). Conflicting
/// writes are retried on a fresh read.
pub async fn patch_ca_bundle(client: &Client, name: &str, ca_pem: &[u8]) -> Result<(), CertError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for _ in 0..5 {
        let Some(mut config) = api.get_opt(name).await.map_err(|source| CertError::Kube {
            what: format!("reading ValidatingWebhookConfiguration {name}"),
            source,
        })?
        else {
            tracing::warn!(%name, "ValidatingWebhookConfiguration not found: its caBundle is not set");
            return Ok(());
        };
        let mut changed = false;
        for hook in config.webhooks.iter_mut().flatten() {
            if hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(ca_pem) {
                hook.client_config.ca_bundle = Some(ByteString(ca_pem.to_vec()));
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        match api.replace(name, &PostParams::default(), &config).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(source) => {
                return Err(CertError::Kube {
                    what: format!("updating ValidatingWebhookConfiguration {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads_into_rustls_and_covers_the_service() {
        let cert = generate("kaito-webhook", "kaito-system", VALIDITY).expect("generate");
        assert!(cert.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(cert.ca_pem, cert.cert_pem);
        server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).expect("rustls accepts it");
        assert!(cert.not_after > SystemTime::now() + VALIDITY - Duration::from_secs(3600));
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn secret_round_trip() {
        let cert = generate("svc", "ns", VALIDITY).expect("generate");
        let secret = to_secret(&cert, "kaito-webhook-cert");
        let back = from_secret(&secret).expect("read back");
        assert_eq!(back.ca_pem, cert.ca_pem);
        assert_eq!(back.key_pem, cert.key_pem);
        assert_eq!(
            back.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok(),
            cert.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok()
        );
    }
}
