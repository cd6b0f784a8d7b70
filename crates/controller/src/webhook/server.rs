//! The HTTPS server the API server calls: one POST route per webhook path, rustls with the ring provider.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::storage::v1::CSIDriver;
use kaito_api::validation::ValidationContext;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::admission::{AdmissionRequest, AdmissionReview};

use super::HOOKS;

/// What the webhook knows about the cluster and how to learn more per request.
// No Debug: kube::Client has none.
#[derive(Clone)]
pub struct Webhook {
    /// The operator-wide context (provisioner, cloud, feature gates); per-request facts are added to it.
    pub base: ValidationContext,
    /// Client for per-request lookups (ConfigMaps, CSIDrivers); `None` validates with only `base`, so the
    /// rules needing cluster facts are skipped.
    pub client: Option<Client>,
    /// Namespace of the operator's default ConfigMaps (`lora-params-template` and the like).
    pub release_namespace: Option<String>,
}

impl Webhook {
    /// The context for an object in `namespace`: `base` plus the namespace's ConfigMaps, the release
    /// namespace's ConfigMaps and the cluster's CSIDrivers. A failed lookup leaves that fact unknown (its rules
    /// are skipped) rather than denying: an API hiccup must not block every create in the cluster.
    pub async fn context(&self, namespace: Option<&str>) -> ValidationContext {
        let mut ctx = self.base.clone();
        let Some(client) = &self.client else { return ctx };
        if let Some(namespace) = namespace {
            ctx.config_maps = config_maps(client, namespace).await;
            ctx.config_maps_complete = true;
        }
        if let Some(release) = &self.release_namespace {
            ctx.release_config_maps = config_maps(client, release).await;
        }
        let drivers: Api<CSIDriver> = Api::all(client.clone());
        ctx.csi_drivers = match drivers.list_metadata(&ListParams::default()).await {
            Ok(list) => Some(list.items.into_iter().filter_map(|d| d.metadata.name).collect()),
            Err(error) => {
                tracing::warn!(%error, "listing CSIDrivers for admission: the CSI checks are skipped");
                None
            }
        };
        ctx
    }

    /// Handles one AdmissionReview end to end: lookups, rules, response envelope.
    pub async fn handle(&self, review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => {
                return kube::core::admission::AdmissionResponse::invalid(super::ReviewError::NoRequest).into_review();
            }
        };
        let ctx = self.context(request.namespace.as_deref()).await;
        let response = super::respond(&request, &ctx);
        tracing::debug!(kind = %request.kind.kind, name = %request.name, allowed = response.allowed, "admission review");
        response.into_review()
    }
}

async fn config_maps(client: &Client, namespace: &str) -> Option<BTreeMap<String, BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.list(&ListParams::default()).await {
        Ok(list) => Some(
            list.items.into_iter().filter_map(|cm| Some((cm.metadata.name?, cm.data.unwrap_or_default()))).collect(),
        ),
        Err(error) => {
            tracing::warn!(%error, %namespace, "listing ConfigMaps for admission: the ConfigMap checks are skipped");
            None
        }
    }
}

/// The webhook's routes: a POST per webhook path (all dispatch on the request's kind) and `/healthz`.
pub fn router(webhook: Arc<Webhook>) -> Router {
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    for hook in HOOKS {
        router = router.route(
            hook.path,
            post(
                |State(webhook): State<Arc<Webhook>>, Json(review): Json<AdmissionReview<DynamicObject>>| async move {
                    Json(webhook.handle(review).await)
                },
            ),
        );
    }
    router.with_state(webhook)
}

/// A running webhook server: its address and the handles to reload its certificate and stop it.
#[derive(Debug, Clone)]
pub struct Running {
    /// The address it listens on (the real port when started on port 0).
    pub addr: SocketAddr,
    /// Swap the certificate with [`RustlsConfig::reload_from_config`] (rotation, cert-manager renewals).
    pub tls: RustlsConfig,
    /// Stops the server ([`axum_server::Handle::graceful_shutdown`]).
    pub handle: axum_server::Handle<SocketAddr>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving failed.
    #[error("webhook server on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped before it was listening.
    #[error("webhook server on {0} stopped before listening")]
    NotListening(SocketAddr),
}

/// Starts serving `webhook` on `addr` over TLS with `tls`; returns once it listens. The task ends when
/// [`Running::handle`] shuts it down.
pub async fn start(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    webhook: Arc<Webhook>,
) -> Result<(Running, tokio::task::JoinHandle<Result<(), ServeError>>), ServeError> {
    let tls = RustlsConfig::from_config(tls);
    let handle = axum_server::Handle::new();
    let app = router(webhook);
    let server = axum_server::bind_rustls(addr, tls.clone()).handle(handle.clone());
    let task = tokio::spawn(async move {
        server.serve(app.into_make_service()).await.map_err(|source| ServeError::Io { addr, source })
    });
    match tokio::time::timeout(Duration::from_secs(10), handle.listening()).await {
        Ok(Some(bound)) => Ok((Running { addr: bound, tls, handle }, task)),
        _ => match task.await {
            Ok(Err(error)) => Err(error),
            _ => Err(ServeError::NotListening(addr)),
        },
    }
}
