//! What the reconciler reads without asking the apiserver: reflector caches of Nodes, NodeClaims, pods,
//! StatefulSets and Services, fed by the same watches that trigger reconciles.
//!
//! Objects are slimmed before they are stored ([`slim_node`] and friends): a cache holds a copy of every watched
//! object for the controller's lifetime, and most of each object (managedFields, pod specs, node images) is never
//! read. The NodeClaim cache is only ever trusted to say "enough claims exist": a lagging cache could make the
//! reconciler create a second NodeClaim for a node that is already being bought, so before creating one it lists
//! them directly.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kaito_api::karpenter::{NodeClaim, NodeClaimStatus};
use kaito_api::v1beta1::Workspace;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// The GPU resource name that sizing and status read from a node's allocatable resources.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Read-only views of the watched objects, and whether they have their initial lists.
#[derive(Clone)]
pub struct Caches {
    /// Nodes the Workspaces may use (see `run` for which ones are watched in each provisioning mode).
    pub nodes: Store<Node>,
    /// NodeClaims labelled `kaito.sh/workspace`.
    pub claims: Store<NodeClaim>,
    /// Pods labelled `kaito.sh/workspace`.
    pub pods: Store<Pod>,
    /// StatefulSets labelled `kaito.sh/workspace`.
    pub statefulsets: Store<StatefulSet>,
    /// Services labelled `kaito.sh/workspace`.
    pub services: Store<Service>,
    synced: tokio::sync::watch::Receiver<bool>,
}

/// The caches went away before their first list completed (the controller is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the object caches closed before their initial lists completed")]
pub struct NotSynced;

impl Caches {
    /// Wraps the stores; `synced` turns true once every store has its initial list (see [`signal_synced`]).
    pub fn new(
        nodes: Store<Node>,
        claims: Store<NodeClaim>,
        pods: Store<Pod>,
        statefulsets: Store<StatefulSet>,
        services: Store<Service>,
        synced: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Caches { nodes, claims, pods, statefulsets, services, synced }
    }

    /// Waits until every cache has its initial list. Counting BYO capacity from a half-filled node cache would
    /// make the reconciler buy nodes it does not need, so nothing is decided before this returns.
    pub async fn wait_synced(&self) -> Result<(), NotSynced> {
        let mut synced = self.synced.clone();
        synced.wait_for(|s| *s).await.map(|_| ()).map_err(|_| NotSynced)
    }

    /// Cached nodes carrying every label of `selector` (an empty selector matches nothing: no node is anyone's
    /// by default).
    pub fn nodes_matching(&self, selector: &BTreeMap<String, String>) -> Vec<Node> {
        if selector.is_empty() {
            return Vec::new();
        }
        let mut nodes: Vec<Node> =
            self.nodes.state().iter().filter(|n| has_labels(&n.metadata, selector)).map(|n| Node::clone(n)).collect();
        // The store is a hash map; sort so status (workerNodes) and decisions do not depend on its order.
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        nodes
    }

    /// Cached NodeClaims carrying every label of `selector`, by name. Never the basis for creating one (see the
    /// module documentation).
    pub fn claims_matching(&self, selector: &BTreeMap<String, String>) -> Vec<NodeClaim> {
        if selector.is_empty() {
            return Vec::new();
        }
        let mut claims: Vec<NodeClaim> = self
            .claims
            .state()
            .iter()
            .filter(|c| has_labels(&c.metadata, selector))
            .map(|c| NodeClaim::clone(c))
            .collect();
        claims.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        claims
    }

    /// Cached pods of a Workspace.
    pub fn pods_of(&self, namespace: &str, workspace: &str) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self
            .pods
            .state()
            .iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(kaito_api::labels::LABEL_WORKSPACE))
                        .map(String::as_str)
                        == Some(workspace)
            })
            .map(|p| Pod::clone(p))
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    /// The cached StatefulSet `namespace/name`.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<StatefulSet> {
        self.statefulsets.get(&ObjectRef::new(name).within(namespace)).map(|s| StatefulSet::clone(&s))
    }

    /// Whether the Service `namespace/name` is in the cache.
    pub fn has_service(&self, namespace: &str, name: &str) -> bool {
        self.services.get(&ObjectRef::new(name).within(namespace)).is_some()
    }
}

/// Waits for each store's initial list, then flips `synced` to true.
///
/// Each store must have no other `wait_until_ready` waiter: kube's readiness signal wakes only the most recent
/// one. The Workspace store is not awaited here (the controller's runner waits on it).
pub async fn signal_synced(
    nodes: Store<Node>,
    claims: Store<NodeClaim>,
    pods: Store<Pod>,
    statefulsets: Store<StatefulSet>,
    services: Store<Service>,
    synced: tokio::sync::watch::Sender<bool>,
) {
    let ready = nodes.wait_until_ready().await.is_ok()
        && claims.wait_until_ready().await.is_ok()
        && pods.wait_until_ready().await.is_ok()
        && statefulsets.wait_until_ready().await.is_ok()
        && services.wait_until_ready().await.is_ok();
    if ready {
        tracing::info!("caches synced");
        let _ = synced.send(true);
    }
}

fn has_labels(meta: &ObjectMeta, selector: &BTreeMap<String, String>) -> bool {
    let labels = meta.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Only what identifies an object and links it to its Workspace.
fn slim_meta(meta: &mut ObjectMeta, keep_annotations: bool) {
    meta.managed_fields = None;
    if !keep_annotations {
        meta.annotations = None;
    }
}

/// A Node reduced to what sizing and status read: name, labels, deletion, the Ready condition's status and
/// allocatable GPUs. kwok (like a kubelet) rewrites heartbeat times every few seconds; none of that is kept.
pub fn slim_node(node: &mut Node) {
    slim_meta(&mut node.metadata, false);
    node.spec = None;
    let status = node.status.take().unwrap_or_default();
    let ready = status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready");
    let gpus = status.allocatable.and_then(|mut a| a.remove(GPU_RESOURCE));
    node.status = Some(NodeStatus {
        conditions: ready.map(|c| vec![NodeCondition { type_: c.type_, status: c.status, ..NodeCondition::default() }]),
        allocatable: gpus.map(|q| BTreeMap::from([(GPU_RESOURCE.to_string(), q)])),
        ..NodeStatus::default()
    });
}

/// A NodeClaim reduced to what status reads: identity, labels, deletion, lifecycle conditions and node name.
pub fn slim_node_claim(claim: &mut NodeClaim) {
    slim_meta(&mut claim.metadata, false);
    claim.spec = Default::default();
    if let Some(status) = claim.status.take() {
        claim.status =
            Some(NodeClaimStatus { node_name: status.node_name, conditions: status.conditions, ..Default::default() });
    }
}

/// A pod reduced to its identity and status (failures are classified from status alone).
pub fn slim_pod(pod: &mut Pod) {
    slim_meta(&mut pod.metadata, false);
    pod.spec = None;
}

/// A StatefulSet without its pod template: the reconciler compares the desired-hash annotation, not the spec.
pub fn slim_statefulset(sts: &mut StatefulSet) {
    slim_meta(&mut sts.metadata, true);
    if let Some(spec) = sts.spec.as_mut() {
        spec.template = Default::default();
        spec.volume_claim_templates = None;
    }
}

/// A Service reduced to its identity: the reconciler only asks whether it exists.
pub fn slim_service(svc: &mut Service) {
    slim_meta(&mut svc.metadata, false);
    svc.spec = None;
    svc.status = None;
}

/// A Workspace without managedFields and kubectl's last-applied copy of itself (the annotations the reconciler
/// reads are kept).
pub fn slim_workspace(ws: &mut Workspace) {
    ws.metadata.managed_fields = None;
    if let Some(annotations) = ws.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What of a (slimmed) Node the reconciler depends on. Two versions with the same fingerprint lead to the same
/// decisions and the same status, so the second one need not trigger a reconcile.
pub fn node_fingerprint(node: &Node) -> u64 {
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let gpus = status.and_then(|s| s.allocatable.as_ref()).and_then(|a| a.get(GPU_RESOURCE)).map(|Quantity(q)| q);
    hash_of(&(&node.metadata.labels, node.metadata.deletion_timestamp.is_some(), ready, gpus))
}

/// What of a NodeClaim the Workspace's status depends on: its lifecycle conditions (without their times),
/// the node it got, its deletion. The provisioner rewrites claim status more often than that changes.
pub fn node_claim_fingerprint(claim: &kaito_api::karpenter::NodeClaim) -> u64 {
    let status = claim.status.as_ref();
    let conditions: Vec<(&str, &str, &str, &str)> = status
        .map(|s| {
            s.conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str(), c.message.as_str()))
                .collect()
        })
        .unwrap_or_default();
    hash_of(&(conditions, status.and_then(|s| s.node_name.as_deref()), claim.metadata.deletion_timestamp.is_some()))
}

/// What of a Workspace is input to a reconcile: spec (generation), finalizers, deletion, labels and annotations.
/// Status is the reconciler's own output; its writes need not trigger another reconcile.
pub fn workspace_fingerprint(ws: &Workspace) -> u64 {
    let meta = &ws.metadata;
    hash_of(&(meta.generation, &meta.finalizers, meta.deletion_timestamp.is_some(), &meta.labels, &meta.annotations))
}

/// The objects of a watch whose fingerprint changed, plus every deleted object.
///
/// Unlike kube's `predicate_filter`, deletions always pass: a deleted node changes nothing in its fingerprint
/// but everything for its Workspace. A re-list (after the watch fell behind) starts a fresh table, so objects
/// deleted meanwhile do not stay in it.
pub fn changed_objects<K, S>(events: S, fingerprint: fn(&K) -> u64) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut relisting: Option<HashMap<String, u64>> = None;
    events.filter_map(move |event| {
        let key = |obj: &K| obj.meta().uid.clone().or_else(|| obj.meta().name.clone()).unwrap_or_default();
        let out = match event {
            Ok(watcher::Event::Init) => {
                relisting = Some(HashMap::new());
                None
            }
            Ok(watcher::Event::InitApply(obj)) => {
                let print = fingerprint(&obj);
                let k = key(&obj);
                let changed = seen.get(&k) != Some(&print);
                relisting.get_or_insert_with(HashMap::new).insert(k, print);
                changed.then_some(Ok(obj))
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(fresh) = relisting.take() {
                    seen = fresh;
                }
                None
            }
            Ok(watcher::Event::Apply(obj)) => {
                let print = fingerprint(&obj);
                (seen.insert(key(&obj), print) != Some(print)).then_some(Ok(obj))
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(&key(&obj));
                Some(Ok(obj))
            }
            Err(err) => Some(Err(err)),
        };
        futures::future::ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(rv: &str, ready: &str, heartbeat: &str, gpus: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "gpu-1", "uid": "u1", "resourceVersion": rv,
                         "labels": {"kaito.sh/workspace": "ws"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "managedFields": [{"manager": "kwok", "operation": "Update"}]},
            "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat, "reason": "KubeletReady"},
                    {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat},
                ],
                "allocatable": {"cpu": "24", "nvidia.com/gpu": gpus},
                "images": [{"names": ["some/image:1"], "sizeBytes": 1}],
            }
        }))
        .unwrap()
    }

    fn slimmed(mut n: Node) -> Node {
        slim_node(&mut n);
        n
    }

    #[test]
    fn a_slim_node_keeps_what_status_reads() {
        let n = slimmed(node("1", "True", "2026-01-01T00:00:00Z", "2"));
        assert_eq!(
            serde_json::to_value(&n).unwrap(),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "gpu-1", "uid": "u1", "resourceVersion": "1", "labels": {"kaito.sh/workspace": "ws"}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"nvidia.com/gpu": "2"}},
            })
        );
        assert!(super::super::status::node_is_ready(&n));
        assert!(super::super::status::node_is_usable(&n, None, 2));
    }

    #[test]
    fn heartbeats_do_not_change_a_node_fingerprint_but_readiness_and_gpus_do() {
        let first = node_fingerprint(&slimmed(node("1", "True", "2026-01-01T00:00:00Z", "1")));
        assert_eq!(first, node_fingerprint(&slimmed(node("2", "True", "2026-01-01T00:00:20Z", "1"))));
        assert_ne!(first, node_fingerprint(&slimmed(node("3", "False", "2026-01-01T00:00:40Z", "1"))));
        assert_ne!(first, node_fingerprint(&slimmed(node("4", "True", "2026-01-01T00:00:40Z", "2"))));
        let mut relabelled = slimmed(node("5", "True", "2026-01-01T00:00:40Z", "1"));
        relabelled.metadata.labels.get_or_insert_default().insert("accelerator".into(), "nvidia".into());
        assert_ne!(first, node_fingerprint(&relabelled));
    }

    #[tokio::test]
    async fn unchanged_fingerprints_are_dropped_and_deletions_always_pass() {
        let n = |rv: &str, ready: &str| slimmed(node(rv, ready, &format!("2026-01-01T00:00:{rv:0>2}Z"), "1"));
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(n("1", "False"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(n("2", "False"))),
            Ok(watcher::Event::Apply(n("3", "True"))),
            Ok(watcher::Event::Apply(n("4", "True"))),
            Ok(watcher::Event::Delete(n("5", "True"))),
            // a re-list after the deletion: the object is new to the fresh table, so it passes once
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(n("6", "True"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(n("7", "True"))),
        ];
        let passed: Vec<String> = changed_objects(futures::stream::iter(events), node_fingerprint)
            .map(|r| r.unwrap().metadata.resource_version.unwrap())
            .collect()
            .await;
        assert_eq!(passed, ["1", "3", "5", "6"]);
    }

    #[test]
    fn a_slim_node_claim_keeps_what_status_reads() {
        let mut claim: NodeClaim = serde_json::from_value(json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": "ws0abc", "labels": {"kaito.sh/workspace": "ws"},
                         "managedFields": [{"manager": "kaito-provisioner", "operation": "Apply"}]},
            "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                     "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["x"]}]},
            "status": {"nodeName": "ws0abc", "providerID": "kwok://ws0abc", "capacity": {"cpu": "24"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap();
        slim_node_claim(&mut claim);
        assert!(claim.metadata.managed_fields.is_none() && claim.spec.requirements.is_empty());
        assert!(claim.condition_is_true(kaito_api::karpenter::conditions::READY));
        let status = claim.status.unwrap();
        assert_eq!((status.node_name.as_deref(), status.provider_id), (Some("ws0abc"), None));
    }

    #[test]
    fn status_writes_do_not_change_a_workspace_fingerprint() {
        let mut ws: Workspace = serde_json::from_value(json!({
            "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": "ws", "namespace": "ns", "generation": 1},
            "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
            "inference": {"preset": {"name": "phi-4-mini-instruct"}},
        }))
        .unwrap();
        let first = workspace_fingerprint(&ws);
        ws.status = Some(Default::default());
        assert_eq!(first, workspace_fingerprint(&ws));
        ws.metadata.finalizers = Some(vec!["workspace.finalizer.kaito.sh".into()]);
        assert_ne!(first, workspace_fingerprint(&ws));
    }
}
