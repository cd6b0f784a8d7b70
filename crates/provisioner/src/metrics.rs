//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Errors of the metrics server.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("binding the metrics server to {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving metrics")]
    Serve(#[source] std::io::Error),
}

/// Label set of the failure counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Condition reason (`InsufficientCapacity`, `LaunchFailed`, ...).
    pub reason: String,
}

/// The provisioner's metrics; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Instances launched (first successful `create` per claim).
    pub created: Counter,
    /// Claims whose instance was deleted and whose finalizer was removed.
    pub deleted: Counter,
    /// Launch attempts that failed, by reason.
    pub failed: Family<FailureLabels, Counter>,
    /// Seconds per reconcile.
    pub reconcile_duration: Histogram,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics registered under the `kaito_provisioner` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kaito_provisioner");
        let created = Counter::default();
        let deleted = Counter::default();
        let failed = Family::<FailureLabels, Counter>::default();
        // 5 ms .. ~40 s: a kwok reconcile takes milliseconds, a cloud launch with its delay many seconds.
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("nodeclaims_created", "NodeClaims whose instance was launched", created.clone());
        registry.register("nodeclaims_deleted", "NodeClaims whose instance was deleted", deleted.clone());
        registry.register("nodeclaims_failed", "Failed NodeClaim launch attempts by reason", failed.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one NodeClaim reconcile",
            reconcile_duration.clone(),
        );
        Self { registry, created, deleted, failed, reconcile_duration, ready: AtomicBool::new(false) }
    }

    /// Records a failed launch.
    pub fn launch_failed(&self, reason: &str) {
        self.failed.get_or_create(&FailureLabels { reason: reason.to_string() }).inc();
    }

    /// Marks the provisioner ready (caches synced); `/readyz` answers 200 from then on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether the caches have synced.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an error here would be a bug in a metric's encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

/// The HTTP routes: `/metrics`, `/healthz` (always 200 while serving), `/readyz` (200 once caches synced).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn serve_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_ready() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches not synced") }
}

/// Serves [`router`] on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics)).with_graceful_shutdown(shutdown).await.map_err(MetricsError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_with_prefix() {
        let m = Metrics::new();
        m.created.inc();
        m.launch_failed("InsufficientCapacity");
        m.reconcile_duration.observe(0.01);
        let text = m.encode();
        assert!(text.contains("kaito_provisioner_nodeclaims_created_total 1"), "{text}");
        assert!(
            text.contains("kaito_provisioner_nodeclaims_failed_total{reason=\"InsufficientCapacity\"} 1"),
            "{text}"
        );
        assert!(text.contains("kaito_provisioner_reconcile_duration_seconds_count 1"), "{text}");
    }
}
