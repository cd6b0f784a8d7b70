//! The Workspace reconciler.
//!
//! Each reconcile is a pipeline: read what exists (I/O) → resolve and validate the Workspace (pure,
//! [`resolve`]) → build the desired objects (pure, [`desired`]) → create or apply them (I/O, server-side
//! apply with one field manager) → compute status from what is observed (pure, [`status`]) → write status
//! only when it changed. The finalizer is in place before anything billable (a NodeClaim) is created.

pub mod cache;
pub mod desired;
pub mod resolve;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kaito_api::karpenter::NodeClaim;
use kaito_api::labels::conditions as cond;
use kaito_api::labels::{
    ANNOTATION_WORKSPACE_HASH, ANNOTATION_WORKSPACE_REVISION, LABEL_ACCELERATOR, LABEL_KARPENTER_WORKSPACE_NAME,
    LABEL_KARPENTER_WORKSPACE_NAMESPACE, LABEL_WORKSPACE, LABEL_WORKSPACE_NAME, LABEL_WORKSPACE_NAMESPACE,
    WORKSPACE_FINALIZER,
};
use kaito_api::latest::Latest;
use kaito_api::v1beta1::{Workspace, WorkspaceStatus};
use kaito_api::validation::{ValidationContext, configured_max_model_len, validate_workspace_create};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use self::cache::Caches;
use self::desired::{ANNOTATION_DESIRED_HASH, Names};
use self::resolve::{Resolved, Workload};
use crate::config::{Config, NodeProvisioner};
use crate::metrics::Metrics;

/// Errors of one reconcile. The controller logs them, counts them and retries with a delay; they never
/// stop other Workspaces from being reconciled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A desired object could not be built.
    #[error(transparent)]
    Build(#[from] desired::BuildError),
    /// The caches stopped before they were filled (shutdown).
    #[error(transparent)]
    NotSynced(#[from] cache::NotSynced),
}

trait Context<T> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, kube::Error> {
    fn during(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube { action: action(), source })
    }
}

/// Shared state of the controller.
pub struct Ctx {
    /// Client for the apiserver.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// Kubernetes Events publisher.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Nodes, NodeClaims, pods, StatefulSets and Services as the watches last saw them.
    pub caches: Caches,
    /// Workspaces as our last write to each returned them (see [`Latest`]).
    pub written_workspaces: Latest<Workspace>,
    /// StatefulSets as our last apply of each returned them.
    pub written_statefulsets: Latest<StatefulSet>,
}

/// The Workspace a labelled object belongs to, from its `name_label`/`namespace_label` labels.
fn labelled_workspace(
    labels: &BTreeMap<String, String>,
    name_label: &str,
    namespace_label: &str,
    default_ns: Option<String>,
) -> Option<ObjectRef<Workspace>> {
    let name = labels.get(name_label)?;
    let ns = labels.get(namespace_label).cloned().or(default_ns)?;
    Some(ObjectRef::<Workspace>::new(name).within(&ns))
}

/// Runs the Workspace controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let owned_by_workspace = watcher::Config::default().labels(LABEL_WORKSPACE);
    let (workspaces, statefulsets, pods, services): (Api<Workspace>, Api<StatefulSet>, Api<Pod>, Api<Service>) =
        match &config.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => {
                (Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone()), Api::all(client.clone()))
            }
        };
    let mode = config.node_provisioner;
    // Only nodes some Workspace can use are watched: provisioned ones carry ownership labels; bring-your-own
    // nodes can carry any label, so that mode watches them all.
    let node_config = match mode {
        NodeProvisioner::AzureGpuProvisioner => watcher::Config::default().labels(LABEL_WORKSPACE),
        NodeProvisioner::Karpenter => watcher::Config::default().labels(LABEL_KARPENTER_WORKSPACE_NAME),
        NodeProvisioner::Byo => watcher::Config::default(),
    };

    let (ws_store, ws_writer) = reflector::store::<Workspace>();
    let (node_store, node_writer) = reflector::store::<Node>();
    let (claim_store, claim_writer) = reflector::store::<NodeClaim>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (sts_store, sts_writer) = reflector::store::<StatefulSet>();
    let (svc_store, svc_writer) = reflector::store::<Service>();

    // Each watch fills its cache and triggers reconciles. Workspaces and Nodes trigger only when something a
    // reconcile reads changed: a Workspace's own status writes, and kwok's (or a kubelet's) node heartbeats
    // every few seconds, would otherwise each cost a reconcile.
    let ws_events = cache::changed_objects(
        watcher(workspaces, watcher::Config::default())
            .default_backoff()
            .modify(cache::slim_workspace)
            .reflect(ws_writer),
        cache::workspace_fingerprint,
    );
    let node_events = cache::changed_objects(
        watcher(Api::<Node>::all(client.clone()), node_config)
            .default_backoff()
            .modify(cache::slim_node)
            .reflect(node_writer),
        cache::node_fingerprint,
    );
    let claim_events = cache::changed_objects(
        watcher(Api::<NodeClaim>::all(client.clone()), owned_by_workspace.clone())
            .default_backoff()
            .modify(cache::slim_node_claim)
            .reflect(claim_writer),
        cache::node_claim_fingerprint,
    );
    let pod_events =
        watcher(pods, owned_by_workspace.clone()).default_backoff().modify(cache::slim_pod).reflect(pod_writer);
    let sts_events = watcher(statefulsets, owned_by_workspace.clone())
        .default_backoff()
        .modify(cache::slim_statefulset)
        .reflect(sts_writer);
    let svc_events =
        watcher(services, owned_by_workspace.clone()).default_backoff().modify(cache::slim_service).reflect(svc_writer);

    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(cache::signal_synced(
        node_store.clone(),
        claim_store.clone(),
        pod_store.clone(),
        sts_store.clone(),
        svc_store.clone(),
        synced_tx,
    ));
    let caches = Caches::new(node_store, claim_store, pod_store, sts_store, svc_store, synced_rx);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        config,
        recorder,
        metrics,
        caches,
        written_workspaces: Latest::default(),
        written_statefulsets: Latest::default(),
    });

    let workspace_index = ws_store.clone();
    let node_to_workspaces = move |node: Node| -> Vec<ObjectRef<Workspace>> {
        match mode {
            NodeProvisioner::AzureGpuProvisioner => {
                labelled_workspace(node.labels(), LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE, None)
                    .into_iter()
                    .collect()
            }
            NodeProvisioner::Karpenter => labelled_workspace(
                node.labels(),
                LABEL_KARPENTER_WORKSPACE_NAME,
                LABEL_KARPENTER_WORKSPACE_NAMESPACE,
                None,
            )
            .into_iter()
            .collect(),
            // A bring-your-own node concerns every Workspace whose labelSelector it matches.
            NodeProvisioner::Byo => workspace_index
                .state()
                .iter()
                .filter(|ws| {
                    let wanted = resolve::sanitized_match_labels(ws);
                    !wanted.is_empty() && wanted.iter().all(|(k, v)| node.labels().get(k) == Some(v))
                })
                .map(|ws| ObjectRef::from_obj(&**ws))
                .collect(),
        }
    };

    // Debounce: a burst of watch events about one Workspace (its pod, node, claim and StatefulSet change
    // together) becomes one reconcile instead of one each.
    let controller_config = kube::runtime::controller::Config::default().debounce(Duration::from_millis(500));
    Controller::for_stream(ws_events, ws_store)
        .with_config(controller_config)
        .owns_stream(sts_events.touched_objects())
        .owns_stream(svc_events.touched_objects())
        .watches_stream(claim_events, move |claim: NodeClaim| {
            labelled_workspace(claim.labels(), LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE, None)
        })
        .watches_stream(node_events, node_to_workspaces)
        .watches_stream(pod_events.touched_objects(), move |pod: Pod| {
            labelled_workspace(pod.labels(), LABEL_WORKSPACE, LABEL_WORKSPACE_NAMESPACE, pod.namespace())
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    sync.abort();
}

fn error_policy(ws: Arc<Workspace>, error: &Error, ctx: Arc<Ctx>) -> Action {
    warn!(workspace = %ws.name_any(), namespace = ?ws.namespace(), %error, "reconcile failed");
    ctx.metrics.reconcile_error();
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&ws, &ctx).await;
    ctx.metrics.reconciled(started.elapsed(), result.is_ok());
    result
}

/// A JSON patch from its JSON form; a malformed one is a bug here, reported instead of sent empty.
fn json_patch<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|source| desired::BuildError::Shape { kind: "JSON patch", source }.into())
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// What is observed about a Workspace, with the defaults of an unresolved one; callers fill in the rest.
fn observed<'a>(
    ws: &'a Workspace,
    claims: &'a [NodeClaim],
    nodes: &'a [Node],
    statefulset: Option<&'a StatefulSet>,
    pods: &'a [Pod],
) -> status::Observed<'a> {
    status::Observed {
        generation: ws.metadata.generation.unwrap_or_default(),
        created: ws.metadata.creation_timestamp.as_ref(),
        previous: ws.status.as_ref(),
        deleting: false,
        invalid: None,
        uses_node_claims: false,
        target_nodes: 0,
        instance_type: None,
        gpus_per_node: 0,
        claims,
        nodes,
        statefulset,
        pods,
        plan: None,
        now: now(),
    }
}

fn workspace_selector(names: &Names) -> String {
    format!("{LABEL_WORKSPACE}={},{LABEL_WORKSPACE_NAMESPACE}={}", names.name, names.namespace)
}

/// Label selector of the NodeClaims and Nodes provisioned for a Workspace (None: bring-your-own).
fn owner_selector(names: &Names, mode: NodeProvisioner) -> Option<String> {
    match mode {
        NodeProvisioner::AzureGpuProvisioner => Some(workspace_selector(names)),
        NodeProvisioner::Karpenter => Some(
            desired::node_pool_ownership(names).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        ),
        NodeProvisioner::Byo => None,
    }
}

fn node_pool_api(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, "nodepools"))
}

/// Applies the Workspace's NodePool when it is missing or differs (Karpenter mode).
async fn ensure_node_pool(ws: &Workspace, resolved: &Resolved, ctx: &Ctx) -> Result<(), Error> {
    let mut desired = desired::node_pool(ws, resolved, &ctx.config)?;
    let hash = desired::hash_of(&desired);
    desired["metadata"]["annotations"] = json!({ANNOTATION_DESIRED_HASH: hash});
    let name = desired["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let pools = node_pool_api(&ctx.client);
    let existing = pools.get_opt(&name).await.during(|| format!("reading NodePool {name}"))?;
    if existing.is_some_and(|p| p.annotations().get(ANNOTATION_DESIRED_HASH) == Some(&hash)) {
        return Ok(());
    }
    pools
        .patch(&name, &PatchParams::apply(&ctx.config.field_manager).force(), &Patch::Apply(&desired))
        .await
        .during(|| format!("applying NodePool {name}"))?;
    publish(ctx, ws, EventType::Normal, "NodePoolApplied", "Provision", format!("applied NodePool {name}")).await;
    Ok(())
}

async fn reconcile_inner(ws: &Workspace, ctx: &Ctx) -> Result<Action, Error> {
    // Nothing is decided from a cache that does not yet hold everything (see Caches::wait_synced).
    ctx.caches.wait_synced().await?;
    let written = ctx.written_workspaces.fresher(ws.namespace().as_deref(), &ws.name_any(), Some(ws));
    let ws: &Workspace = written.as_deref().unwrap_or(ws);
    let names = Names::of(ws)?;
    let workspaces: Api<Workspace> = Api::namespaced(ctx.client.clone(), &names.namespace);
    if ws.metadata.deletion_timestamp.is_some() {
        return finalize(ws, &names, ctx, &workspaces).await;
    }

    // --- read -------------------------------------------------------------------------------------------
    // Only this mode makes NodeClaims itself (and reads them for status). The cache is good enough for status;
    // create_missing_claims lists them directly before it creates one.
    let claims: Vec<NodeClaim> = match ctx.config.node_provisioner {
        NodeProvisioner::AzureGpuProvisioner => {
            ctx.caches.claims_matching(&node_selector(ws, &names, NodeProvisioner::AzureGpuProvisioner))
        }
        NodeProvisioner::Karpenter | NodeProvisioner::Byo => Vec::new(),
    };
    let nodes = workspace_nodes(ws, &names, ctx);
    // The inference ConfigMap's max-model-len sizes the plan (rule 13 checks it too). A direct read: one small
    // object, read only for Workspaces that name one.
    let config_name = ws.spec.inference.as_ref().and_then(|i| i.config.clone()).filter(|n| !n.is_empty());
    let inference_config = match config_name {
        Some(name) => Api::<ConfigMap>::namespaced(ctx.client.clone(), &names.namespace)
            .get_opt(&name)
            .await
            .during(|| format!("reading ConfigMap {name}"))?
            .map(|cm| (name, cm.data.unwrap_or_default())),
        None => None,
    };

    // --- validate and resolve (pure) ------------------------------------------------------------------------
    // The admission rules run here too: a Workspace admitted without the webhook (or before a rule existed)
    // still gets the same message, in status instead of from kubectl.
    let mut rules = ValidationContext::offline(ctx.config.node_provisioner, ctx.config.cloud);
    if let Some((name, data)) = &inference_config {
        rules.config_maps = Some(BTreeMap::from([(name.clone(), data.clone())]));
    }
    let max_model_len = inference_config.as_ref().and_then(|(_, data)| configured_max_model_len(data));
    let outcome = validate_workspace_create(ws, &rules);
    if let Some(first) = outcome.violations.first() {
        let message = outcome.violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        return report_invalid_message(ws, &names, ctx, &workspaces, "InvalidWorkspace", message, &first.field).await;
    }

    let byo_labels = nodes.iter().find(|n| status::node_is_ready(n)).map(|n| n.labels().clone());
    let resolved = match resolve::resolve(ws, &ctx.config, byo_labels.as_ref(), max_model_len) {
        Ok(resolved) => Some(resolved),
        // Bring-your-own with no ready node yet: the GPU shape is unknown until one appears, and a node
        // event will requeue us. Status says how many nodes are missing.
        Err(_) if ctx.config.node_provisioner == NodeProvisioner::Byo && byo_labels.is_none() => None,
        Err(err) => return report_invalid(ws, &names, ctx, &workspaces, &err).await,
    };
    // targetNodeCount is computed once and then kept, as upstream does.
    let stored_target = ws.status.as_ref().and_then(|s| s.target_node_count).filter(|n| *n > 0).map(|n| n as u32);
    let Some(resolved) = resolved.map(|r| Resolved { target_nodes: stored_target.unwrap_or(r.target_nodes), ..r })
    else {
        let computed = status::compute(&status::Observed {
            target_nodes: stored_target.unwrap_or(1),
            ..observed(ws, &claims, &nodes, None, &[])
        });
        write_status(ws, &names, ctx, &workspaces, computed).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    };

    // The finalizer goes on here, before anything billable (a NodeClaim) is created, in the same write as the
    // revision annotations.
    let revision = ensure_finalizer_and_revision(ws, &names, ctx, &workspaces).await?;

    // --- provision ---------------------------------------------------------------------------------------
    match ctx.config.node_provisioner {
        NodeProvisioner::AzureGpuProvisioner => {
            create_missing_claims(ws, &names, &resolved, &claims, &nodes, ctx).await?
        }
        NodeProvisioner::Karpenter => ensure_node_pool(ws, &resolved, ctx).await?,
        NodeProvisioner::Byo => {}
    }
    for node in nodes.iter().filter(|n| status::node_is_ready(n) && !n.labels().contains_key(LABEL_ACCELERATOR)) {
        if ctx.config.node_provisioner == NodeProvisioner::AzureGpuProvisioner {
            label_accelerator(node, ctx).await?;
        }
    }

    // --- workload ------------------------------------------------------------------------------------------
    let usable = nodes
        .iter()
        .filter(|n| status::node_is_usable(n, resolved.instance_type.as_deref(), resolved.gpus_per_node))
        .count();
    let mut sts = ctx.caches.statefulset(&names.namespace, &names.name);
    if let Some(written) = ctx.written_statefulsets.fresher(Some(&names.namespace), &names.name, sts.as_ref()) {
        sts = Some(StatefulSet::clone(&written));
    }
    if usable >= resolved.target_nodes as usize {
        ensure_services(ws, &names, &resolved, ctx).await?;
        sts = Some(ensure_statefulset(ws, &names, &resolved, ctx, revision, sts).await?);
    }
    let pods = ctx.caches.pods_of(&names.namespace, &names.name);

    // --- status (pure) then write ----------------------------------------------------------------------------
    let plan = match &resolved.workload {
        Workload::Preset { plan: Some(plan), .. } => Some(resolve::status_plan(plan)),
        _ => None,
    };
    let computed = status::compute(&status::Observed {
        uses_node_claims: ctx.config.node_provisioner == NodeProvisioner::AzureGpuProvisioner,
        target_nodes: resolved.target_nodes,
        instance_type: resolved.instance_type.as_deref(),
        gpus_per_node: resolved.gpus_per_node,
        plan,
        ..observed(ws, &claims, &nodes, sts.as_ref(), &pods)
    });
    let succeeded = computed.state == Some(kaito_api::v1beta1::WorkspaceState::Ready);
    write_status(ws, &names, ctx, &workspaces, computed).await?;
    // Watches bring every change of claims, nodes, pods and the StatefulSet; the requeue is a safety net.
    Ok(Action::requeue(if succeeded { Duration::from_secs(600) } else { Duration::from_secs(60) }))
}

/// The labels that make a node one of the Workspace's: ownership labels when KAITO provisions the nodes, the
/// sanitized matchLabels of `resource.labelSelector` for bring-your-own nodes.
fn node_selector(ws: &Workspace, names: &Names, mode: NodeProvisioner) -> BTreeMap<String, String> {
    match mode {
        NodeProvisioner::AzureGpuProvisioner => BTreeMap::from([
            (LABEL_WORKSPACE.to_string(), names.name.clone()),
            (LABEL_WORKSPACE_NAMESPACE.to_string(), names.namespace.clone()),
        ]),
        NodeProvisioner::Karpenter => desired::node_pool_ownership(names),
        NodeProvisioner::Byo => resolve::sanitized_match_labels(ws),
    }
}

fn workspace_nodes(ws: &Workspace, names: &Names, ctx: &Ctx) -> Vec<Node> {
    ctx.caches.nodes_matching(&node_selector(ws, names, ctx.config.node_provisioner))
}

async fn report_invalid(
    ws: &Workspace,
    names: &Names,
    ctx: &Ctx,
    workspaces: &Api<Workspace>,
    err: &resolve::ResolveError,
) -> Result<Action, Error> {
    report_invalid_message(ws, names, ctx, workspaces, err.reason(), err.to_string(), "").await
}

async fn report_invalid_message(
    ws: &Workspace,
    names: &Names,
    ctx: &Ctx,
    workspaces: &Api<Workspace>,
    reason: &str,
    message: String,
    field: &str,
) -> Result<Action, Error> {
    let computed = status::compute(&status::Observed {
        invalid: Some((reason, message.clone())),
        ..observed(ws, &[], &[], None, &[])
    });
    if write_status(ws, names, ctx, workspaces, computed).await? {
        warn!(workspace = %names.name, namespace = %names.namespace, field, %message, "invalid Workspace");
        publish(ctx, ws, EventType::Warning, reason, "Validate", message).await;
    }
    // Only a change to the Workspace can fix it; the watch delivers that.
    Ok(Action::await_change())
}

/// Writes status when it differs from what is stored; returns whether it wrote.
async fn write_status(
    ws: &Workspace,
    names: &Names,
    ctx: &Ctx,
    workspaces: &Api<Workspace>,
    computed: WorkspaceStatus,
) -> Result<bool, Error> {
    if !status::worth_writing(ws.status.as_ref(), &computed) {
        return Ok(false);
    }
    ctx.metrics.workspace_state(&names.namespace, &names.name, computed.state);
    let patch = json!({"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "status": computed});
    let written = workspaces
        .patch_status(&names.name, &PatchParams::apply(&ctx.config.field_manager).force(), &Patch::Apply(&patch))
        .await
        .during(|| format!("writing the status of {}/{}", names.namespace, names.name))?;
    remember_workspace(ctx, written);
    // After the write: a failed write is retried, and announcing before it would repeat the Events.
    announce_transitions(ws, &computed, ctx).await;
    Ok(true)
}

/// Keeps what a write to the Workspace returned, so the next reconcile does not start from an older copy.
fn remember_workspace(ctx: &Ctx, mut written: Workspace) {
    cache::slim_workspace(&mut written);
    ctx.written_workspaces.record(written);
}

/// One Event per condition that changed status.
async fn announce_transitions(ws: &Workspace, computed: &WorkspaceStatus, ctx: &Ctx) {
    let before: BTreeMap<String, String> = ws
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().map(|c| (c.type_.clone(), c.status.clone())).collect())
        .unwrap_or_default();
    for c in computed.conditions.iter().flatten() {
        if before.get(&c.type_) == Some(&c.status) {
            continue;
        }
        let type_ = if c.status == "True" { EventType::Normal } else { EventType::Warning };
        // "still waiting" is not worth a warning
        if c.status != "True" && status::is_waiting(&c.reason) {
            continue;
        }
        // Each Event is a write to the apiserver. NodeClaimReady and NodesReady turn True together with
        // ResourceReady, and InferenceReady with WorkspaceSucceeded: their True transitions would repeat what
        // the other Event says. Problems (False) are always published.
        if c.status == "True" && !matches!(c.type_.as_str(), cond::RESOURCE_READY | cond::WORKSPACE_SUCCEEDED) {
            continue;
        }
        publish(ctx, ws, type_, &c.reason, &c.type_, c.message.clone()).await;
    }
}

async fn publish(ctx: &Ctx, ws: &Workspace, type_: EventType, reason: &str, action: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &ws.object_ref(&())).await {
        warn!(error = %e, "publishing an event failed");
    }
}

/// Adds the finalizer, and keeps a ControllerRevision per distinct Workspace spec and the revision number on the
/// Workspace; both in one write.
async fn ensure_finalizer_and_revision(
    ws: &Workspace,
    names: &Names,
    ctx: &Ctx,
    workspaces: &Api<Workspace>,
) -> Result<Option<i64>, Error> {
    let hash = desired::hash_of(&ws.spec);
    let annotations = ws.annotations();
    let current = annotations.get(ANNOTATION_WORKSPACE_REVISION).and_then(|r| r.parse::<i64>().ok());
    let has_finalizer = ws.finalizers().iter().any(|f| f == WORKSPACE_FINALIZER);
    if annotations.get(ANNOTATION_WORKSPACE_HASH) == Some(&hash) && current.is_some() {
        if !has_finalizer {
            patch_workspace_metadata(ws, names, ctx, workspaces, None).await?;
        }
        return Ok(current);
    }
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let history = revisions
        .list(&ListParams::default().labels(&format!("{LABEL_WORKSPACE_NAME}={}", names.name)))
        .await
        .during(|| "listing ControllerRevisions".into())?
        .items;
    let revision = match history.iter().find(|r| r.annotations().get(ANNOTATION_WORKSPACE_HASH) == Some(&hash)) {
        Some(existing) => existing.revision,
        None => {
            let next = history.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
            let revision: ControllerRevision = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("{}-{}", names.name, &hash[..5]),
                    "namespace": names.namespace,
                    "labels": {LABEL_WORKSPACE_NAME: names.name},
                    "annotations": {ANNOTATION_WORKSPACE_HASH: hash},
                    "ownerReferences": [ws.controller_owner_ref(&())],
                },
                "revision": next,
                "data": serde_json::to_value(&ws.spec).unwrap_or_default(),
            }))
            .map_err(|source| desired::BuildError::Shape { kind: "ControllerRevision", source })?;
            match revisions.create(&PostParams::default(), &revision).await {
                Ok(_) => {}
                // Same hash from an earlier attempt whose Workspace annotation write failed.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(source) => return Err(Error::Kube { action: "creating a ControllerRevision".into(), source }),
            }
            // Keep the last 10 revisions.
            let mut old: Vec<&ControllerRevision> = history.iter().collect();
            old.sort_by_key(|r| r.revision);
            for stale in old.iter().take(old.len().saturating_sub(9)) {
                let _ = revisions.delete(&stale.name_any(), &DeleteParams::default()).await;
            }
            next
        }
    };
    let annotations = json!({ANNOTATION_WORKSPACE_HASH: hash, ANNOTATION_WORKSPACE_REVISION: revision.to_string()});
    patch_workspace_metadata(ws, names, ctx, workspaces, Some(annotations)).await?;
    Ok(Some(revision))
}

/// One merge patch: `annotations` when given, and the finalizer when it is missing. Adding the finalizer replaces
/// the whole list, so that patch carries the resourceVersion: a concurrent change makes it fail (and retry)
/// instead of being overwritten.
async fn patch_workspace_metadata(
    ws: &Workspace,
    names: &Names,
    ctx: &Ctx,
    workspaces: &Api<Workspace>,
    annotations: Option<serde_json::Value>,
) -> Result<(), Error> {
    let mut metadata = serde_json::Map::new();
    if let Some(annotations) = annotations {
        metadata.insert("annotations".into(), annotations);
    }
    if !ws.finalizers().iter().any(|f| f == WORKSPACE_FINALIZER) {
        let finalizers: Vec<String> = ws.finalizers().iter().cloned().chain([WORKSPACE_FINALIZER.into()]).collect();
        metadata.insert("finalizers".into(), json!(finalizers));
        metadata.insert("resourceVersion".into(), json!(ws.resource_version()));
    }
    let patched = workspaces
        .patch(&names.name, &PatchParams::default(), &Patch::Merge(&json!({ "metadata": metadata })))
        .await
        .during(|| format!("adding the finalizer and revision to {}/{}", names.namespace, names.name))?;
    remember_workspace(ctx, patched);
    Ok(())
}

/// Creates the NodeClaims the Workspace lacks. `cached` comes from the watch cache, which may not yet show the
/// claims created by the previous pass (or a previous life of this process): it can only say that nothing is
/// missing. Before creating, a direct list, which reads every write, decides; so no slot gets a second claim.
async fn create_missing_claims(
    ws: &Workspace,
    names: &Names,
    resolved: &Resolved,
    cached: &[NodeClaim],
    nodes: &[Node],
    ctx: &Ctx,
) -> Result<(), Error> {
    // Ready Workspace nodes that no NodeClaim made (no nodepool label) count as bring-your-own capacity.
    let byo_ready = nodes
        .iter()
        .filter(|n| status::node_is_ready(n) && !n.labels().contains_key(kaito_api::karpenter::labels::NODEPOOL))
        .count();
    let needed = (resolved.target_nodes as usize).saturating_sub(byo_ready);
    let live = |claims: &[NodeClaim]| claims.iter().filter(|c| c.metadata.deletion_timestamp.is_none()).count();
    if live(cached) >= needed {
        return Ok(());
    }
    let claims_api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let listed = claims_api
        .list(&ListParams::default().labels(&workspace_selector(names)))
        .await
        .during(|| "listing NodeClaims".into())?
        .items;
    for i in 0..needed.saturating_sub(live(&listed)) {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default() + i as u128;
        let name = desired::node_claim_name(names, seed);
        let claim = desired::node_claim(ws, resolved, &ctx.config, &name)?;
        match claims_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                info!(workspace = %names.name, namespace = %names.namespace, nodeclaim = %name, "created NodeClaim");
                ctx.metrics.node_claim_created();
                publish(
                    ctx,
                    ws,
                    EventType::Normal,
                    "NodeClaimCreated",
                    "Provision",
                    format!("created NodeClaim {name} for {}", resolved.instance_type.as_deref().unwrap_or("-")),
                )
                .await;
            }
            Err(source) => {
                publish(ctx, ws, EventType::Warning, "NodeClaimCreationFailed", "Provision", source.to_string()).await;
                return Err(Error::Kube { action: format!("creating NodeClaim {name}"), source });
            }
        }
    }
    Ok(())
}

async fn label_accelerator(node: &Node, ctx: &Ctx) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"labels": {LABEL_ACCELERATOR: "nvidia"}}});
    nodes
        .patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .during(|| format!("labelling node {}", node.name_any()))?;
    Ok(())
}

/// Services are created once and never updated, as upstream.
async fn ensure_services(ws: &Workspace, names: &Names, resolved: &Resolved, ctx: &Ctx) -> Result<(), Error> {
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for service in desired::services(ws, resolved)? {
        let name = service.name_any();
        // From the cache: a Service created a moment ago and not yet seen only costs a 409 below.
        if !ctx.caches.has_service(&names.namespace, &name) {
            match services.create(&PostParams::default(), &service).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(source) => return Err(Error::Kube { action: format!("creating Service {name}"), source }),
            }
        }
    }
    Ok(())
}

/// Applies the StatefulSet when it is missing or its desired hash changed. Template workloads are create-only.
async fn ensure_statefulset(
    ws: &Workspace,
    names: &Names,
    resolved: &Resolved,
    ctx: &Ctx,
    revision: Option<i64>,
    existing: Option<StatefulSet>,
) -> Result<StatefulSet, Error> {
    let desired = desired::statefulset(ws, resolved, &ctx.config, revision)?;
    if let Some(existing) = existing {
        let unchanged =
            existing.annotations().get(ANNOTATION_DESIRED_HASH) == desired.annotations().get(ANNOTATION_DESIRED_HASH);
        if unchanged || matches!(resolved.workload, Workload::Template) {
            return Ok(existing);
        }
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let applied = statefulsets
        .patch(&names.name, &PatchParams::apply(&ctx.config.field_manager).force(), &Patch::Apply(&desired))
        .await
        .during(|| format!("applying StatefulSet {}/{}", names.namespace, names.name))?;
    let mut remembered = applied.clone();
    cache::slim_statefulset(&mut remembered);
    ctx.written_statefulsets.record(remembered);
    publish(ctx, ws, EventType::Normal, "WorkloadApplied", "Deploy", format!("applied StatefulSet {}", names.name))
        .await;
    Ok(applied)
}

/// Deletion: NodeClaims are deleted and awaited (they cost money), then the finalizer goes; the
/// StatefulSet, Services and revisions follow by garbage collection through their owner references.
async fn finalize(ws: &Workspace, names: &Names, ctx: &Ctx, workspaces: &Api<Workspace>) -> Result<Action, Error> {
    if !ws.finalizers().iter().any(|f| f == WORKSPACE_FINALIZER) {
        return Ok(Action::await_change());
    }
    let computed = status::compute(&status::Observed { deleting: true, ..observed(ws, &[], &[], None, &[]) });
    write_status(ws, names, ctx, workspaces, computed).await?;

    if ctx.config.node_provisioner == NodeProvisioner::Karpenter {
        // Deleting the NodePool makes Karpenter remove its NodeClaims and Nodes; wait until they are gone.
        let pools = node_pool_api(&ctx.client);
        let pool = desired::node_pool_name(names);
        match pools.delete(&pool, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(Error::Kube { action: format!("deleting NodePool {pool}"), source }),
        }
        if !workspace_nodes(ws, names, ctx).is_empty() {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
    let claims_api: Api<NodeClaim> = Api::all(ctx.client.clone());
    let claims = match owner_selector(names, ctx.config.node_provisioner) {
        Some(selector) => {
            claims_api
                .list(&ListParams::default().labels(&selector))
                .await
                .during(|| "listing NodeClaims to delete".into())?
                .items
        }
        None => Vec::new(),
    };
    if !claims.is_empty() {
        for claim in claims.iter().filter(|c| c.metadata.deletion_timestamp.is_none()) {
            match claims_api.delete(&claim.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Kube { action: format!("deleting NodeClaim {}", claim.name_any()), source });
                }
            }
        }
        // The NodeClaim watch wakes us when they are gone; the requeue is a safety net.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let remaining: Vec<String> = ws.finalizers().iter().filter(|f| *f != WORKSPACE_FINALIZER).cloned().collect();
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": ws.resource_version()},
        {"op": "replace", "path": "/metadata/finalizers", "value": remaining},
    ]);
    workspaces
        .patch(&names.name, &PatchParams::default(), &Patch::<()>::Json(json_patch(patch)?))
        .await
        .during(|| "removing the finalizer".into())?;
    ctx.written_workspaces.forget(Some(&names.namespace), &names.name);
    ctx.written_statefulsets.forget(Some(&names.namespace), &names.name);
    ctx.metrics.workspace_state(&names.namespace, &names.name, None);
    info!(workspace = %names.name, namespace = %names.namespace, "finalized");
    Ok(Action::await_change())
}
