//! `InferenceSet` (`kaito.sh/v1beta1`): a scalable set of identical Workspaces.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workspace::{InferenceSpec, PartitionSpec, PerformanceStatus};
use crate::schema::{label_selector, preserve_unknown_object};

/// The desired state of an InferenceSet.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kaito.sh",
    version = "v1beta1",
    kind = "InferenceSet",
    namespaced,
    status = "InferenceSetStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "is",
    shortname = "isets",
    category = "inferenceset",
    doc = "InferenceSet runs `replicas` identical inference Workspaces made from one template; it supports \
           `kubectl scale` and horizontal autoscaling.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "ReadyReplicas", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSetSpec {
    /// The Workspace each replica is made from.
    pub template: InferenceSetTemplate,
    /// Number of Workspaces (default 1, at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 1))]
    pub replicas: Option<i32>,
    /// Upper bound on the GPU nodes all replicas may use together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_count_limit: Option<i32>,
    /// Selects the nodes of every replica; becomes each Workspace's resource.labelSelector. Required.
    #[schemars(schema_with = "label_selector")]
    pub label_selector: LabelSelector,
    /// How replicas are replaced when the template changes (default RollingUpdate, maxUnavailable 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub update_strategy: Option<serde_json::Value>,
    /// Automatic upgrades of the inference image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade: Option<AutoUpgradeSpec>,
}

/// Template of the child Workspaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSetTemplate {
    /// Labels and annotations copied to each child Workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub metadata: Option<serde_json::Value>,
    /// GPU nodes of each child Workspace.
    pub resource: InferenceSetResourceSpec,
    /// What each child Workspace serves.
    pub inference: InferenceSpec,
}

/// GPU nodes of each child Workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSetResourceSpec {
    /// GPU virtual machine size. Required when the operator provisions nodes; empty for bring-your-own nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// GPU partitioning of bring-your-own nodes. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionSpec>,
}

/// Automatic upgrades.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoUpgradeSpec {
    /// Turns automatic upgrades on (default false).
    #[serde(default)]
    pub enabled: bool,
    /// `InPlace` (default) or `Surge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<UpgradeStrategy>,
    /// When upgrades may happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<MaintenanceWindow>,
}

/// How an upgrade replaces Workspaces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpgradeStrategy {
    /// Replace each Workspace's pods in place.
    #[default]
    InPlace,
    /// Create a new Workspace before removing the old one.
    Surge,
}

/// A recurring maintenance window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// Start times as a 5-field cron expression in UTC.
    pub schedule: String,
    /// Length of the window, e.g. 4h (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "4h"))]
    pub duration: Option<String>,
}

/// What the operator observed about an InferenceSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceSetStatus {
    /// Number of child Workspaces.
    #[serde(default)]
    pub replicas: i32,
    /// Number of child Workspaces that are serving.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the child Workspaces' pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Latest observations: InferenceSetReady, InferenceSetDeleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Benchmark results of the child Workspaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceStatus>,
    /// Progress of automatic upgrades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade: Option<AutoUpgradeStatus>,
}

/// Progress of automatic upgrades.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoUpgradeStatus {
    /// Child Workspaces running an older image than the template.
    #[serde(default)]
    pub num_drifted_workspaces: i32,
    /// When the last upgrade finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_upgrade_time: Option<String>,
}
