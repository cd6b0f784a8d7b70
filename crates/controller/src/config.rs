//! Controller settings, with upstream KAITO's flag names where they exist.

use kaito_api::karpenter::NodeClassReference;
use kaito_core::Cloud;

/// How GPU nodes come to exist (the `--node-provisioner` flag), shared with the admission rules.
pub use kaito_api::validation::NodeProvisioner;

/// Everything the Workspace controller needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// How GPU nodes come to exist.
    pub node_provisioner: NodeProvisioner,
    /// Cloud whose SKU catalog sizes Workspaces.
    pub cloud: Cloud,
    /// Node class written into NodeClaims (`kaito.sh/KaitoNodeClass/default` on Azure).
    pub node_class_ref: NodeClassReference,
    /// Image of the inference server (vLLM and transformers share one base image upstream).
    pub inference_image: String,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Only reconcile Workspaces of this namespace (None: all namespaces).
    pub namespace: Option<String>,
}

impl Config {
    /// The node class a cloud's provisioner expects by default.
    pub fn default_node_class(cloud: Cloud) -> NodeClassReference {
        match cloud {
            Cloud::Aws => NodeClassReference {
                group: "karpenter.k8s.aws".into(),
                kind: "EC2NodeClass".into(),
                name: "default".into(),
            },
            _ => NodeClassReference { group: "kaito.sh".into(), kind: "KaitoNodeClass".into(), name: "default".into() },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_provisioner: NodeProvisioner::AzureGpuProvisioner,
            cloud: Cloud::Azure,
            node_class_ref: Config::default_node_class(Cloud::Azure),
            inference_image: "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0".into(),
            field_manager: "kaito-controller".into(),
            namespace: None,
        }
    }
}
