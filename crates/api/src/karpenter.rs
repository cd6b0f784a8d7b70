//! Karpenter's `NodeClaim` (`karpenter.sh/v1`), as far as KAITO reads and writes it.
//!
//! KAITO does not own this CRD (Karpenter or the gpu-provisioner installs it); the type exists so the
//! controller and the node provisioner share one typed view. Unknown fields are kept by server-side apply
//! because KAITO only ever sends the fields it owns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request for one node, fulfilled by a cloud provider.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodeClaim",
    status = "NodeClaimStatus",
    derive = "Default",
    derive = "PartialEq",
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimSpec {
    /// Taints the node is created with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at start-up that a daemon removes when the node is initialized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Node requirements (instance type, OS, capacity type, ...).
    #[serde(default)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// Resources the node must offer (KAITO requests `storage` for the OS disk).
    #[serde(default)]
    pub resources: NodeClaimResources,
    /// Cloud-specific node class.
    pub node_class_ref: NodeClassReference,
    /// How long the node may live before Karpenter replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after: Option<String>,
    /// How long a draining node may take before it is forcibly removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<String>,
}

/// A node selector requirement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirementWithMinValues {
    /// Label key.
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt or Lt.
    pub operator: String,
    /// Values for the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Minimum number of distinct values Karpenter must consider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values: Option<i32>,
}

/// Resources requested of the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeClaimResources {
    /// Resource name to quantity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// Reference to a cloud provider's node class object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeClassReference {
    /// API group of the node class, e.g. kaito.sh or karpenter.kwok.sh.
    pub group: String,
    /// Kind of the node class, e.g. KaitoNodeClass.
    pub kind: String,
    /// Name of the node class.
    pub name: String,
}

/// What the cloud provider reported about the node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimStatus {
    /// Name of the Node that fulfils the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud identifier of the instance (also on the Node's spec.providerID).
    #[serde(default, rename = "providerID", skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// OS image of the instance.
    #[serde(default, rename = "imageID", skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Capacity of the node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// Allocatable resources of the node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, Quantity>,
    /// Lifecycle conditions: Launched, Registered, Initialized, Ready (and Drifted, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Karpenter's lifecycle condition types, in the order a node passes them.
pub mod conditions {
    /// The cloud provider created the instance.
    pub const LAUNCHED: &str = "Launched";
    /// The instance's Node object joined the cluster.
    pub const REGISTERED: &str = "Registered";
    /// The Node is Ready, start-up taints are gone and requested resources are allocatable.
    pub const INITIALIZED: &str = "Initialized";
    /// Launched, Registered and Initialized.
    pub const READY: &str = "Ready";
}

/// Labels and annotations Karpenter defines.
pub mod labels {
    /// Label naming the NodePool a claim belongs to; KAITO uses the fake pool `kaito`.
    pub const NODEPOOL: &str = "karpenter.sh/nodepool";
    /// KAITO's NodePool name on NodeClaims it creates directly.
    pub const KAITO_NODEPOOL: &str = "kaito";
    /// `"true"` keeps Karpenter from disrupting the node.
    pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
    /// Instance type of a node.
    pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
    /// Azure's SKU name requirement.
    pub const AZURE_SKU_NAME: &str = "karpenter.azure.com/sku-name";
    /// Operating system of a node.
    pub const OS: &str = "kubernetes.io/os";
    /// Taint Karpenter puts on nodes until they register.
    pub const UNREGISTERED_TAINT: &str = "karpenter.sh/unregistered";
}

impl NodeClaim {
    /// The condition of the given type, if the provider has written it.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is `True`.
    pub fn condition_is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
