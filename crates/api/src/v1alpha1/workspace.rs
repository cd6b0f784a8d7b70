//! `Workspace` as served under `kaito.sh/v1alpha1`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::label_selector;
use crate::v1beta1::{AdapterSpec, ModelImageAccessMode, TuningSpec};

/// The desired state of a Workspace (v1alpha1). On the wire these fields are top-level (there is no `spec`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kaito.sh",
    version = "v1alpha1",
    kind = "Workspace",
    namespaced,
    no_spec,
    status = "WorkspaceStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "wk",
    shortname = "wks",
    category = "workspace",
    doc = "Workspace deploys one AI model on GPU nodes (v1alpha1; prefer kaito.sh/v1beta1).",
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
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSpec {
    /// GPU nodes for the workload.
    #[serde(default)]
    pub resource: ResourceSpec,
    /// Serve a model. Exactly one of `inference` and `tuning` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceSpec>,
    /// Fine-tune a model. Exactly one of `inference` and `tuning` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningSpec>,
}

/// The GPU nodes a Workspace runs on (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    /// Number of nodes to use (default 1). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1))]
    pub count: Option<i32>,
    /// GPU virtual machine size to provision (default Standard_NC24ads_A100_v4). Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Standard_NC24ads_A100_v4"))]
    pub instance_type: Option<String>,
    /// Selects the nodes of this Workspace. Required. Immutable.
    #[schemars(schema_with = "label_selector")]
    pub label_selector: LabelSelector,
    /// Names of existing nodes to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_nodes: Option<Vec<String>>,
}

/// What to serve and how (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSpec {
    /// A model from the preset catalog or a Hugging Face id. Mutually exclusive with `template`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<PresetSpec>,
    /// Name of a ConfigMap whose key `inference_config.yaml` tunes the runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Your own pod template instead of a preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub template: Option<serde_json::Value>,
    /// LoRA adapters to load next to the model (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub adapters: Option<Vec<AdapterSpec>>,
}

/// A model preset (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetSpec {
    /// Catalog name or Hugging Face repository id. Case-insensitive.
    pub name: String,
    /// `public` (default) or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<ModelImageAccessMode>,
    /// Options for pulling a private preset image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_options: Option<PresetOptions>,
}

/// Options for a private preset image (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetOptions {
    /// A private image holding the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull secrets for `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
}

/// What the operator observed about a Workspace (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// Sorted names of the nodes that belong to this Workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_nodes: Option<Vec<String>>,
    /// Latest observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
