//! Prometheus metrics (text exposition at `/metrics`).

use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// All metrics of the service.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests by method, route and status.
    pub requests: Family<Labels, Counter>,
    /// Request latency by method and route.
    pub request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Embedding calls latency.
    pub embedding_seconds: Histogram,
    /// Texts embedded.
    pub embedded_texts: Counter,
    /// Tokens fed to the local embedding model (special tokens included, after truncation).
    pub embedded_tokens: Counter,
    /// Documents per index.
    pub documents: Family<Labels, Gauge>,
    /// Chunks per index.
    pub chunks: Family<Labels, Gauge>,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("kaito_rag");
    let requests = Family::<Labels, Counter>::default();
    let request_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
    let embedding_seconds = latency_histogram();
    let embedded_texts = Counter::default();
    let embedded_tokens = Counter::default();
    let documents = Family::<Labels, Gauge>::default();
    let chunks = Family::<Labels, Gauge>::default();
    registry.register("requests", "HTTP requests by method, route and status", requests.clone());
    registry.register("request_duration_seconds", "HTTP request latency by method and route", request_seconds.clone());
    registry.register(
        "embedding_duration_seconds",
        "Latency of one embedding call (a batch of texts)",
        embedding_seconds.clone(),
    );
    registry.register("embedded_texts", "Texts embedded", embedded_texts.clone());
    registry.register("embedded_tokens", "Tokens fed to the local embedding model", embedded_tokens.clone());
    registry.register("documents", "Documents per index", documents.clone());
    registry.register("chunks", "Chunks per index", chunks.clone());
    Metrics {
        registry: Mutex::new(registry),
        requests,
        request_seconds,
        embedding_seconds,
        embedded_texts,
        embedded_tokens,
        documents,
        chunks,
    }
});

impl Metrics {
    /// Records one HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("method".into(), method.into()),
                ("endpoint".into(), route.into()),
                ("status".into(), status.to_string()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("method".into(), method.into()), ("endpoint".into(), route.into())])
            .observe(seconds);
    }

    /// Sets the per-index gauges.
    pub fn set_index_stats(&self, stats: &[(String, usize, usize)]) {
        self.documents.clear();
        self.chunks.clear();
        for (name, docs, chunks) in stats {
            let l = vec![("index".to_owned(), name.clone())];
            self.documents.get_or_create(&l).set(*docs as i64);
            self.chunks.get_or_create(&l).set(*chunks as i64);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}
