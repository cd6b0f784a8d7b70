//! Prometheus metrics of the controller.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use kaito_api::v1beta1::WorkspaceState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Counters and gauges, registered in [`Metrics::registry`].
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_errors: Counter,
    reconcile_seconds: Histogram,
    node_claims_created: Counter,
    workspaces: Family<StateLabel, Gauge>,
    api_requests: Family<MethodLabel, Counter>,
    states: Mutex<BTreeMap<(String, String), &'static str>>,
}

fn state_name(state: Option<WorkspaceState>) -> &'static str {
    match state {
        Some(WorkspaceState::Ready) => "Ready",
        Some(WorkspaceState::NotReady) => "NotReady",
        Some(WorkspaceState::Running) => "Running",
        Some(WorkspaceState::Succeeded) => "Succeeded",
        Some(WorkspaceState::Failed) => "Failed",
        Some(WorkspaceState::Pending) | None => "Pending",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kaito");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let reconcile_errors = Counter::default();
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let node_claims_created = Counter::default();
        let workspaces = Family::<StateLabel, Gauge>::default();
        let api_requests = Family::<MethodLabel, Counter>::default();
        registry.register("api_requests", "Requests sent to the Kubernetes API by HTTP method", api_requests.clone());
        registry.register("workspace_reconciles", "Workspace reconciles by result", reconciles.clone());
        registry.register("workspace_reconcile_errors", "Workspace reconciles that failed", reconcile_errors.clone());
        registry.register("workspace_reconcile_duration_seconds", "Time one reconcile took", reconcile_seconds.clone());
        registry.register("nodeclaims_created", "NodeClaims created for Workspaces", node_claims_created.clone());
        registry.register("workspaces", "Workspaces by state", workspaces.clone());
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            node_claims_created,
            workspaces,
            api_requests,
            states: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn reconciled(&self, took: Duration, ok: bool) {
        self.reconciles.get_or_create(&ResultLabel { result: if ok { "ok" } else { "error" } }).inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Records a failed reconcile.
    pub fn reconcile_error(&self) {
        self.reconcile_errors.inc();
    }

    /// Records one request to the Kubernetes API.
    pub fn api_request(&self, method: &str) {
        self.api_requests.get_or_create(&MethodLabel { method: method.to_string() }).inc();
    }

    /// Records a created NodeClaim.
    pub fn node_claim_created(&self) {
        self.node_claims_created.inc();
    }

    /// Records a Workspace's state; `None` forgets a deleted Workspace.
    pub fn workspace_state(&self, namespace: &str, name: &str, state: Option<WorkspaceState>) {
        let Ok(mut states) = self.states.lock() else { return };
        let key = (namespace.to_string(), name.to_string());
        match state {
            Some(_) => {
                states.insert(key, state_name(state));
            }
            None => {
                states.remove(&key);
            }
        }
        let mut counts: BTreeMap<&'static str, i64> =
            ["Pending", "Ready", "NotReady"].iter().map(|s| (*s, 0)).collect();
        for s in states.values() {
            *counts.entry(s).or_default() += 1;
        }
        for (state, count) in counts {
            self.workspaces.get_or_create(&StateLabel { state }).set(count);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_are_counted_by_state() {
        let metrics = Metrics::default();
        metrics.workspace_state("a", "one", Some(WorkspaceState::Ready));
        metrics.workspace_state("a", "two", Some(WorkspaceState::Pending));
        metrics.workspace_state("a", "two", Some(WorkspaceState::Ready));
        metrics.reconciled(Duration::from_millis(3), true);
        let text = metrics.render();
        assert!(text.contains("kaito_workspaces{state=\"Ready\"} 2"), "{text}");
        assert!(text.contains("kaito_workspaces{state=\"Pending\"} 0"), "{text}");
        assert!(text.contains("kaito_workspace_reconciles_total{result=\"ok\"} 1"), "{text}");
        metrics.workspace_state("a", "one", None);
        assert!(metrics.render().contains("kaito_workspaces{state=\"Ready\"} 1"));
    }
}
