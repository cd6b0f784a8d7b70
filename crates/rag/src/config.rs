//! Service configuration: command-line flags, each also read from the environment variable the
//! upstream RAGEngine controller sets (or a `RAG_*` variable for settings upstream lacks).
//!
//! Upstream's controller writes `EMBEDDING_TYPE`/`MODEL_ID` while its service reads
//! `EMBEDDING_SOURCE_TYPE`/`LOCAL_EMBEDDING_MODEL_ID`; both spellings are accepted here, the
//! controller's first.

use std::path::PathBuf;

use clap::Parser;

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or unsupported.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where embeddings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbeddingType {
    /// In-process candle model.
    Local,
    /// OpenAI-compatible `/v1/embeddings` endpoint.
    Remote,
}

/// Command-line flags and environment variables.
#[derive(Debug, Clone, Parser)]
#[command(name = "kaito-rag", version, about = "KAITO RAG service")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RAG_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (upstream: 5000).
    #[arg(long, env = "RAG_PORT", default_value_t = 5000)]
    pub port: u16,

    /// Embedding source: local or remote (also EMBEDDING_SOURCE_TYPE).
    #[arg(long, env = "EMBEDDING_TYPE", value_enum, ignore_case = true)]
    pub embedding_type: Option<EmbeddingType>,
    /// Embedding model id (also LOCAL_EMBEDDING_MODEL_ID).
    #[arg(long, env = "MODEL_ID")]
    pub model_id: Option<String>,
    /// Directory holding the local model (config.json, model.safetensors, tokenizer.json).
    /// When unset the model is looked for as <root>/<model id> under each --models-root.
    #[arg(long, env = "RAG_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Roots searched for local models (colon-separated); Hugging Face cache layouts work too.
    #[arg(long, env = "RAG_MODELS_ROOT", default_value = "/models:/root/.cache/huggingface/hub")]
    pub models_root: String,
    /// Remote embeddings URL (also REMOTE_EMBEDDING_URL).
    #[arg(long, env = "EMBEDDING_URL")]
    pub embedding_url: Option<String>,
    /// Bearer secret for the remote embeddings URL (also REMOTE_EMBEDDING_ACCESS_SECRET).
    #[arg(long, env = "ACCESS_SECRET", hide_env_values = true)]
    pub access_secret: Option<String>,
    /// Token window of the remote embedding model (chunk size for remote embeddings).
    #[arg(long, env = "RAG_REMOTE_EMBEDDING_MAX_TOKENS", default_value_t = 512)]
    pub remote_embedding_max_tokens: usize,
    /// Texts per forward pass of the local model.
    #[arg(long, env = "RAG_EMBED_BATCH_SIZE", default_value_t = 32)]
    pub embed_batch_size: usize,
    /// Most (padded) tokens per forward pass of the local model: lower means less memory.
    /// 0 picks per back-end: 512 for ONNX Runtime, 1,024 for candle.
    #[arg(long, env = "RAG_EMBED_BATCH_TOKENS", default_value_t = 0)]
    pub embed_batch_tokens: usize,
    /// Runtime of the local encoder: auto (ONNX Runtime when the model directory has an ONNX
    /// export and RAG_ONNXRUNTIME_LIB names the runtime library, otherwise candle), candle or onnx.
    #[arg(long, env = "RAG_EMBED_BACKEND", value_enum, ignore_case = true, default_value = "auto")]
    pub embed_backend: crate::embed::Backend,
    /// Path of libonnxruntime.so for the onnx back-end (ort's ORT_DYLIB_PATH is read too).
    #[arg(long, env = "RAG_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Threads per forward pass of the ONNX Runtime encoder (0: one per core).
    #[arg(long, env = "RAG_EMBED_THREADS", default_value_t = 0)]
    pub embed_threads: usize,
    /// Encoder for queries: `auto` (an int8 ONNX export in the model directory, such as
    /// `onnx/model_qint8_avx2.onnx` or `model_quantized.onnx`, when there is one), `same` (the
    /// document model), or the path of an ONNX file. Documents always use the full model.
    #[arg(long, env = "RAG_QUERY_ENCODER", default_value = "auto")]
    pub query_encoder: crate::embed::QueryEncoder,
    /// Query embedding workers when queries have their own encoder, each holding a session of it
    /// (about 30 MB for int8 MiniLM); 0 picks two on machines with two or more cores. One worker
    /// saves the memory and keeps a lone query fastest; two carry more concurrent queries.
    #[arg(long, env = "RAG_QUERY_WORKERS", default_value_t = 0)]
    pub query_workers: usize,
    /// Tokens of overlap between consecutive chunks.
    #[arg(long, env = "RAG_CHUNK_OVERLAP_TOKENS", default_value_t = 32)]
    pub chunk_overlap_tokens: usize,

    /// Vector store type; only the in-process store ("faiss" for compatibility) is supported.
    #[arg(long, env = "VECTOR_DB_TYPE", default_value = "faiss")]
    pub vector_db_type: String,
    /// Default directory of /persist and /load (one sub-directory per index).
    #[arg(long, env = "DEFAULT_VECTOR_DB_PERSIST_DIR", default_value = "storage")]
    pub persist_dir: PathBuf,
    /// Directory of the durable store. When set, every acknowledged write is fsynced before the
    /// reply and reloaded at start-up; when unset, indexes live in memory only (as upstream).
    #[arg(long, env = "RAG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// OpenAI-compatible chat completions URL of the LLM; unset = retrieve-only service.
    #[arg(long, env = "LLM_INFERENCE_URL")]
    pub llm_inference_url: Option<String>,
    /// Bearer secret for the LLM.
    #[arg(long, env = "LLM_ACCESS_SECRET", hide_env_values = true)]
    pub llm_access_secret: Option<String>,
    /// LLM context window in tokens.
    #[arg(long, env = "LLM_CONTEXT_WINDOW", default_value_t = 64000)]
    pub llm_context_window: usize,
    /// LLM request timeout in seconds.
    #[arg(long, env = "LLM_TIMEOUT_SECONDS", default_value_t = 300)]
    pub llm_timeout_seconds: u64,

    /// Largest max_node_count accepted by /retrieve.
    #[arg(long, env = "RAG_MAX_TOP_K", default_value_t = 300)]
    pub max_top_k: usize,
    /// Default share of the remaining window filled with retrieved context.
    #[arg(long, env = "RAG_CONTEXT_TOKEN_FILL_RATIO", default_value_t = 0.5)]
    pub context_token_fill_ratio: f64,
    /// Tokens assumed per retrieved node when deciding how many nodes to retrieve.
    #[arg(long, env = "RAG_DOCUMENT_NODE_TOKEN_APPROXIMATION", default_value_t = 500)]
    pub node_token_approximation: usize,
    /// Minimum cosine similarity of a chunk used as chat context; when no chunk reaches it the
    /// best chunks that fit the budget are used anyway.
    #[arg(long, env = "RAG_MIN_SIMILARITY", default_value_t = 0.3)]
    pub min_similarity: f32,
    /// Weight of the vector score in hybrid retrieval (the keyword weight is 1 minus this).
    #[arg(long, env = "RAG_DENSE_WEIGHT", default_value_t = 0.7)]
    pub dense_weight: f32,

    /// API key: when set every endpoint except /health and /metrics needs
    /// `Authorization: Bearer <key>`.
    #[arg(long, env = "RAG_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "RAG_MAX_REQUEST_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Most documents in one index/update/delete request.
    #[arg(long, env = "RAG_MAX_DOCUMENTS_PER_REQUEST", default_value_t = 1000)]
    pub max_documents_per_request: usize,
    /// Largest single document text in bytes.
    #[arg(long, env = "RAG_MAX_DOCUMENT_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_document_bytes: usize,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Applies upstream's alternative variable names and checks values.
    pub fn resolve(mut self) -> Result<Self, ConfigError> {
        if self.embedding_type.is_none() {
            self.embedding_type = match env_nonempty("EMBEDDING_SOURCE_TYPE").as_deref() {
                None => Some(EmbeddingType::Local),
                Some(v) if v.eq_ignore_ascii_case("local") => Some(EmbeddingType::Local),
                Some(v) if v.eq_ignore_ascii_case("remote") => Some(EmbeddingType::Remote),
                Some(v) => {
                    return Err(ConfigError::Invalid(format!("EMBEDDING_SOURCE_TYPE={v}: expected local or remote")));
                }
            };
        }
        if self.model_id.as_deref().is_none_or(|m| m.trim().is_empty()) {
            self.model_id =
                Some(env_nonempty("LOCAL_EMBEDDING_MODEL_ID").unwrap_or_else(|| "BAAI/bge-small-en-v1.5".to_owned()));
        }
        if self.embedding_url.is_none() {
            self.embedding_url = env_nonempty("REMOTE_EMBEDDING_URL");
        }
        if self.access_secret.is_none() {
            self.access_secret = env_nonempty("REMOTE_EMBEDDING_ACCESS_SECRET");
        }
        self.llm_inference_url = self.llm_inference_url.filter(|u| !u.trim().is_empty());
        self.api_key = self.api_key.filter(|k| !k.is_empty());
        let db = self.vector_db_type.to_ascii_lowercase();
        if !matches!(db.as_str(), "faiss" | "flat" | "memory" | "") {
            return Err(ConfigError::Invalid(format!(
                "VECTOR_DB_TYPE={}: only the built-in store (faiss) is supported",
                self.vector_db_type
            )));
        }
        if self.embedding_type == Some(EmbeddingType::Remote) && self.embedding_url.is_none() {
            return Err(ConfigError::Invalid("remote embeddings need EMBEDDING_URL (or REMOTE_EMBEDDING_URL)".into()));
        }
        if !(0.0..=1.0).contains(&self.dense_weight) {
            return Err(ConfigError::Invalid("RAG_DENSE_WEIGHT must be in [0, 1]".into()));
        }
        if !(0.0..=1.0).contains(&self.context_token_fill_ratio) {
            return Err(ConfigError::Invalid("RAG_CONTEXT_TOKEN_FILL_RATIO must be in [0, 1]".into()));
        }
        if self.max_top_k == 0 || self.max_documents_per_request == 0 {
            return Err(ConfigError::Invalid(
                "RAG_MAX_TOP_K and RAG_MAX_DOCUMENTS_PER_REQUEST must be positive".into(),
            ));
        }
        Ok(self)
    }

    /// The model id in use.
    pub fn model_id(&self) -> &str {
        self.model_id.as_deref().unwrap_or("BAAI/bge-small-en-v1.5")
    }

    /// Roots searched for local models.
    pub fn model_roots(&self) -> Vec<PathBuf> {
        self.models_root.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect()
    }
}
