//! Admission rules for KAITO's kinds, as pure functions.
//!
//! The validating webhook, the controller and `kaito validate` all run the same rules. Everything a rule
//! needs from the cluster (the node provisioner, bring-your-own nodes, ConfigMaps, feature gates) comes in
//! through a [`ValidationContext`]; a field that is `None` there means "unknown" (offline), and the rules
//! that need it are skipped rather than failed. No rule talks to the API server.
//!
//! Each function returns an [`Outcome`]: the violations (the object is rejected when there is any) and
//! warnings (shown to the user, the object is admitted). A [`Violation`] names the field as a JSON path in
//! the object as written (`inference.preset.name`, `spec.embedding`, `metadata.annotations[kaito.sh/runtime]`)
//! and its message says what to do.

#![deny(missing_docs)]

mod common;
mod inferenceset;
mod ragengine;
mod workspace;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use kaito_core::Cloud;

pub use inferenceset::{child_workspace, validate_inferenceset_create, validate_inferenceset_update};
pub use ragengine::{ragengine_from_v1alpha1, validate_ragengine_create, validate_ragengine_update};
pub use workspace::{
    INFERENCE_CONFIG_KEY, configured_max_model_len, validate_workspace_create, validate_workspace_update,
    validate_workspace_v1alpha1_create, workspace_from_v1alpha1,
};

/// Who creates GPU nodes (the controller's `--node-provisioner` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeProvisioner {
    /// Azure gpu-provisioner fulfils NodeClaims (the default).
    #[default]
    AzureGpuProvisioner,
    /// Karpenter NodePools provision nodes.
    Karpenter,
    /// Bring your own nodes: nothing is provisioned, nodes are found by label.
    Byo,
}

impl NodeProvisioner {
    /// The flag value: `azure-gpu-provisioner`, `karpenter` or `byo`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeProvisioner::AzureGpuProvisioner => "azure-gpu-provisioner",
            NodeProvisioner::Karpenter => "karpenter",
            NodeProvisioner::Byo => "byo",
        }
    }

    /// Whether the operator provisions nodes (node auto-provisioning) rather than using existing ones.
    pub fn provisions_nodes(self) -> bool {
        self != NodeProvisioner::Byo
    }
}

impl fmt::Display for NodeProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--node-provisioner` value that is not one of the three known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node provisioner \"{0}\": use azure-gpu-provisioner, karpenter or byo")]
pub struct UnknownProvisioner(pub String);

impl FromStr for NodeProvisioner {
    type Err = UnknownProvisioner;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "azure-gpu-provisioner" | "gpu-provisioner" | "azure" => Ok(NodeProvisioner::AzureGpuProvisioner),
            "karpenter" => Ok(NodeProvisioner::Karpenter),
            "byo" => Ok(NodeProvisioner::Byo),
            _ => Err(UnknownProvisioner(s.to_string())),
        }
    }
}

/// The controller's feature gates that change admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureGates {
    /// `vLLM` (default on): when off every Workspace uses the transformers runtime.
    pub vllm: bool,
    /// `enableMIG`: MIG partitions of bring-your-own GPUs are allowed.
    pub enable_mig: bool,
    /// `enableAccelerator`: accelerator partitions of bring-your-own nodes are allowed.
    pub enable_accelerator: bool,
    /// `ModelStreaming`: vLLM presets stream weights through the blob CSI driver.
    pub model_streaming: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates { vllm: true, enable_mig: false, enable_accelerator: false, model_streaming: false }
    }
}

/// What the rules know about the cluster. `None` fields are unknown: the rules needing them are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationContext {
    /// Who provisions GPU nodes.
    pub provisioner: NodeProvisioner,
    /// Cloud whose SKU catalog applies (`CLOUD_PROVIDER`).
    pub cloud: Cloud,
    /// Karpenter NodeClass names configured on the controller (Karpenter mode only).
    pub node_classes: Vec<String>,
    /// Labels of the nodes matching a bring-your-own Workspace's selector; `None` when unknown (the node
    /// checks are skipped).
    pub byo_nodes: Option<Vec<BTreeMap<String, String>>>,
    /// ConfigMaps in the object's namespace, name to data; `None` when unknown (existence and content
    /// checks are skipped).
    pub config_maps: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Whether `config_maps` lists every ConfigMap of the namespace (true, the webhook's case) or only some
    /// (false, e.g. those found in the files given to `kaito validate`): a ConfigMap missing from a partial
    /// list is not reported.
    pub config_maps_complete: bool,
    /// ConfigMaps in the operator's release namespace (default templates such as `lora-params-template`);
    /// `None` when unknown.
    pub release_config_maps: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// Names of the cluster's CSIDriver objects; `None` when unknown.
    pub csi_drivers: Option<Vec<String>>,
    /// Feature gates.
    pub feature_gates: FeatureGates,
}

impl Default for ValidationContext {
    fn default() -> Self {
        ValidationContext {
            provisioner: NodeProvisioner::default(),
            cloud: Cloud::Azure,
            node_classes: Vec::new(),
            byo_nodes: None,
            config_maps: None,
            config_maps_complete: true,
            release_config_maps: None,
            csi_drivers: None,
            feature_gates: FeatureGates::default(),
        }
    }
}

impl ValidationContext {
    /// A context for a provisioner and cloud with nothing else known (offline).
    pub fn offline(provisioner: NodeProvisioner, cloud: Cloud) -> Self {
        ValidationContext { provisioner, cloud, ..ValidationContext::default() }
    }

    /// Looks up a ConfigMap of the object's namespace: `Ok(Some(data))` when known, `Ok(None)` when it cannot
    /// be known, `Err(())` when it is known not to exist.
    fn config_map(&self, name: &str) -> Result<Option<&BTreeMap<String, String>>, ()> {
        match &self.config_maps {
            None => Ok(None),
            Some(maps) => match maps.get(name) {
                Some(data) => Ok(Some(data)),
                None if self.config_maps_complete => Err(()),
                None => Ok(None),
            },
        }
    }
}

/// One broken rule: the field (a JSON path) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON path of the offending field, e.g. `inference.preset.name` or `resource.instanceType`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The result of validating one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Broken rules; the object is rejected when there is any.
    pub violations: Vec<Violation>,
    /// Notes for the user (deprecated fields and the like); they do not reject the object.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Whether the object is admitted.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// Records a violation.
    pub fn violation(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation::new(field, message));
    }

    /// Records a warning.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Appends another outcome's violations and warnings.
    pub fn extend(&mut self, other: Outcome) {
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }

    /// Whether some violation is about `field` (exactly, or a path below it).
    pub fn has_violation_on(&self, field: &str) -> bool {
        self.violations.iter().any(|v| {
            v.field == field
                || v.field.strip_prefix(field).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.violations.is_empty() {
            return f.write_str("ok");
        }
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// The JSON path of an annotation, e.g. `metadata.annotations[kaito.sh/runtime]`.
pub fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}
