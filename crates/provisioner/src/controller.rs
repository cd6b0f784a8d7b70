//! The NodeClaim controller: Karpenter's launch / registration / initialization / termination lifecycle
//! over a [`CloudProvider`].
//!
//! Per claim (whose `nodeClassRef` is accepted):
//! 1. add the `karpenter.sh/termination` finalizer;
//! 2. while `status.providerID` is empty, call `create` (idempotent) and record providerID, imageID,
//!    capacity, allocatable and the instance's labels: `Launched=True`. Insufficient capacity gives
//!    `Launched=False/InsufficientCapacity` (the claim is kept, unlike Karpenter, which deletes it so its
//!    scheduler can pick another type: KAITO's controller surfaces the reason instead, and retries every minute);
//! 3. when exactly one Node carries the providerID: sync the claim's labels and taints onto it, label it
//!    `karpenter.sh/registered=true`, remove the `karpenter.sh/unregistered` taint, set `status.nodeName`:
//!    `Registered=True`;
//! 4. Node Ready, no startup or known ephemeral taints, every non-zero resource of the claim's allocatable
//!    present on the Node: label it `karpenter.sh/initialized=true`, `Initialized=True`; then `Ready=True`;
//! 5. a registered claim whose instance is gone (`get` → NotFound) is deleted, as Karpenter's garbage
//!    collection does; KAITO then creates a replacement;
//! 6. on deletion: `delete` until the cloud says NotFound, then remove the finalizer.
//!
//! Status is written with server-side apply (field manager [`FIELD_MANAGER`]) only when it changed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kaito_api::karpenter::{NodeClaim, NodeClaimStatus, NodeClassReference, conditions as types, labels as klabels};
use kaito_api::latest::Latest;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::cloud::{CloudError, CloudProvider};
use crate::conditions::{self, INSUFFICIENT_CAPACITY, LAUNCH_FAILED, Launch};
use crate::metrics::Metrics;

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "kaito-provisioner";
/// Karpenter's termination finalizer.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";
/// Node label Karpenter sets at registration.
pub const REGISTERED_LABEL: &str = "karpenter.sh/registered";
/// Node label Karpenter sets at initialization.
pub const INITIALIZED_LABEL: &str = "karpenter.sh/initialized";
/// Condition reason for a claim the cloud can never launch as written.
pub const INVALID_NODECLAIM: &str = "InvalidNodeClaim";

/// Instances younger than this are never garbage-collected (their claim may not be in the API yet).
const GC_MIN_AGE: Duration = Duration::from_secs(30);

/// Errors of one reconcile; the controller logs them and retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{context}")]
    Kube {
        /// What was being done.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The cloud provider failed.
    #[error("cloud provider: {context}")]
    Cloud {
        /// What was being done.
        context: String,
        /// The cloud error.
        #[source]
        source: CloudError,
    },
}

fn kube_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let context = context.into();
    move |source| Error::Kube { context, source }
}

/// Which `nodeClassRef`s this provisioner serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeClassFilter {
    /// Serve every claim regardless of its node class.
    pub accept_all: bool,
    /// Accepted `(group, kind)` pairs.
    pub accepted: Vec<(String, String)>,
}

impl Default for NodeClassFilter {
    /// KAITO's `kaito.sh/KaitoNodeClass` and Karpenter-kwok's `karpenter.kwok.sh/KWOKNodeClass`.
    fn default() -> Self {
        Self {
            accept_all: false,
            accepted: vec![
                ("kaito.sh".to_string(), "KaitoNodeClass".to_string()),
                ("karpenter.kwok.sh".to_string(), "KWOKNodeClass".to_string()),
            ],
        }
    }
}

impl NodeClassFilter {
    /// Whether a claim with this node class is ours.
    pub fn accepts(&self, class: &NodeClassReference) -> bool {
        self.accept_all || self.accepted.iter().any(|(g, k)| *g == class.group && *k == class.kind)
    }

    /// Parses `group/Kind` (as in `--node-classes kaito.sh/KaitoNodeClass`); `None` without a slash.
    pub fn parse_entry(entry: &str) -> Option<(String, String)> {
        let (group, kind) = entry.trim().rsplit_once('/')?;
        (!group.is_empty() && !kind.is_empty()).then(|| (group.to_string(), kind.to_string()))
    }
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Node classes to serve.
    pub node_classes: NodeClassFilter,
    /// Label selector limiting the NodeClaims watched (sharding; tests use it to isolate provisioners).
    pub claim_selector: Option<String>,
    /// How often to delete instances whose claim is gone; `None` disables the garbage collector.
    pub gc_interval: Option<Duration>,
    /// Requeue interval for claims the cloud refused (capacity may come back).
    pub refused_retry: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            node_classes: NodeClassFilter::default(),
            claim_selector: None,
            gc_interval: Some(Duration::from_secs(120)),
            refused_retry: Duration::from_secs(60),
        }
    }
}

struct Ctx<P> {
    client: Client,
    provider: Arc<P>,
    nodes: Store<Node>,
    options: ControllerOptions,
    metrics: Arc<Metrics>,
    /// Claims and Nodes as our own writes returned them: the watch caches lag behind those writes (by seconds
    /// when the apiserver is busy), and a pass working from the older copy would redo them (the same status
    /// again with new transition times, a registration patch that fails on its stale resourceVersion).
    written_claims: Latest<NodeClaim>,
    written_nodes: Latest<Node>,
}

/// Runs the NodeClaim controller (and the instance garbage collector) until `shutdown` resolves.
///
/// In-process use (tests): `tokio::spawn(run(client, Arc::new(provider), options, metrics, pending()))`;
/// aborting the task is a crash, which the controller recovers from on the next start.
pub async fn run<P: CloudProvider>(
    client: Client,
    provider: Arc<P>,
    options: ControllerOptions,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let mut claim_config = watcher::Config::default();
    if let Some(selector) = &options.claim_selector {
        claim_config = claim_config.labels(selector);
    }
    let claims: Api<NodeClaim> = Api::all(client.clone());
    let (nodes, node_writer) = reflector::store::<Node>();
    let node_events =
        reflector::reflector(node_writer, watcher(Api::<Node>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .touched_objects();

    let controller = Controller::new(claims.clone(), claim_config);
    let claim_store = controller.store();
    let mapper_store = claim_store.clone();
    // Nodes map to claims by providerID, the link Karpenter uses; a Node without one concerns no claim.
    let mapper = move |node: Node| {
        let provider_id = node.spec.as_ref().and_then(|s| s.provider_id.clone());
        mapper_store
            .state()
            .into_iter()
            .filter(|c| provider_id.is_some() && c.status.as_ref().and_then(|s| s.provider_id.clone()) == provider_id)
            .map(|c| ObjectRef::from_obj(&*c))
            .collect::<Vec<_>>()
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ready = {
        let (claims_ready, nodes_ready, metrics) = (claim_store.clone(), nodes.clone(), metrics.clone());
        tokio::spawn(async move {
            if synced(&claims_ready, None).await && synced(&nodes_ready, None).await {
                metrics.set_ready();
                info!("caches synced");
            }
        })
    };
    let gc = options
        .gc_interval
        .map(|every| tokio::spawn(garbage_collect(claims.clone(), provider.clone(), every, stop_rx.clone())));

    let ctx = Arc::new(Ctx {
        client,
        provider,
        nodes,
        options,
        metrics,
        written_claims: Latest::default(),
        written_nodes: Latest::default(),
    });
    info!(provider = ctx.provider.name(), "NodeClaim controller starting");
    controller
        .watches_stream(node_events, mapper)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<P>, error_policy::<P>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(nodeclaim = %obj.name, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
    let _ = stop_tx.send(true);
    ready.abort();
    if let Some(gc) = gc {
        let _ = gc.await;
    }
    info!("NodeClaim controller stopped");
}

/// Whether the store has its initial list, waiting up to `limit` (forever when `None`).
///
/// kube's `wait_until_ready` wakes only the most recent waiter (one oneshot receiver shared by all), and
/// the controller itself waits on the claim store: short polls keep every waiter making progress.
async fn synced<K>(store: &Store<K>, limit: Option<Duration>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await {
            return result.is_ok();
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return false;
        }
    }
}

fn error_policy<P: CloudProvider>(claim: Arc<NodeClaim>, error: &Error, _ctx: Arc<Ctx<P>>) -> Action {
    warn!(nodeclaim = %claim.name_any(), error = %error_chain(error), "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// `error: cause: cause`, since the controller's logs are the only place a user sees the chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

async fn reconcile<P: CloudProvider>(claim: Arc<NodeClaim>, ctx: Arc<Ctx<P>>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_claim(&claim, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_claim<P: CloudProvider>(claim: &NodeClaim, ctx: &Ctx<P>) -> Result<Action, Error> {
    if !ctx.options.node_classes.accepts(&claim.spec.node_class_ref) {
        return Ok(Action::await_change());
    }
    let name = claim.name_any();
    let claims: Api<NodeClaim> = Api::all(ctx.client.clone());
    let written = ctx.written_claims.fresher_than(claim);
    let claim: &NodeClaim = written.as_deref().unwrap_or(claim);
    if claim.meta().deletion_timestamp.is_some() {
        return terminate(claim, &claims, ctx).await;
    }
    if !claim.finalizers().iter().any(|f| f == TERMINATION_FINALIZER) {
        ctx.written_claims.record(add_finalizer(&claims, claim).await?);
    }

    // Nodes come from the watch cache; before its first list everything would look unregistered.
    if !synced(&ctx.nodes, Some(Duration::from_secs(10))).await {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // The watch cache lags behind this controller's own writes (by seconds under load): a cached claim
    // without a providerID may have been launched by the previous pass. Launching from that copy would call
    // `create` again and compute the claim's labels and status from outdated data (the label apply left out
    // labels the previous pass had applied, so SSA removed them and a Ready claim lost its instance labels),
    // so the launch decision is made on the claim as the API server has it now.
    let live;
    let claim = if claim.status.as_ref().and_then(|s| s.provider_id.as_ref()).is_none() {
        match claims.get_opt(&name).await.map_err(kube_err(format!("reading NodeClaim {name}")))? {
            Some(current) if current.meta().deletion_timestamp.is_none() => {
                live = current;
                &live
            }
            // Deleted meanwhile: the watch event brings the claim back for termination.
            _ => return Ok(Action::requeue(Duration::from_secs(1))),
        }
    } else {
        claim
    };

    let mut status = claim.status.clone().unwrap_or_default();
    let (launch, launched_node) = if status.provider_id.is_some() {
        (Launch::Launched, None)
    } else {
        launch(claim, &claims, ctx, &mut status).await?
    };

    let mut nodes: Vec<Node> = match &status.provider_id {
        Some(id) => ctx
            .nodes
            .state()
            .into_iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_ref()) == Some(id))
            .map(|n| ctx.written_nodes.fresher_than(&n).map_or_else(|| (*n).clone(), |w| (*w).clone()))
            .collect(),
        None => Vec::new(),
    };
    // The Node may not be in the watch cache yet. Read the one the claim knows of directly: the Node a cloud
    // like kwok names at launch (so the claim is launched and registered in one status write), or the one it
    // registered (the cache lags behind the registration; one read beats polling until the cache has it).
    let known_node = launched_node
        .or_else(|| claim.condition_is_true(types::REGISTERED).then(|| status.node_name.clone()).flatten());
    if let (Some(node_name), Some(id), true) = (&known_node, &status.provider_id, nodes.is_empty()) {
        let node = match ctx.written_nodes.fresher(None, node_name, None) {
            Some(written) => Some((*written).clone()),
            None => Api::<Node>::all(ctx.client.clone())
                .get_opt(node_name)
                .await
                .map_err(kube_err(format!("reading Node {node_name}")))?,
        };
        nodes.extend(node.filter(|n| n.spec.as_ref().and_then(|s| s.provider_id.as_ref()) == Some(id)));
    }
    if let (Launch::Launched, Some(id), true) = (&launch, &status.provider_id, nodes.is_empty())
        && claim.condition_is_true(types::REGISTERED)
    {
        // No Node at all for a registered claim: the cloud says whether the instance is gone.
        match ctx.provider.get(id).await {
            Err(e) if e.is_not_found() => {
                info!(nodeclaim = %name, provider_id = %id, "instance is gone; deleting the NodeClaim");
                claims
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map_err(kube_err(format!("deleting NodeClaim {name} whose instance is gone")))?;
                return Ok(Action::await_change());
            }
            Err(source) => return Err(Error::Cloud { context: format!("getting {id}"), source }),
            Ok(_) => return Ok(Action::requeue(Duration::from_secs(1))),
        }
    }
    if let [node] = nodes.as_mut_slice() {
        match register(ctx, claim, node).await {
            Ok(registered) => {
                status.node_name = registered.metadata.name.clone();
                *node = registered;
            }
            // Still write what the launch produced (a lost providerID would mean another create call);
            // the Node counts as unregistered until the next pass.
            Err(e) => {
                warn!(nodeclaim = %name, error = %error_chain(&e), "registration failed; retrying");
                nodes.clear();
            }
        }
    }

    let mut observed = claim.clone();
    observed.status = Some(status.clone());
    let node_refs: Vec<&Node> = nodes.iter().collect();
    let desired = conditions::compute(&observed, &launch, &node_refs);
    if let ([node], true) = (nodes.as_slice(), desired[2].status == "True")
        && node.labels().get(INITIALIZED_LABEL).map(String::as_str) != Some("true")
    {
        ctx.written_nodes.record(label_node(ctx, node, INITIALIZED_LABEL).await?);
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let existing = claim.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    status.conditions = conditions::merge(existing, &desired, claim.metadata.generation, &now);
    if conditions::worth_writing(claim.status.as_ref(), &status) {
        ctx.written_claims.record(apply_status(&claims, &name, &status).await?);
    }

    Ok(match launch {
        Launch::Refused { .. } => Action::requeue(ctx.options.refused_retry),
        Launch::Failed { .. } => Action::requeue(Duration::from_secs(5)),
        Launch::Pending => Action::requeue(Duration::from_secs(1)),
        // Node events wake us sooner; the periodic pass notices lost instances the watch cannot see.
        Launch::Launched if desired[3].status == "True" => Action::requeue(Duration::from_secs(300)),
        Launch::Launched => Action::requeue(Duration::from_secs(10)),
    })
}

/// Calls the cloud and records the result in `status`; also returns the name of the instance's Node when the
/// cloud knows it already.
async fn launch<P: CloudProvider>(
    claim: &NodeClaim,
    claims: &Api<NodeClaim>,
    ctx: &Ctx<P>,
    status: &mut NodeClaimStatus,
) -> Result<(Launch, Option<String>), Error> {
    let name = claim.name_any();
    match ctx.provider.create(claim).await {
        Ok(launched) => {
            let got = launched.status.unwrap_or_default();
            let Some(provider_id) = got.provider_id else {
                return Ok((Launch::Failed { message: "the cloud provider returned no providerID".to_string() }, None));
            };
            info!(nodeclaim = %name, %provider_id, "launched");
            ctx.metrics.created.inc();
            // Karpenter copies the instance's labels onto the claim (before the status says Launched).
            let new_labels = instance_labels_to_apply(claim, &launched.metadata.labels.unwrap_or_default());
            if !new_labels.is_empty() {
                let patch = json!({
                    "apiVersion": "karpenter.sh/v1",
                    "kind": "NodeClaim",
                    "metadata": {"name": name, "labels": new_labels},
                });
                claims
                    .patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&patch))
                    .await
                    .map_err(kube_err(format!("labelling NodeClaim {name}")))?;
            }
            status.provider_id = Some(provider_id);
            status.image_id = got.image_id;
            status.capacity = got.capacity;
            status.allocatable = got.allocatable;
            Ok((Launch::Launched, got.node_name))
        }
        Err(e) if e.is_terminal_launch_error() => {
            let (reason, message) = match &e {
                CloudError::InsufficientCapacity { reason, .. } => (INSUFFICIENT_CAPACITY, reason.clone()),
                other => (INVALID_NODECLAIM, other.to_string()),
            };
            warn!(nodeclaim = %name, %reason, %message, "launch refused");
            ctx.metrics.launch_failed(reason);
            Ok((Launch::Refused { reason: reason.to_string(), message }, None))
        }
        Err(e) => {
            let message = error_chain(&e);
            warn!(nodeclaim = %name, error = %message, "launch failed; retrying");
            ctx.metrics.launch_failed(LAUNCH_FAILED);
            Ok((Launch::Failed { message }, None))
        }
    }
}

/// The instance labels the launch applies onto `claim` (pure): all but `kubernetes.io/hostname` and keys
/// another writer set on the claim, so KAITO's stay KAITO's. Keys [`FIELD_MANAGER`] applied before (a
/// retried launch) stay in the set, because an apply that leaves out a key its manager owns removes that
/// label. `claim` must be current (read from the API server, not the watch cache): the ownership in a stale
/// copy is not the ownership the apply is judged against.
pub fn instance_labels_to_apply(claim: &NodeClaim, instance: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let ours = labels_applied_by(claim, FIELD_MANAGER);
    instance
        .iter()
        .filter(|(k, _)| (!claim.labels().contains_key(*k) || ours.contains(*k)) && *k != "kubernetes.io/hostname")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Label keys that `manager` owns through server-side apply on the main resource (from `managedFields`).
pub fn labels_applied_by(claim: &NodeClaim, manager: &str) -> std::collections::BTreeSet<String> {
    claim
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(manager)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref().unwrap_or("").is_empty()
        })
        .filter_map(|m| m.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get("f:labels")?.as_object())
        .flat_map(|labels| labels.keys().filter_map(|k| k.strip_prefix("f:")).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Karpenter's registration: claim labels and taints onto the Node, the registered label, no unregistered
/// taint. The merge patch carries the Node's resourceVersion so a concurrent change (kwok's heartbeat, KCM's
/// taint removal) is retried on a fresh copy instead of being overwritten.
async fn register<P: CloudProvider>(ctx: &Ctx<P>, claim: &NodeClaim, node: &Node) -> Result<Node, Error> {
    let node_name = node.name_any();
    let nodes = Api::<Node>::all(ctx.client.clone());
    let mut current = node.clone();
    for attempt in 0..3 {
        let Some(patch) = registration_patch(claim, &current) else {
            return Ok(current);
        };
        if attempt == 0 {
            info!(nodeclaim = %claim.name_any(), node = %node_name, "registering node");
        }
        match nodes.patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(patched) => {
                ctx.written_nodes.record(patched.clone());
                return Ok(patched);
            }
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => {
                current = nodes.get(&node_name).await.map_err(kube_err(format!("reading Node {node_name}")))?;
            }
            Err(source) => return Err(Error::Kube { context: format!("registering Node {node_name}"), source }),
        }
    }
    Ok(current)
}

/// The merge patch that registers `node` for `claim`, or `None` when it is registered already (pure).
pub fn registration_patch(claim: &NodeClaim, node: &Node) -> Option<serde_json::Value> {
    let current: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut taints: Vec<Taint> = current.iter().filter(|t| t.key != klabels::UNREGISTERED_TAINT).cloned().collect();
    for t in &claim.spec.taints {
        if !taints.iter().any(|have| have.key == t.key && have.effect == t.effect) {
            taints.push(t.clone());
        }
    }
    let mut missing: BTreeMap<String, String> = claim
        .labels()
        .iter()
        .filter(|(k, v)| node.labels().get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if node.labels().get(REGISTERED_LABEL).map(String::as_str) != Some("true") {
        missing.insert(REGISTERED_LABEL.to_string(), "true".to_string());
    }
    if missing.is_empty() && taints == current {
        return None;
    }
    Some(json!({
        "metadata": {"resourceVersion": node.resource_version(), "labels": missing},
        "spec": {"taints": taints},
    }))
}

async fn label_node<P: CloudProvider>(ctx: &Ctx<P>, node: &Node, label: &str) -> Result<Node, Error> {
    let node_name = node.name_any();
    let patch = json!({"metadata": {"labels": {label: "true"}}});
    Api::<Node>::all(ctx.client.clone())
        .patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_err(format!("labelling Node {node_name}")))
}

async fn apply_status(claims: &Api<NodeClaim>, name: &str, status: &NodeClaimStatus) -> Result<NodeClaim, Error> {
    let patch = json!({
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name},
        "status": status,
    });
    // force: the provisioner is the only writer of a claim's status.
    claims
        .patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(kube_err(format!("writing the status of NodeClaim {name}")))
}

async fn add_finalizer(claims: &Api<NodeClaim>, claim: &NodeClaim) -> Result<NodeClaim, Error> {
    let name = claim.name_any();
    let mut finalizers = claim.finalizers().to_vec();
    finalizers.push(TERMINATION_FINALIZER.to_string());
    set_finalizers(claims, claim, finalizers)
        .await
        .map_err(kube_err(format!("adding the finalizer to NodeClaim {name}")))
}

/// Replaces the finalizer list; the resourceVersion makes a concurrent change fail with 409 (and retry)
/// instead of being overwritten.
async fn set_finalizers(
    claims: &Api<NodeClaim>,
    claim: &NodeClaim,
    finalizers: Vec<String>,
) -> Result<NodeClaim, kube::Error> {
    let patch = json!({"metadata": {"resourceVersion": claim.resource_version(), "finalizers": finalizers}});
    claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
}

async fn terminate<P: CloudProvider>(
    claim: &NodeClaim,
    claims: &Api<NodeClaim>,
    ctx: &Ctx<P>,
) -> Result<Action, Error> {
    let name = claim.name_any();
    if !claim.finalizers().iter().any(|f| f == TERMINATION_FINALIZER) {
        return Ok(Action::await_change());
    }
    match ctx.provider.delete(claim).await {
        Ok(()) => {
            debug!(nodeclaim = %name, "instance deletion in progress");
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(e) if e.is_not_found() => {
            let rest = claim.finalizers().iter().filter(|f| *f != TERMINATION_FINALIZER).cloned().collect();
            match set_finalizers(claims, claim, rest).await {
                Ok(_) => {}
                // Already gone: another pass (or a previous life of this process) finished the job.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::Kube { context: format!("removing the finalizer of NodeClaim {name}"), source });
                }
            }
            ctx.written_claims.forget(None, &name);
            info!(nodeclaim = %name, "instance deleted; finalizer removed");
            ctx.metrics.deleted.inc();
            Ok(Action::await_change())
        }
        Err(source) => Err(Error::Cloud { context: format!("deleting the instance of NodeClaim {name}"), source }),
    }
}

/// Karpenter's instance garbage collection: instances (older than 30 s) whose NodeClaim no longer exists.
/// Asks the API server, not the watch cache, since the cache may be sharded by a label selector.
async fn garbage_collect<P: CloudProvider>(
    claims: Api<NodeClaim>,
    provider: Arc<P>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let instances = match provider.list().await {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %error_chain(&e), "garbage collection: listing instances failed");
                continue;
            }
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        for instance in instances {
            let young = instance
                .metadata
                .creation_timestamp
                .as_ref()
                .is_none_or(|t| now.duration_since(t.0).unsigned_abs() < GC_MIN_AGE);
            if young || instance.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = instance.name_any();
            match claims.get_opt(&name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    info!(nodeclaim = %name, "garbage collection: deleting instance without a NodeClaim");
                    if let Err(e) =
                        provider.delete(&instance).await.or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
                    {
                        warn!(nodeclaim = %name, error = %error_chain(&e), "garbage collection: delete failed");
                    }
                }
                Err(e) => warn!(nodeclaim = %name, error = %e, "garbage collection: reading NodeClaim failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kaito_api::karpenter::NodeClaimStatus;

    use super::*;

    #[test]
    fn status_uses_karpenter_field_names() {
        // The CRD's schema says providerID/imageID; anything else is rejected by server-side apply.
        let status = NodeClaimStatus {
            provider_id: Some("kwok://a".into()),
            image_id: Some("img".into()),
            ..NodeClaimStatus::default()
        };
        let value = serde_json::to_value(&status).expect("serializes");
        assert_eq!(value, json!({"providerID": "kwok://a", "imageID": "img"}));
    }

    #[test]
    fn registration_removes_the_unregistered_taint_and_labels_the_node_once() {
        let mut claim = NodeClaim::new("ws1", Default::default());
        claim.metadata.labels = Some(BTreeMap::from([("kaito.sh/workspace".to_string(), "phi".to_string())]));
        claim.spec.taints = vec![Taint {
            key: "sku".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }];
        let mut node = Node::default();
        node.metadata.resource_version = Some("7".into());
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![
                claim.spec.taints[0].clone(),
                Taint { key: klabels::UNREGISTERED_TAINT.into(), effect: "NoExecute".into(), ..Taint::default() },
            ]),
            ..Default::default()
        });
        let patch = registration_patch(&claim, &node).expect("needs registration");
        assert_eq!(
            patch,
            json!({
                "metadata": {"resourceVersion": "7", "labels": {"kaito.sh/workspace": "phi", "karpenter.sh/registered": "true"}},
                "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
            })
        );
        node.metadata.labels = Some(BTreeMap::from([
            ("kaito.sh/workspace".to_string(), "phi".to_string()),
            (REGISTERED_LABEL.to_string(), "true".to_string()),
        ]));
        node.spec.as_mut().expect("spec").taints = Some(claim.spec.taints.clone());
        assert_eq!(registration_patch(&claim, &node), None);
    }

    #[test]
    fn labels_owned_through_apply() {
        let mut claim = NodeClaim::new("ws1", Default::default());
        let entry = |manager: &str, operation: &str, subresource: Option<&str>, fields: serde_json::Value| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some(operation.into()),
                subresource: subresource.map(str::to_string),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(fields)),
                ..Default::default()
            }
        };
        claim.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                "Apply",
                None,
                json!({"f:metadata": {"f:labels": {"f:node.kubernetes.io/instance-type": {}}}}),
            ),
            entry(FIELD_MANAGER, "Apply", Some("status"), json!({"f:status": {}})),
            entry("kaito-controller", "Apply", None, json!({"f:metadata": {"f:labels": {"f:kaito.sh/workspace": {}}}})),
        ]);
        assert_eq!(
            labels_applied_by(&claim, FIELD_MANAGER).into_iter().collect::<Vec<_>>(),
            vec!["node.kubernetes.io/instance-type".to_string()]
        );
    }

    #[test]
    fn a_retried_launch_reapplies_every_instance_label_it_applied_before() {
        let mut claim = NodeClaim::new("ws1", Default::default());
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        // KAITO created the claim with its labels; the first launch applied the instance's.
        claim.metadata.labels = Some(labels(&[
            ("kaito.sh/workspace", "phi"),
            ("karpenter.sh/nodepool", "kaito"),
            ("node.kubernetes.io/instance-type", "Standard_NC24ads_A100_v4"),
            ("kubernetes.io/os", "linux"),
        ]));
        claim.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(json!({"f:metadata": {
                    "f:labels": {"f:node.kubernetes.io/instance-type": {}, "f:kubernetes.io/os": {}},
                }}))),
                ..Default::default()
            },
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some("kaito-controller".into()),
                operation: Some("Update".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(json!({"f:metadata": {
                    "f:labels": {"f:kaito.sh/workspace": {}, "f:karpenter.sh/nodepool": {}},
                }}))),
                ..Default::default()
            },
        ]);
        // The instance meanwhile got registered, so it has a label more than at the first launch.
        let instance = labels(&[
            ("kaito.sh/workspace", "phi"),
            ("karpenter.sh/nodepool", "kaito"),
            ("karpenter.sh/registered", "true"),
            ("kubernetes.io/hostname", "ws1"),
            ("kubernetes.io/os", "linux"),
            ("node.kubernetes.io/instance-type", "Standard_NC24ads_A100_v4"),
        ]);
        // Leaving out instance-type and os (present on the claim) would make SSA remove them.
        assert_eq!(
            instance_labels_to_apply(&claim, &instance),
            labels(&[
                ("karpenter.sh/registered", "true"),
                ("kubernetes.io/os", "linux"),
                ("node.kubernetes.io/instance-type", "Standard_NC24ads_A100_v4"),
            ])
        );
        // A first launch applies everything KAITO did not set.
        claim.metadata.labels = Some(labels(&[("kaito.sh/workspace", "phi"), ("karpenter.sh/nodepool", "kaito")]));
        claim.metadata.managed_fields = None;
        let first = instance_labels_to_apply(&claim, &instance);
        assert!(first.contains_key("node.kubernetes.io/instance-type"));
        assert!(!first.contains_key("kaito.sh/workspace") && !first.contains_key("kubernetes.io/hostname"));
    }

    #[test]
    fn node_class_filter() {
        let filter = NodeClassFilter::default();
        let class = |g: &str, k: &str| NodeClassReference { group: g.into(), kind: k.into(), name: "default".into() };
        assert!(filter.accepts(&class("kaito.sh", "KaitoNodeClass")));
        assert!(filter.accepts(&class("karpenter.kwok.sh", "KWOKNodeClass")));
        assert!(!filter.accepts(&class("karpenter.azure.com", "AKSNodeClass")));
        assert!(NodeClassFilter { accept_all: true, accepted: vec![] }.accepts(&class("x", "Y")));
        assert_eq!(
            NodeClassFilter::parse_entry("karpenter.k8s.aws/EC2NodeClass"),
            Some(("karpenter.k8s.aws".to_string(), "EC2NodeClass".to_string()))
        );
        assert_eq!(NodeClassFilter::parse_entry("EC2NodeClass"), None);
    }
}
