//! Workspace status computed from what is observed (pure): NodeClaims, Nodes, the StatefulSet and its pods.
//!
//! Every reconcile recomputes the whole status instead of stepping conditions forward, so a status can
//! never be stale after a missed event (upstream-kaito.md §11.4). Condition types, reasons and states are
//! upstream's; messages add what to do.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kaito_api::karpenter::{self, NodeClaim};
use kaito_api::labels::conditions as cond;
use kaito_api::status_writes::conditions_changed;
use kaito_api::v1beta1::{PhaseTiming, SizingPlan, WorkspaceState, WorkspaceStatus};

/// Everything status is computed from.
pub struct Observed<'a> {
    /// The Workspace's generation (written into every condition).
    pub generation: i64,
    /// When the Workspace was created.
    pub created: Option<&'a Time>,
    /// The status currently stored (for transition times and the Ready → NotReady distinction).
    pub previous: Option<&'a WorkspaceStatus>,
    /// The Workspace is being deleted.
    pub deleting: bool,
    /// The Workspace could not be resolved: (reason, message).
    pub invalid: Option<(&'a str, String)>,
    /// Whether NodeClaims are part of this Workspace's provisioning (false for bring-your-own).
    pub uses_node_claims: bool,
    /// Nodes needed.
    pub target_nodes: u32,
    /// Instance type every node must have (None: any, e.g. bring-your-own).
    pub instance_type: Option<&'a str>,
    /// GPUs each node must report allocatable (0: no check).
    pub gpus_per_node: u32,
    /// The NodeClaims of the Workspace.
    pub claims: &'a [NodeClaim],
    /// The nodes of the Workspace (provisioned for it, or selected by its labelSelector).
    pub nodes: &'a [Node],
    /// The inference StatefulSet, once created.
    pub statefulset: Option<&'a StatefulSet>,
    /// Its pods.
    pub pods: &'a [Pod],
    /// The sizing plan.
    pub plan: Option<SizingPlan>,
    /// Current time.
    pub now: Time,
}

struct Cond {
    type_: &'static str,
    ok: bool,
    reason: String,
    message: String,
}

impl Cond {
    fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Cond { type_, ok, reason: reason.into(), message: message.into() }
    }
}

/// Whether a Node reports Ready=True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_gpus(node: &Node) -> i64 {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("nvidia.com/gpu"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0)
}

fn node_instance_type(node: &Node) -> Option<&str> {
    node.metadata.labels.as_ref()?.get(karpenter::labels::INSTANCE_TYPE).map(String::as_str)
}

/// Whether a node can run the Workspace: Ready, right instance type, GPUs allocatable.
pub fn node_is_usable(node: &Node, instance_type: Option<&str>, gpus: u32) -> bool {
    node_is_ready(node)
        && node.metadata.deletion_timestamp.is_none()
        && instance_type.is_none_or(|t| node_instance_type(node) == Some(t))
        && (gpus == 0 || node_gpus(node) >= gpus as i64)
}

fn claim_is_ready(claim: &NodeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_none()
        && (claim.condition_is_true(karpenter::conditions::READY)
            || claim.status.as_ref().is_some_and(|s| s.conditions.is_empty() && s.node_name.is_some()))
}

/// The most telling non-True lifecycle condition of the claims: the first of Launched → Registered →
/// Initialized, preferring a real failure over "still waiting".
fn claim_blocker(claims: &[NodeClaim]) -> Option<(String, String)> {
    let mut waiting = None;
    for type_ in
        [karpenter::conditions::LAUNCHED, karpenter::conditions::REGISTERED, karpenter::conditions::INITIALIZED]
    {
        for claim in claims {
            let Some(c) = claim.condition(type_) else { continue };
            if c.status == "True" {
                continue;
            }
            let name = claim.metadata.name.clone().unwrap_or_default();
            let message: String = format!("NodeClaim {name}: {}", c.message).chars().take(256).collect();
            if c.status == "False" && c.reason != "AwaitingReconciliation" {
                return Some((c.reason.clone(), message));
            }
            waiting.get_or_insert((c.reason.clone(), message));
        }
    }
    waiting
}

/// First pod problem found, as (reason, message that says what to do), in upstream's order of checks.
pub fn classify_pods(pods: &[Pod]) -> Option<(&'static str, String)> {
    let mut found: Vec<(usize, &'static str, String)> = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(status) = &pod.status else { continue };
        for cs in status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()) {
            let last_terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let terminated = cs.state.as_ref().and_then(|s| s.terminated.as_ref());
            if [last_terminated, terminated].into_iter().flatten().any(|t| t.reason.as_deref() == Some("OOMKilled")) {
                found.push((0, "ContainerOOMKilled", format!(
                    "pod {name}: container {} was killed for using too much memory: use an instance type with more memory or lower vllm max-model-len in the inference config", cs.name)));
            }
            if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.as_deref().unwrap_or_default();
                let detail = waiting.message.clone().unwrap_or_default();
                match reason {
                    "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => found.push((1, "ImagePullError", format!(
                        "pod {name}: cannot pull image {} ({reason}{}): check the image name and tag, and add imagePullSecrets if the registry is private",
                        cs.image, if detail.is_empty() { String::new() } else { format!(": {detail}") }))),
                    "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => found.push((2, "ContainerStartError", format!(
                        "pod {name}: container {} cannot start ({reason}{}): check referenced Secrets and ConfigMaps exist", cs.name,
                        if detail.is_empty() { String::new() } else { format!(": {detail}") }))),
                    "CrashLoopBackOff" => {
                        let last = last_terminated
                            .map(|t| format!(", last exit code {} ({})", t.exit_code, t.reason.clone().unwrap_or_default()))
                            .unwrap_or_default();
                        found.push((3, "ContainerCrashLoopBackOff", format!(
                            "pod {name}: container {} keeps crashing ({} restarts{last}): read its log with `kubectl logs {name} --previous`",
                            cs.name, cs.restart_count)));
                    }
                    _ => {}
                }
            }
        }
        if status.reason.as_deref() == Some("Evicted") {
            found.push((
                4,
                "PodEvicted",
                format!("pod {name} was evicted: {}", status.message.clone().unwrap_or_default()),
            ));
        }
        if let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")
            && c.reason.as_deref() == Some("Unschedulable")
        {
            found.push((5, "Unschedulable", format!(
                "pod {name} cannot be scheduled: {}: check the nodes have free GPUs and the labels of resource.labelSelector",
                c.message.clone().unwrap_or_default())));
        }
    }
    found.sort_by_key(|(order, _, _)| *order);
    found.into_iter().next().map(|(_, reason, message)| (reason, message))
}

/// Computes the status a Workspace should have now.
pub fn compute(o: &Observed<'_>) -> WorkspaceStatus {
    let mut conds: Vec<Cond> = Vec::new();
    if o.deleting {
        conds.push(Cond::new(cond::WORKSPACE_DELETING, true, "workspaceDeleted", "the Workspace is being deleted"));
        return finish(o, conds, o.previous.and_then(|p| p.state), Vec::new());
    }
    if let Some((reason, message)) = &o.invalid {
        for type_ in [cond::RESOURCE_READY, cond::INFERENCE_READY, cond::WORKSPACE_SUCCEEDED] {
            conds.push(Cond::new(type_, false, *reason, message.clone()));
        }
        return finish(o, conds, Some(WorkspaceState::Pending), Vec::new());
    }

    let target = o.target_nodes as usize;
    let usable: Vec<&Node> = o.nodes.iter().filter(|n| node_is_usable(n, o.instance_type, o.gpus_per_node)).collect();
    let mut worker_nodes: Vec<String> = usable.iter().filter_map(|n| n.metadata.name.clone()).collect();
    worker_nodes.sort();

    let mut resource_ok = true;
    let mut resource_reason = (String::new(), String::new());
    if o.uses_node_claims {
        let ready = o.claims.iter().filter(|c| claim_is_ready(c)).count();
        let c = if ready >= target {
            Cond::new(cond::NODE_CLAIM_READY, true, "NodeClaimsReady", "Enough NodeClaims are ready")
        } else {
            let (reason, message) = claim_blocker(o.claims).unwrap_or_else(|| {
                ("NodeClaimNotReady".into(), format!("Ready NodeClaims are not enough ({ready}/{target})"))
            });
            Cond::new(cond::NODE_CLAIM_READY, false, reason, message)
        };
        if !c.ok {
            resource_ok = false;
            resource_reason = (c.reason.clone(), c.message.clone());
        }
        conds.push(c);
    }
    let nodes_cond = if usable.len() >= target {
        Cond::new(cond::NODES_READY, true, "NodesReady", "Enough Nodes are ready")
    } else {
        let ready = o.nodes.iter().filter(|n| node_is_ready(n)).count();
        let (reason, message) = if ready > usable.len() {
            (
                "NodePluginsNotReady",
                format!(
                    "{} of {target} nodes are ready but lack {} allocatable nvidia.com/gpu or the instance type {}: check the NVIDIA device plugin",
                    ready,
                    o.gpus_per_node,
                    o.instance_type.unwrap_or("-")
                ),
            )
        } else if o.uses_node_claims {
            ("NodeNotReady", format!("{} of {target} nodes are ready", usable.len()))
        } else {
            (
                "NodeNotReady",
                format!(
                    "{} of {target} nodes matching resource.labelSelector are ready: label more GPU nodes or fix the selector",
                    usable.len()
                ),
            )
        };
        Cond::new(cond::NODES_READY, false, reason, message)
    };
    if resource_ok && !nodes_cond.ok {
        resource_ok = false;
        resource_reason = (nodes_cond.reason.clone(), nodes_cond.message.clone());
    }
    conds.push(nodes_cond);
    conds.push(if resource_ok {
        Cond::new(cond::RESOURCE_READY, true, "workspaceResourceStatusSuccess", "workspace resource is ready")
    } else {
        Cond::new(cond::RESOURCE_READY, false, resource_reason.0.clone(), resource_reason.1.clone())
    });

    let ready_replicas = o.statefulset.and_then(|s| s.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0);
    let inference = if resource_ok && o.statefulset.is_some() && ready_replicas as usize >= target {
        Cond::new(
            cond::INFERENCE_READY,
            true,
            "WorkspaceInferenceStatusSuccess",
            "Inference has been deployed successfully",
        )
    } else if let Some((reason, message)) = classify_pods(o.pods) {
        Cond::new(cond::INFERENCE_READY, false, reason, message)
    } else if !resource_ok {
        Cond::new(cond::INFERENCE_READY, false, "WorkspaceInferenceStatusPending", "waiting for the GPU nodes")
    } else {
        Cond::new(
            cond::INFERENCE_READY,
            false,
            "WorkspaceInferenceStatusPending",
            format!("{ready_replicas} of {target} inference pods are ready"),
        )
    };
    let serving = inference.ok;
    let inference_reason = (inference.reason.clone(), inference.message.clone());
    conds.push(inference);
    conds.push(if serving {
        Cond::new(cond::WORKSPACE_SUCCEEDED, true, "workspaceSucceeded", "workspace succeeds")
    } else if !resource_ok {
        Cond::new(cond::WORKSPACE_SUCCEEDED, false, "workspacePending", format!("nodes: {}", resource_reason.1))
    } else {
        Cond::new(cond::WORKSPACE_SUCCEEDED, false, "workspacePending", format!("inference: {}", inference_reason.1))
    });

    let was_serving =
        matches!(o.previous.and_then(|p| p.state), Some(WorkspaceState::Ready | WorkspaceState::NotReady));
    let state = if serving {
        WorkspaceState::Ready
    } else if was_serving {
        WorkspaceState::NotReady
    } else {
        WorkspaceState::Pending
    };
    finish(o, conds, Some(state), worker_nodes)
}

/// Whether a not-True condition with this reason is only waiting for the next step (a node to boot, a pod to
/// start), not reporting a problem anyone has to act on.
pub fn is_waiting(reason: &str) -> bool {
    reason.ends_with("Pending")
        || matches!(
            reason,
            "NodeClaimNotReady"
                | "NodeNotReady"
                | "AwaitingReconciliation"
                | "NodeNotFound"
                | "KnownEphemeralTaintsExist"
        )
}

/// Whether `new` is worth a status write over `stored` (what the apiserver has).
///
/// Each write costs an apiserver write, and a Workspace passes through several waiting states on its way to
/// Ready (no claim yet, claim launched, node booting, pods starting) whose only difference is which step a
/// False condition is waiting for. Those are not written on their own: the next real change (a condition
/// turning True, a problem, any other field) writes the whole status, with every message current.
pub fn worth_writing(stored: Option<&WorkspaceStatus>, new: &WorkspaceStatus) -> bool {
    let Some(stored) = stored else { return true };
    if stored == new {
        return false;
    }
    let (Some(before), Some(after)) = (&stored.conditions, &new.conditions) else { return true };
    let rest = |s: &WorkspaceStatus| WorkspaceStatus { conditions: None, ..s.clone() };
    rest(stored) != rest(new) || conditions_changed(before, after, |c| c.status == "False" && is_waiting(&c.reason))
}

/// Turns computed conditions into a status, keeping transition times of conditions whose status did not
/// change, and recording when each phase first completed.
fn finish(
    o: &Observed<'_>,
    conds: Vec<Cond>,
    state: Option<WorkspaceState>,
    worker_nodes: Vec<String>,
) -> WorkspaceStatus {
    let previous: BTreeMap<&str, &Condition> = o
        .previous
        .and_then(|p| p.conditions.as_ref())
        .map(|cs| cs.iter().map(|c| (c.type_.as_str(), c)).collect())
        .unwrap_or_default();
    let conditions: Vec<Condition> = conds
        .into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_string();
            let last_transition_time = match previous.get(c.type_) {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => o.now.clone(),
            };
            Condition {
                type_: c.type_.to_string(),
                status,
                reason: c.reason,
                message: c.message,
                observed_generation: Some(o.generation),
                last_transition_time,
            }
        })
        .collect();

    let mut phases: Vec<PhaseTiming> = o.previous.and_then(|p| p.phases.clone()).unwrap_or_default();
    if let Some(created) = o.created {
        for (phase, type_) in [
            ("NodesReady", cond::RESOURCE_READY),
            ("InferenceReady", cond::INFERENCE_READY),
            ("WorkspaceSucceeded", cond::WORKSPACE_SUCCEEDED),
        ] {
            let done = conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
            if let Some(done) = done
                && !phases.iter().any(|p| p.name == phase)
            {
                let seconds = done.last_transition_time.0.as_second().saturating_sub(created.0.as_second()).max(0);
                phases.push(PhaseTiming { name: phase.into(), seconds_since_creation: seconds });
            }
        }
    }

    WorkspaceStatus {
        worker_nodes: (!worker_nodes.is_empty()).then_some(worker_nodes),
        conditions: Some(conditions),
        state,
        target_node_count: (o.target_nodes > 0).then_some(o.target_nodes as i32),
        performance: o.previous.and_then(|p| p.performance.clone()),
        plan: o.plan.clone().or_else(|| o.previous.and_then(|p| p.plan.clone())),
        phases: (!phases.is_empty()).then_some(phases),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn time(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    fn node(name: &str, ready: bool, gpus: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": "Standard_NC24ads_A100_v4"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                       "allocatable": {"nvidia.com/gpu": gpus}}
        }))
        .unwrap()
    }

    fn claim(name: &str, conditions: serde_json::Value) -> NodeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": name},
            "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn sts(ready: i32) -> StatefulSet {
        serde_json::from_value(serde_json::json!({"status": {"replicas": 1, "readyReplicas": ready}})).unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "w-0"}, "status": status})).unwrap()
    }

    fn observed<'a>(
        claims: &'a [NodeClaim],
        nodes: &'a [Node],
        sts: Option<&'a StatefulSet>,
        pods: &'a [Pod],
    ) -> Observed<'a> {
        Observed {
            generation: 3,
            created: None,
            previous: None,
            deleting: false,
            invalid: None,
            uses_node_claims: true,
            target_nodes: 1,
            instance_type: Some("Standard_NC24ads_A100_v4"),
            gpus_per_node: 1,
            claims,
            nodes,
            statefulset: sts,
            pods,
            plan: None,
            now: time(100),
        }
    }

    fn condition<'a>(status: &'a WorkspaceStatus, type_: &str) -> &'a Condition {
        status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
    }

    const READY: &str = r#"[{"type":"Launched","status":"True","reason":"Launched","message":"","lastTransitionTime":"2027-01-15T08:00:00Z"},{"type":"Ready","status":"True","reason":"Ready","message":"","lastTransitionTime":"2027-01-15T08:00:00Z"}]"#;

    #[test]
    fn everything_ready_means_succeeded() {
        let claims = [claim("ws1", serde_json::from_str(READY).unwrap())];
        let nodes = [node("n1", true, "1")];
        let s = sts(1);
        let status = compute(&observed(&claims, &nodes, Some(&s), &[]));
        for t in [
            cond::NODE_CLAIM_READY,
            cond::NODES_READY,
            cond::RESOURCE_READY,
            cond::INFERENCE_READY,
            cond::WORKSPACE_SUCCEEDED,
        ] {
            assert_eq!(condition(&status, t).status, "True", "{t}");
            assert_eq!(condition(&status, t).observed_generation, Some(3));
        }
        assert_eq!(status.state, Some(WorkspaceState::Ready));
        assert_eq!(status.worker_nodes, Some(vec!["n1".to_string()]));
    }

    #[test]
    fn a_provisioning_failure_surfaces_in_resource_ready() {
        let claims = [claim(
            "ws1",
            serde_json::json!([{"type": "Launched", "status": "False", "reason": "InsufficientCapacity",
                                "message": "instance type unavailable: choose another instanceType", "lastTransitionTime": "2027-01-15T08:00:00Z"}]),
        )];
        let status = compute(&observed(&claims, &[], None, &[]));
        let resource = condition(&status, cond::RESOURCE_READY);
        assert_eq!((resource.status.as_str(), resource.reason.as_str()), ("False", "InsufficientCapacity"));
        assert!(resource.message.contains("choose another instanceType"));
        assert_eq!(condition(&status, cond::WORKSPACE_SUCCEEDED).reason, "workspacePending");
        assert_eq!(status.state, Some(WorkspaceState::Pending));
    }

    #[test]
    fn nodes_without_gpus_are_not_usable() {
        let claims = [claim("ws1", serde_json::from_str(READY).unwrap())];
        let nodes = [node("n1", true, "0")];
        let status = compute(&observed(&claims, &nodes, None, &[]));
        assert_eq!(condition(&status, cond::NODES_READY).reason, "NodePluginsNotReady");
    }

    #[test]
    fn pod_failures_are_classified_in_upstream_order() {
        let cases = [
            (
                serde_json::json!({"containerStatuses": [{"name": "c", "image": "bad:1", "ready": false, "restartCount": 0, "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}),
                "ImagePullError",
                "check the image name",
            ),
            (
                serde_json::json!({"containerStatuses": [{"name": "c", "image": "i", "ready": false, "restartCount": 5, "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                "ContainerCrashLoopBackOff",
                "kubectl logs",
            ),
            (
                serde_json::json!({"containerStatuses": [{"name": "c", "image": "i", "ready": false, "restartCount": 2, "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
                "ContainerOOMKilled",
                "more memory",
            ),
            (
                serde_json::json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available"}]}),
                "Unschedulable",
                "free GPUs",
            ),
        ];
        for (status, reason, hint) in cases {
            let (got, message) = classify_pods(&[pod(status)]).expect("classified");
            assert_eq!(got, reason);
            assert!(message.contains(hint), "{message}");
        }
        assert!(classify_pods(&[pod(serde_json::json!({"phase": "Running"}))]).is_none());
    }

    #[test]
    fn ready_then_broken_is_not_ready_and_times_are_kept() {
        let claims = [claim("ws1", serde_json::from_str(READY).unwrap())];
        let nodes = [node("n1", true, "1")];
        let good = sts(1);
        let first = compute(&observed(&claims, &nodes, Some(&good), &[]));
        let bad = sts(0);
        let mut o = observed(&claims, &nodes, Some(&bad), &[]);
        o.previous = Some(&first);
        o.now = time(200);
        let second = compute(&o);
        assert_eq!(second.state, Some(WorkspaceState::NotReady));
        assert_eq!(
            condition(&second, cond::RESOURCE_READY).last_transition_time,
            time(100),
            "unchanged condition keeps its time"
        );
        assert_eq!(condition(&second, cond::INFERENCE_READY).last_transition_time, time(200));
    }

    #[test]
    fn phases_record_seconds_since_creation() {
        let claims = [claim("ws1", serde_json::from_str(READY).unwrap())];
        let nodes = [node("n1", true, "1")];
        let s = sts(1);
        let created = time(40);
        let mut o = observed(&claims, &nodes, Some(&s), &[]);
        o.created = Some(&created);
        let status = compute(&o);
        let phases = status.phases.unwrap();
        assert_eq!(phases.len(), 3);
        assert!(phases.iter().all(|p| p.seconds_since_creation == 60));
    }

    #[test]
    fn waiting_for_the_next_step_is_not_written_but_progress_and_problems_are() {
        let claim_with = |reason: &str| {
            claim(
                "ws1",
                serde_json::json!([{"type": "Initialized", "status": "Unknown", "reason": reason, "message": reason,
                                    "lastTransitionTime": "2027-01-15T08:00:00Z"}]),
            )
        };
        let none: [NodeClaim; 0] = [];
        let first = compute(&observed(&none, &[], None, &[]));
        let step = |claims: &[NodeClaim], nodes: &[Node], previous: &WorkspaceStatus| {
            let mut o = observed(claims, nodes, None, &[]);
            o.previous = Some(previous);
            o.now = time(200);
            compute(&o)
        };
        assert!(worth_writing(None, &first));
        assert!(!worth_writing(Some(&first), &first.clone()));
        // No claim yet -> the claim's node is booting: still waiting, not written.
        let booting = step(&[claim_with("NodeNotReady")], &[], &first);
        assert_ne!(booting, first);
        assert!(!worth_writing(Some(&first), &booting));
        // A node turning Ready is a condition turning True: written.
        let nodes = [node("n1", true, "1")];
        assert!(worth_writing(Some(&first), &step(&[claim_with("NodeNotReady")], &nodes, &first)));
        // A problem is written.
        let problem = step(&[claim_with("ResourceNotRegistered")], &[], &first);
        assert!(worth_writing(Some(&first), &problem));
        assert_eq!(condition(&problem, cond::RESOURCE_READY).reason, "ResourceNotRegistered");
    }

    #[test]
    fn deleting_has_only_the_deleting_condition() {
        let mut o = observed(&[], &[], None, &[]);
        o.deleting = true;
        let status = compute(&o);
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].type_, cond::WORKSPACE_DELETING);
    }
}
