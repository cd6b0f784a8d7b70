//! Label, annotation, finalizer and condition names that are part of KAITO's contract.
//!
//! Other tools (the gpu-provisioner, dashboards, users' scripts) match on these strings, so they are
//! kept exactly as upstream KAITO spells them.

/// API group of every KAITO kind.
pub const GROUP: &str = "kaito.sh";

/// Finalizer the controller puts on a Workspace before it creates anything billable.
pub const WORKSPACE_FINALIZER: &str = "workspace.finalizer.kaito.sh";
/// Finalizer the controller puts on a RAGEngine before it creates anything billable.
pub const RAGENGINE_FINALIZER: &str = "ragengine.finalizer.kaito.sh";

/// Label on NodeClaims, Nodes and pods naming the Workspace they belong to.
pub const LABEL_WORKSPACE: &str = "kaito.sh/workspace";
/// Label on NodeClaims and Nodes naming the Workspace's namespace.
pub const LABEL_WORKSPACE_NAMESPACE: &str = "kaito.sh/workspacenamespace";
/// Label on NodeClaims, Nodes and pods naming the RAGEngine they belong to.
pub const LABEL_RAGENGINE: &str = "kaito.sh/ragengine";
/// Label on NodeClaims and Nodes naming the RAGEngine's namespace.
pub const LABEL_RAGENGINE_NAMESPACE: &str = "kaito.sh/ragenginenamespace";
/// Label on Workspaces (and their pods) created by an InferenceSet.
pub const LABEL_INFERENCESET_CREATED_BY: &str = "inferenceset.kaito.sh/created-by";
/// Label the Karpenter NodePool path puts on what it manages.
pub const LABEL_KARPENTER_MANAGED_BY: &str = "karpenter.kaito.sh/managed-by";
/// Karpenter NodePool label naming the Workspace.
pub const LABEL_KARPENTER_WORKSPACE_NAME: &str = "karpenter.kaito.sh/workspace-name";
/// Karpenter NodePool label naming the Workspace's namespace.
pub const LABEL_KARPENTER_WORKSPACE_NAMESPACE: &str = "karpenter.kaito.sh/workspace-namespace";
/// Karpenter NodePool label naming the InferenceSet.
pub const LABEL_KARPENTER_INFERENCESET: &str = "karpenter.kaito.sh/inferenceset";
/// Karpenter NodePool label naming the InferenceSet's namespace.
pub const LABEL_KARPENTER_INFERENCESET_NAMESPACE: &str = "karpenter.kaito.sh/inferenceset-namespace";
/// Node label KAITO adds to provisioned GPU nodes.
pub const LABEL_ACCELERATOR: &str = "accelerator";

/// Label keys that KAITO itself manages: a labelSelector made only of these selects nothing a user owns.
pub const RESERVED_SELECTOR_KEYS: &[&str] = &[
    LABEL_WORKSPACE,
    LABEL_RAGENGINE,
    LABEL_WORKSPACE_NAMESPACE,
    LABEL_RAGENGINE_NAMESPACE,
    LABEL_KARPENTER_WORKSPACE_NAME,
    LABEL_KARPENTER_WORKSPACE_NAMESPACE,
    LABEL_KARPENTER_INFERENCESET,
    LABEL_KARPENTER_INFERENCESET_NAMESPACE,
];

/// Annotation holding the Workspace's current revision number (on the Workspace and its StatefulSet).
pub const ANNOTATION_WORKSPACE_REVISION: &str = "workspace.kaito.io/revision";
/// Annotation holding the hash of the Workspace fields a revision was made from.
pub const ANNOTATION_WORKSPACE_HASH: &str = "workspace.kaito.io/hash";
/// Label on ControllerRevisions naming the Workspace.
pub const LABEL_WORKSPACE_NAME: &str = "workspace.kaito.io/name";
/// `"True"` asks for a LoadBalancer Service instead of ClusterIP.
pub const ANNOTATION_ENABLE_LB: &str = "kaito.sh/enablelb";
/// Runtime selection: `vllm` (default) or `transformers`.
pub const ANNOTATION_RUNTIME: &str = "kaito.sh/runtime";
/// Presence (any value) skips the GPU memory fit check at admission.
pub const ANNOTATION_BYPASS_RESOURCE_CHECKS: &str = "kaito.sh/bypass-resource-checks";
/// OS image family of provisioned nodes: `ubuntu` or `azurelinux`.
pub const ANNOTATION_NODE_IMAGE_FAMILY: &str = "kaito.sh/node-image-family";
/// Karpenter NodeClass to use (Karpenter mode only).
pub const ANNOTATION_NODE_CLASS_NAME: &str = "kaito.sh/node-class-name";
/// `"true"` skips the post-load benchmark.
pub const ANNOTATION_DISABLE_BENCHMARK: &str = "kaito.sh/disable-benchmark";
/// vLLM performance mode: `balanced`, `interactivity` or `throughput`.
pub const ANNOTATION_PERFORMANCE_MODE: &str = "kaito.sh/performance-mode";
/// `"true"` loads weights from the node's `/opt/kaito/models/<preset>`.
pub const ANNOTATION_USE_LOCAL_WEIGHTS: &str = "kaito.sh/use-local-weights";
/// `disabled` turns model streaming off for one Workspace.
pub const ANNOTATION_MODEL_STREAMING: &str = "kaito.sh/model-streaming";

/// Condition types written by the controllers. Values are upstream's.
pub mod conditions {
    /// Enough NodeClaims are Ready.
    pub const NODE_CLAIM_READY: &str = "NodeClaimReady";
    /// Enough Nodes are Ready with the right instance type and GPU capacity.
    pub const NODES_READY: &str = "NodesReady";
    /// Nodes and NodeClaims are ready.
    pub const RESOURCE_READY: &str = "ResourceReady";
    /// Every replica of the inference StatefulSet is ready.
    pub const INFERENCE_READY: &str = "InferenceReady";
    /// The tuning Job is active, ready or has succeeded.
    pub const JOB_STARTED: &str = "JobStarted";
    /// Summary: inference serving, or the tuning Job completed.
    pub const WORKSPACE_SUCCEEDED: &str = "WorkspaceSucceeded";
    /// The Workspace is being deleted.
    pub const WORKSPACE_DELETING: &str = "WorkspaceDeleting";
    /// The post-load benchmark was recorded.
    pub const BENCHMARK_COMPLETED: &str = "BenchmarkCompleted";
    /// The RAG service Deployment is ready.
    pub const SERVICE_READY: &str = "ServiceReady";
    /// Summary condition of a RAGEngine.
    pub const RAGENGINE_SUCCEEDED: &str = "RAGEngineSucceeded";
    /// The RAGEngine is being deleted.
    pub const RAGENGINE_DELETING: &str = "RAGEngineDeleting";
    /// Every child Workspace of an InferenceSet is ready.
    pub const INFERENCESET_READY: &str = "InferenceSetReady";
    /// The InferenceSet is being deleted.
    pub const INFERENCESET_DELETING: &str = "InferenceSetDeleting";
}
