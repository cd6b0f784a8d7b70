//! `RAGEngine` (`kaito.sh/v1beta1`, the storage version): a retrieval-augmented generation service.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workspace::ResourceSpec;

/// The desired state of a RAGEngine.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kaito.sh",
    version = "v1beta1",
    kind = "RAGEngine",
    namespaced,
    status = "RAGEngineStatus",
    derive = "Default",
    derive = "PartialEq",
    shortname = "rag",
    category = "ragengine",
    doc = "RAGEngine runs a retrieval-augmented generation service: it indexes documents with an embedding \
           model and answers OpenAI-compatible chat requests with an LLM, adding the retrieved context.",
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
    /// GPU node for a local embedding model. Leave it out to run on any node (CPU embeddings or remote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ResourceSpec>,
    /// Where indexes are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// The embedding model: exactly one of `local` and `remote`. Required.
    pub embedding: EmbeddingSpec,
    /// The LLM that answers chat requests. Leave it out for a retrieve-only service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_service: Option<InferenceServiceSpec>,
    /// Output guardrails applied to LLM answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<GuardrailsSpec>,
}

/// Index storage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// A PersistentVolumeClaim the service keeps its indexes on, so they survive restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<PersistentVolumeSpec>,
    /// An external vector database instead of the built-in index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "vectorDB")]
    pub vector_db: Option<VectorDbSpec>,
}

/// Persistent storage for indexes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeSpec {
    /// Name of the PersistentVolumeClaim in the RAGEngine's namespace.
    pub persistent_volume_claim: String,
    /// Where the volume is mounted in the service's container (default /mnt/data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "/mnt/data"))]
    pub mount_path: Option<String>,
}

/// An external vector database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VectorDbSpec {
    /// Engine name, e.g. `qdrant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// URL of the database, e.g. http://qdrant-svc:6333.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret whose key `VECTOR_DB_ACCESS_SECRET` holds the database's API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<String>,
}

/// The embedding model: exactly one of `local` and `remote`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingSpec {
    /// An embedding endpoint reached over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteEmbeddingSpec>,
    /// An embedding model run inside the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalEmbeddingSpec>,
}

/// A remote embedding endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteEmbeddingSpec {
    /// URL of the endpoint (OpenAI-compatible /v1/embeddings).
    pub url: String,
    /// Secret holding the bearer token sent to the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<String>,
}

/// A local embedding model: exactly one of `image` and `modelID`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalEmbeddingSpec {
    /// Image holding the embedding model, as `repository/name:tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Pull secret for `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// Hugging Face id of a sentence-embedding model, e.g. BAAI/bge-small-en-v1.5.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "modelID")]
    pub model_id: Option<String>,
    /// Secret whose key `HF_TOKEN` is a Hugging Face token, for gated models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_access_secret: Option<String>,
}

/// The LLM behind chat completions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// OpenAI-compatible chat completions URL of the LLM, e.g.
    /// http://workspace-phi-4.default.svc.cluster.local/v1/chat/completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret whose key `LLM_ACCESS_SECRET` is sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_secret: Option<String>,
    /// Total tokens (prompt plus answer) the LLM accepts. Must be greater than 0.
    #[schemars(range(min = 1))]
    pub context_window_size: i32,
}

/// Output guardrails.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuardrailsSpec {
    /// Turns guardrails on.
    #[serde(default)]
    pub enabled: bool,
    /// ConfigMap holding `guardrails.yaml`; default is the chart's policy template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapReference>,
}

/// A ConfigMap in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ConfigMapReference {
    /// Name of the ConfigMap.
    pub name: String,
}

/// What the operator observed about a RAGEngine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RAGEngineStatus {
    /// Names of the nodes the service runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_nodes: Option<Vec<String>>,
    /// Latest observations: ResourceReady, ServiceReady, RAGEngineSucceeded, RAGEngineDeleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
