//! `Workspace` (`kaito.sh/v1beta1`, the storage version): one model served (or tuned) on GPU nodes.
//!
//! Upstream's Workspace has no `spec`: `resource`, `inference` and `tuning` sit at the top level of the
//! object next to `metadata` and `status`. kube-derive's `no_spec` flattens [`WorkspaceSpec`] onto the
//! root so the wire shape is identical, while Rust code still reads `workspace.spec.inference`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{label_selector, preserve_unknown_object};

/// The desired state of a Workspace. On the wire these fields are top-level (there is no `spec`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kaito.sh",
    version = "v1beta1",
    kind = "Workspace",
    namespaced,
    no_spec,
    status = "WorkspaceStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "wk",
    shortname = "wks",
    category = "workspace",
    doc = "Workspace deploys one AI model on GPU nodes: the operator sizes and provisions the nodes, runs the \
           inference server (OpenAI-compatible API on port 5000 behind a Service named after the Workspace), \
           or runs a fine-tuning Job when `tuning` is set.",
    printcolumn(name = "Instance", type_ = "string", json_path = ".resource.instanceType"),
    printcolumn(
        name = "ResourceReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ResourceReady\")].status"
    ),
    printcolumn(
        name = "InferenceReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"InferenceReady\")].status"
    ),
    printcolumn(
        name = "JobStarted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"JobStarted\")].status"
    ),
    printcolumn(
        name = "WorkspaceSucceeded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"WorkspaceSucceeded\")].status"
    ),
    printcolumn(name = "TargetNodeCount", type_ = "integer", json_path = ".status.targetNodeCount"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// GPU nodes for the workload: instance type, how to select nodes, and (bring-your-own only) GPU partitioning.
    #[serde(default)]
    pub resource: ResourceSpec,
    /// Serve a model. Exactly one of `inference` and `tuning` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceSpec>,
    /// Fine-tune a model with LoRA or QLoRA in a Job. Exactly one of `inference` and `tuning` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningSpec>,
}

/// The GPU nodes a Workspace runs on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    /// Number of nodes to use. Deprecated: for vLLM the operator computes the node count from the model and
    /// the instance type (see status.targetNodeCount); the transformers runtime uses it as given. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub count: Option<i32>,
    /// GPU virtual machine size to provision, e.g. Standard_NC24ads_A100_v4 (Azure) or p4d.24xlarge (AWS).
    /// Required when the operator provisions nodes; must be empty for bring-your-own nodes. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Selects the nodes of this Workspace; its matchLabels are stamped on the nodes the operator provisions.
    /// Required. Immutable.
    #[schemars(schema_with = "label_selector")]
    pub label_selector: LabelSelector,
    /// Names of existing nodes to use. Deprecated: ignored by the Workspace controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_nodes: Option<Vec<String>>,
    /// GPU partitioning of bring-your-own nodes (MIG slices or accelerator counts). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionSpec>,
}

/// How a bring-your-own GPU is shared.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionSpec {
    /// `mig` (NVIDIA Multi-Instance GPU, needs feature gate enableMIG) or `accelerator` (needs enableAccelerator).
    pub mode: PartitionMode,
    /// MIG profile such as `1g.10gb` (mig mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Number of accelerators per replica (accelerator mode only). At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<i32>,
}

/// GPU partitioning mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PartitionMode {
    /// NVIDIA Multi-Instance GPU slices.
    #[default]
    Mig,
    /// Whole accelerators counted per replica.
    Accelerator,
}

/// What to serve and how.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSpec {
    /// A model from the preset catalog (see `kaito models list`) or any Hugging Face repository id
    /// (`org/model`). Mutually exclusive with `template`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<PresetSpec>,
    /// Name of a ConfigMap in the Workspace's namespace whose key `inference_config.yaml` tunes the runtime
    /// (for vLLM, keys under `vllm:` become command-line flags, e.g. `max-model-len`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Your own pod template instead of a preset; the operator runs it on the provisioned nodes.
    /// Mutually exclusive with `preset`; may change but not be added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<PodTemplateSpec>,
    /// LoRA adapters to load next to the model (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub adapters: Option<Vec<AdapterSpec>>,
}

/// A model preset: a catalog name or a Hugging Face id.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetSpec {
    /// Catalog name (e.g. `phi-4-mini-instruct`) or Hugging Face repository id (e.g.
    /// `microsoft/Phi-4-mini-instruct`). Case-insensitive.
    pub name: String,
    /// Deprecated. `public` (default) or `private`; private presets used baked images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<ModelImageAccessMode>,
    /// Options for pulling the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_options: Option<PresetOptions>,
}

/// How a preset's image was reached (deprecated).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelImageAccessMode {
    /// Public image or public Hugging Face weights.
    #[default]
    Public,
    /// Private image (deprecated).
    Private,
}

/// Options for fetching a preset's weights.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetOptions {
    /// Deprecated: a private image holding the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Deprecated: pull secrets for `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
    /// Name of a Secret in the Workspace's namespace whose key `HF_TOKEN` is a Hugging Face token; needed for
    /// gated models such as Llama.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_access_secret: Option<String>,
}

/// A LoRA adapter loaded with the model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdapterSpec {
    /// Where the adapter comes from (an image or a volume); its name names the adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
    /// Weight of the adapter, a number between 0 and 1 written as a string (default "1.0"). Not supported by vLLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<String>,
}

/// Fine-tuning settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TuningSpec {
    /// The model to tune. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<PresetSpec>,
    /// `lora` or `qlora`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<TuningMethod>,
    /// Name of a ConfigMap whose key `training_config.yaml` holds the training configuration; default is the
    /// chart's `lora-params-template` or `qlora-params-template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The training data. Required.
    pub input: DataSource,
    /// Where the tuned adapter is written. Required.
    pub output: DataDestination,
}

/// Fine-tuning method.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TuningMethod {
    /// Low-rank adaptation.
    #[default]
    Lora,
    /// LoRA on a 4- or 8-bit quantized model.
    Qlora,
}

/// Data read by a workload: exactly one of `urls`, `volumeSource` or `image`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Name of the data (a DNS subdomain); also the name of the container that fetches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// http(s) URLs to download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// A Kubernetes volume source (e.g. persistentVolumeClaim) holding the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub volume_source: Option<serde_json::Value>,
    /// An image whose `/data` directory holds the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull secrets for `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
}

/// Where a workload writes its output: exactly one of `volumeSource` or `image`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataDestination {
    /// A Kubernetes volume source to write into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub volume_source: Option<serde_json::Value>,
    /// An image reference to push the output to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Secret of type `kubernetes.io/dockerconfigjson` used to push `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_push_secret: Option<String>,
}

/// What the operator observed about a Workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// Sorted names of the nodes that belong to this Workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_nodes: Option<Vec<String>>,
    /// Latest observations: NodeClaimReady, NodesReady, ResourceReady, InferenceReady, JobStarted,
    /// WorkspaceSucceeded, WorkspaceDeleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Summary state: Pending, Ready or NotReady (inference); Running, Succeeded or Failed (tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WorkspaceState>,
    /// Number of nodes the Workspace needs, computed once from the model and instance type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_node_count: Option<i32>,
    /// Results of the post-load benchmark and runtime metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceStatus>,
    /// The sizing plan: instance type, nodes, GPUs, parallelism and memory budget, computed before any node
    /// is bought. Not in upstream KAITO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<SizingPlan>,
    /// When each lifecycle phase finished, to see where time-to-ready goes. Not in upstream KAITO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseTiming>>,
}

/// Summary state of a Workspace.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkspaceState {
    /// Nodes or workload are not ready yet.
    Pending,
    /// Inference is serving.
    Ready,
    /// Inference was ready before and is not now.
    NotReady,
    /// The tuning Job is running.
    Running,
    /// The tuning Job completed.
    Succeeded,
    /// The tuning Job failed.
    Failed,
}

/// Post-load benchmark results.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceStatus {
    /// Metric name (e.g. peakTokensPerMinute) to its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, PerformanceMetric>,
}

/// One benchmark metric.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceMetric {
    /// What was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The measured value, as a string.
    #[serde(default)]
    pub value: String,
    /// Unit of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Settings the measurement was taken with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
}

/// The sizing plan recorded in status (see `kaito plan`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizingPlan {
    /// Instance type the plan is for.
    pub instance_type: String,
    /// Runtime the plan is for: vllm or transformers.
    pub runtime: String,
    /// Number of nodes.
    pub nodes: i32,
    /// GPUs on each node.
    pub gpus_per_node: i32,
    /// GPU memory of one GPU, in GiB.
    pub gpu_memory_per_gpu_gib: f64,
    /// vLLM tensor-parallel size.
    pub tensor_parallel: i32,
    /// vLLM pipeline-parallel size (one stage per node).
    pub pipeline_parallel: i32,
    /// vLLM data-parallel size.
    pub data_parallel: i32,
    /// Size of the model weights, in GiB.
    pub weights_gib: f64,
    /// GPU memory left for the KV cache across all GPUs, in GiB.
    pub kv_cache_gib: f64,
    /// Fraction of GPU memory vLLM may use.
    pub gpu_memory_utilization: f64,
    /// Why the plan looks the way it does, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The time a lifecycle phase completed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTiming {
    /// Phase name: NodesProvisioned, InferenceReady, WorkspaceSucceeded, ...
    pub name: String,
    /// Seconds from the Workspace's creation to the end of the phase.
    pub seconds_since_creation: i64,
}

impl Workspace {
    /// The condition of the given type, if the controller has written it.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is `True`.
    pub fn condition_is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
