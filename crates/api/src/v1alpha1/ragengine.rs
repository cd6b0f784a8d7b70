//! `RAGEngine` as served under `kaito.sh/v1alpha1` (deprecated).

use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workspace::ResourceSpec;
use crate::v1beta1::{EmbeddingSpec, RAGEngineStatus};

/// The desired state of a RAGEngine (v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kaito.sh",
    version = "v1alpha1",
    kind = "RAGEngine",
    namespaced,
    status = "RAGEngineStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "rag",
    category = "ragengine",
    deprecated = "kaito.sh/v1alpha1 RAGEngine is deprecated; use kaito.sh/v1beta1",
    doc = "RAGEngine runs a retrieval-augmented generation service (v1alpha1, deprecated).",
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.compute.instanceType"),
    printcolumn(
        name = "ResourceReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ResourceReady\")].status"
    ),
    printcolumn(
        name = "ServiceReady",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ServiceReady\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    crates(kube_core = "::kube_core")
)]
#[serde(rename_all = "camelCase")]
pub struct RAGEngineSpec {
    /// GPU node for a local embedding model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ResourceSpec>,
    /// Where indexes are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// The embedding model: exactly one of `local` and `remote`. Required.
    pub embedding: EmbeddingSpec,
    /// The LLM that answers chat requests. Required in v1alpha1.
    pub inference_service: InferenceServiceSpec,
    /// Never honoured: the Service is always named after the RAGEngine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_service_name: Option<String>,
    /// Never honoured: the Service is always named after the RAGEngine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_service_name: Option<String>,
}

/// Index storage (v1alpha1, flat).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Name of a PersistentVolumeClaim for the indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
    /// Mount path of the claim (default /mnt/data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// The LLM behind chat completions (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// OpenAI-compatible chat completions URL of the LLM. Required.
    pub url: String,
    /// Secret whose key `LLM_ACCESS_SECRET` is sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<String>,
    /// Total tokens (prompt plus answer) the LLM accepts. Must be greater than 0.
    #[schemars(range(min = 1))]
    pub context_window_size: i32,
}
