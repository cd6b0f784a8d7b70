//! Karpenter's NodeClaim lifecycle conditions, computed from what the controller observed (pure).
//!
//! Reasons and messages follow Karpenter core (`pkg/controllers/nodeclaim/lifecycle`) and operatorpkg's
//! condition sets: a `True` condition's reason is its type, not-yet states are `Unknown`, the root `Ready`
//! is `True` only when Launched, Registered and Initialized are.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kaito_api::karpenter::{NodeClaim, NodeClaimStatus, conditions as types, labels as klabels};
use kaito_api::status_writes::conditions_changed;

/// Reason of an `Unknown` condition nobody has evaluated yet.
pub const AWAITING_RECONCILIATION: &str = "AwaitingReconciliation";
/// Launched: the cloud has no capacity for the instance type.
pub const INSUFFICIENT_CAPACITY: &str = "InsufficientCapacity";
/// Launched: the cloud call failed (retried).
pub const LAUNCH_FAILED: &str = "LaunchFailed";
/// Registered/Initialized: no Node with the claim's providerID.
pub const NODE_NOT_FOUND: &str = "NodeNotFound";
/// Registered: more than one Node with the claim's providerID.
pub const MULTIPLE_NODES_FOUND: &str = "MultipleNodesFound";
/// Initialized: the Node is not Ready.
pub const NODE_NOT_READY: &str = "NodeNotReady";
/// Initialized: a startup taint of the claim is still on the Node.
pub const STARTUP_TAINTS_EXIST: &str = "StartupTaintsExist";
/// Initialized: a taint the node lifecycle removes on its own (not-ready, unreachable, ...) is still there.
pub const KNOWN_EPHEMERAL_TAINTS_EXIST: &str = "KnownEphemeralTaintsExist";
/// Initialized: a resource of the claim's allocatable is zero or missing on the Node.
pub const RESOURCE_NOT_REGISTERED: &str = "ResourceNotRegistered";
/// Ready: some dependent condition is not True.
pub const UNHEALTHY_DEPENDENTS: &str = "UnhealthyDependents";

/// Not-yet reasons a joining Node passes through by itself within seconds (kwok or the kubelet reports Ready,
/// then the node lifecycle controller removes its not-ready taint).
pub const TRANSIENT_REASONS: [&str; 2] = [NODE_NOT_READY, KNOWN_EPHEMERAL_TAINTS_EXIST];

/// Taints the Kubernetes node lifecycle (or Karpenter) adds and removes by itself.
pub const KNOWN_EPHEMERAL_TAINTS: [&str; 4] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
    klabels::UNREGISTERED_TAINT,
];

/// How the launch went, as far as this reconcile knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The cloud returned an instance (`status.providerID` is set).
    Launched,
    /// The cloud refused for good (no capacity, unknown SKU): `Launched=False`.
    Refused {
        /// Condition reason (`InsufficientCapacity`).
        reason: String,
        /// What the user can do.
        message: String,
    },
    /// The cloud call failed and will be retried: `Launched=Unknown/LaunchFailed`.
    Failed {
        /// The error.
        message: String,
    },
    /// Not tried yet.
    Pending,
}

/// The condition values for one observation; the rest of [`Condition`] is filled by [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Condition type.
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    fn new(type_: &'static str, status: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.to_string(), message: message.into() }
    }

    fn truthy(type_: &'static str) -> Self {
        Self::new(type_, "True", type_, "")
    }

    fn awaiting(type_: &'static str) -> Self {
        Self::new(type_, "Unknown", AWAITING_RECONCILIATION, "object is awaiting reconciliation")
    }
}

/// Launched, Registered, Initialized and Ready for a claim.
///
/// `nodes` are the Nodes whose `spec.providerID` equals the claim's `status.providerID`.
pub fn compute(claim: &NodeClaim, launch: &Launch, nodes: &[&Node]) -> [Desired; 4] {
    let launched = match launch {
        Launch::Launched => Desired::truthy(types::LAUNCHED),
        Launch::Refused { reason, message } => Desired::new(types::LAUNCHED, "False", reason, truncate(message)),
        Launch::Failed { message } => Desired::new(types::LAUNCHED, "Unknown", LAUNCH_FAILED, truncate(message)),
        Launch::Pending => Desired::awaiting(types::LAUNCHED),
    };
    let (registered, initialized) = if launched.status != "True" {
        (Desired::awaiting(types::REGISTERED), Desired::awaiting(types::INITIALIZED))
    } else {
        match nodes {
            [] => (
                Desired::new(types::REGISTERED, "Unknown", NODE_NOT_FOUND, "Node not registered with cluster"),
                Desired::new(types::INITIALIZED, "Unknown", NODE_NOT_FOUND, "Node not registered with cluster"),
            ),
            [node] => (Desired::truthy(types::REGISTERED), initialized(claim, node)),
            _ => (
                Desired::new(
                    types::REGISTERED,
                    "Unknown",
                    MULTIPLE_NODES_FOUND,
                    "Invariant violated, matched multiple nodes",
                ),
                Desired::new(types::INITIALIZED, "Unknown", NODE_NOT_FOUND, "Node not registered with cluster"),
            ),
        }
    };
    let ready = ready([&launched, &registered, &initialized]);
    [launched, registered, initialized, ready]
}

fn initialized(claim: &NodeClaim, node: &Node) -> Desired {
    let not = |reason: &str, message: String| Desired::new(types::INITIALIZED, "Unknown", reason, message);
    let node_ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !node_ready {
        return not(NODE_NOT_READY, "Node status is NotReady".to_string());
    }
    let taints: &[Taint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    if let Some(t) = claim.spec.startup_taints.iter().find(|st| taints.iter().any(|t| same_taint(t, st))) {
        return not(STARTUP_TAINTS_EXIST, format!("StartupTaint \"{}\" still exists", render_taint(t)));
    }
    if let Some(t) = taints.iter().find(|t| KNOWN_EPHEMERAL_TAINTS.contains(&t.key.as_str())) {
        return not(KNOWN_EPHEMERAL_TAINTS_EXIST, format!("KnownEphemeralTaint \"{}\" still exists", render_taint(t)));
    }
    let requested = claim.status.as_ref().map(|s| &s.allocatable);
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    for (resource, quantity) in requested.into_iter().flatten() {
        if is_zero(quantity) {
            continue;
        }
        if allocatable.and_then(|a| a.get(resource)).is_none_or(is_zero) {
            return not(RESOURCE_NOT_REGISTERED, format!("Resource \"{resource}\" was requested but not registered"));
        }
    }
    Desired::truthy(types::INITIALIZED)
}

fn ready(dependents: [&Desired; 3]) -> Desired {
    if dependents.iter().all(|d| d.status == "True") {
        return Desired::truthy(types::READY);
    }
    let status = if dependents.iter().any(|d| d.status == "False") { "False" } else { "Unknown" };
    let message = dependents
        .iter()
        .filter(|d| d.status != "True")
        .map(|d| format!("{}={}", d.type_, d.status))
        .collect::<Vec<_>>()
        .join(", ");
    Desired::new(types::READY, status, UNHEALTHY_DEPENDENTS, message)
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect && a.value.as_deref().unwrap_or("") == b.value.as_deref().unwrap_or("")
}

fn render_taint(t: &Taint) -> String {
    match t.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{}={}:{}", t.key, v, t.effect),
        _ => format!("{}:{}", t.key, t.effect),
    }
}

/// Whether a quantity is zero (`0`, `0Gi`, `0.0`, `0m`); unparsable quantities count as non-zero.
pub fn is_zero(q: &Quantity) -> bool {
    let number = q.0.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !number.is_empty() && number.chars().all(|c| c == '0' || c == '.' || c == '+' || c == '-')
}

/// The CRD limits messages to 32768 bytes; keep error chains well below that.
fn truncate(message: &str) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message.to_string();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Full conditions: `desired` with `lastTransitionTime` kept from `existing` when the status did not change,
/// and `observedGeneration`. Conditions of other types in `existing` (Drifted, ...) are kept.
pub fn merge(existing: &[Condition], desired: &[Desired], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let previous = existing.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.to_string(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect();
    out.extend(existing.iter().filter(|c| !desired.iter().any(|d| d.type_ == c.type_)).cloned());
    out
}

/// Whether `new` is worth a status write over `stored` (what the apiserver has).
///
/// Every write is an apiserver write per claim, and with hundreds of claims coming up at once the apiserver is
/// the bottleneck. So a condition that stays `Unknown` and only moves between [`TRANSIENT_REASONS`] is not
/// rewritten: the next write (`Initialized=True`, seconds later) replaces it anyway. Status changes, other
/// reasons (a startup taint, a missing GPU, a failed launch) and every other field are always written.
pub fn worth_writing(stored: Option<&NodeClaimStatus>, new: &NodeClaimStatus) -> bool {
    let Some(stored) = stored else { return true };
    if stored == new {
        return false;
    }
    let same_facts = stored.provider_id == new.provider_id
        && stored.image_id == new.image_id
        && stored.node_name == new.node_name
        && stored.capacity == new.capacity
        && stored.allocatable == new.allocatable;
    !same_facts
        || conditions_changed(&stored.conditions, &new.conditions, |c| TRANSIENT_REASONS.contains(&c.reason.as_str()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use kaito_api::karpenter::{NodeClaimSpec, NodeClaimStatus};

    use super::*;

    fn claim() -> NodeClaim {
        let mut c = NodeClaim::new("ws1", NodeClaimSpec::default());
        c.status = Some(NodeClaimStatus {
            provider_id: Some("kwok://ws1".into()),
            allocatable: BTreeMap::from([
                ("cpu".to_string(), Quantity("24".into())),
                ("nvidia.com/gpu".to_string(), Quantity("1".into())),
                ("hugepages-1Gi".to_string(), Quantity("0".into())),
            ]),
            ..NodeClaimStatus::default()
        });
        c
    }

    fn node(ready: &str, taints: &[&str], gpus: &str) -> Node {
        Node {
            spec: Some(NodeSpec {
                provider_id: Some("kwok://ws1".into()),
                taints: Some(
                    taints
                        .iter()
                        .map(|k| Taint { key: k.to_string(), effect: "NoSchedule".into(), ..Taint::default() })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                allocatable: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("24".into())),
                    ("nvidia.com/gpu".to_string(), Quantity(gpus.into())),
                ])),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    fn summary(d: &[Desired; 4]) -> Vec<String> {
        d.iter().map(|d| format!("{}={}/{}", d.type_, d.status, d.reason)).collect()
    }

    #[test]
    fn condition_table() {
        let ready = node("True", &["sku"], "1");
        let not_ready = node("False", &[], "1");
        let tainted = node("True", &["node.kubernetes.io/not-ready"], "1");
        let no_gpu = node("True", &[], "0");
        let refused = Launch::Refused { reason: INSUFFICIENT_CAPACITY.into(), message: "no".into() };
        let failed = Launch::Failed { message: "boom".into() };
        let cases: Vec<(&str, Launch, Vec<&Node>, [&str; 4])> = vec![
            (
                "pending",
                Launch::Pending,
                vec![],
                [
                    "Launched=Unknown/AwaitingReconciliation",
                    "Registered=Unknown/AwaitingReconciliation",
                    "Initialized=Unknown/AwaitingReconciliation",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "insufficient capacity",
                refused,
                vec![],
                [
                    "Launched=False/InsufficientCapacity",
                    "Registered=Unknown/AwaitingReconciliation",
                    "Initialized=Unknown/AwaitingReconciliation",
                    "Ready=False/UnhealthyDependents",
                ],
            ),
            (
                "launch failed",
                failed,
                vec![],
                [
                    "Launched=Unknown/LaunchFailed",
                    "Registered=Unknown/AwaitingReconciliation",
                    "Initialized=Unknown/AwaitingReconciliation",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "launched, no node yet",
                Launch::Launched,
                vec![],
                [
                    "Launched=True/Launched",
                    "Registered=Unknown/NodeNotFound",
                    "Initialized=Unknown/NodeNotFound",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "two nodes",
                Launch::Launched,
                vec![&ready, &ready],
                [
                    "Launched=True/Launched",
                    "Registered=Unknown/MultipleNodesFound",
                    "Initialized=Unknown/NodeNotFound",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "node not ready",
                Launch::Launched,
                vec![&not_ready],
                [
                    "Launched=True/Launched",
                    "Registered=True/Registered",
                    "Initialized=Unknown/NodeNotReady",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "not-ready taint",
                Launch::Launched,
                vec![&tainted],
                [
                    "Launched=True/Launched",
                    "Registered=True/Registered",
                    "Initialized=Unknown/KnownEphemeralTaintsExist",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "gpu not allocatable",
                Launch::Launched,
                vec![&no_gpu],
                [
                    "Launched=True/Launched",
                    "Registered=True/Registered",
                    "Initialized=Unknown/ResourceNotRegistered",
                    "Ready=Unknown/UnhealthyDependents",
                ],
            ),
            (
                "ready",
                Launch::Launched,
                vec![&ready],
                [
                    "Launched=True/Launched",
                    "Registered=True/Registered",
                    "Initialized=True/Initialized",
                    "Ready=True/Ready",
                ],
            ),
        ];
        for (what, launch, nodes, want) in cases {
            assert_eq!(summary(&compute(&claim(), &launch, &nodes)), want, "{what}");
        }
    }

    #[test]
    fn startup_taint_blocks_initialization() {
        let mut c = claim();
        c.spec.startup_taints = vec![Taint {
            key: "gpu-init".into(),
            value: Some("x".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }];
        let mut n = node("True", &[], "1");
        if let Some(spec) = n.spec.as_mut() {
            spec.taints = Some(c.spec.startup_taints.clone());
        }
        let [_, _, init, _] = compute(&c, &Launch::Launched, &[&n]);
        assert_eq!(init.reason, STARTUP_TAINTS_EXIST);
        assert_eq!(init.message, "StartupTaint \"gpu-init=x:NoSchedule\" still exists");
    }

    #[test]
    fn merge_keeps_transition_time_when_status_is_unchanged() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().expect("time"));
        let t1 = Time("2026-01-01T00:01:00Z".parse().expect("time"));
        let first = merge(&[], &compute(&claim(), &Launch::Pending, &[]), Some(1), &t0);
        let second = merge(&first, &compute(&claim(), &Launch::Launched, &[]), Some(2), &t1);
        let by_type = |cs: &[Condition], t: &str| cs.iter().find(|c| c.type_ == t).cloned().expect("condition");
        // Launched went Unknown -> True: new time; Ready stayed Unknown: old time, new message and generation.
        assert_eq!(by_type(&second, "Launched").last_transition_time, t1);
        assert_eq!(by_type(&second, "Ready").last_transition_time, t0);
        assert_eq!(by_type(&second, "Ready").observed_generation, Some(2));
        let mut with_other = second.clone();
        with_other.push(Condition { type_: "Drifted".into(), ..by_type(&second, "Ready") });
        assert_eq!(merge(&with_other, &compute(&claim(), &Launch::Launched, &[]), Some(2), &t1).len(), 5);
    }

    #[test]
    fn a_node_coming_up_is_not_rewritten_until_it_is_initialized() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().expect("time"));
        let t1 = Time("2026-01-01T00:00:05Z".parse().expect("time"));
        let status = |c: &NodeClaim, nodes: &[&Node], existing: &[Condition], now: &Time| NodeClaimStatus {
            conditions: merge(existing, &compute(c, &Launch::Launched, nodes), Some(1), now),
            ..c.status.clone().unwrap_or_default()
        };
        let c = claim();
        let (not_ready, tainted, ready) =
            (node("False", &[], "1"), node("True", &["node.kubernetes.io/not-ready"], "1"), node("True", &[], "1"));
        let launched = status(&c, &[], &[], &t0);
        let registered = status(&c, &[&not_ready], &launched.conditions, &t1);
        assert!(worth_writing(None, &launched));
        assert!(worth_writing(Some(&launched), &registered), "Registered turned True");
        assert!(!worth_writing(Some(&registered), &registered.clone()));
        let waiting_for_taint = status(&c, &[&tainted], &registered.conditions, &t1);
        assert_ne!(waiting_for_taint, registered, "the reason moved on");
        assert!(!worth_writing(Some(&registered), &waiting_for_taint), "NodeNotReady -> KnownEphemeralTaintsExist");
        let initialized = status(&c, &[&ready], &registered.conditions, &t1);
        assert!(worth_writing(Some(&registered), &initialized), "Initialized and Ready turned True");
        // A reason that needs the user's attention is always written.
        let no_gpu = status(&c, &[&node("True", &[], "0")], &registered.conditions, &t1);
        assert!(worth_writing(Some(&registered), &no_gpu), "NodeNotReady -> ResourceNotRegistered");
        let mut renamed = registered.clone();
        renamed.node_name = Some("other".into());
        assert!(worth_writing(Some(&registered), &renamed));
    }

    #[test]
    fn zero_quantities() {
        for (q, zero) in [("0", true), ("0Gi", true), ("0.0", true), ("1", false), ("100m", false), ("", false)] {
            assert_eq!(is_zero(&Quantity(q.into())), zero, "{q}");
        }
    }
}
