//! Wiring: configuration to a ready [`AppState`].

use std::sync::Arc;
use std::time::Duration;

use crate::api::{ApiSettings, AppState};
use crate::chunk::{ChunkError, Chunker, Sizer};
use crate::config::{Config, ConfigError, EmbeddingType};
use crate::embed::{EmbedError, Embedder, LocalEmbedder, LocalOptions, RemoteEmbedder};
use crate::engine::{Engine, EngineError, EngineSettings};
use crate::index::Fusion;
use crate::llm::{LlmClient, LlmError};
use crate::store::{Store, StoreError};

/// Errors at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The embedding model could not be loaded or reached.
    #[error("embedding model unavailable")]
    Embed(#[from] EmbedError),
    /// The chunker could not be built.
    #[error("chunker")]
    Chunk(#[from] ChunkError),
    /// The durable store could not be opened.
    #[error("cannot open the data directory")]
    Store(#[from] StoreError),
    /// The stored indexes could not be loaded.
    #[error("cannot load stored indexes")]
    Engine(#[from] EngineError),
    /// The LLM client could not be built.
    #[error("LLM client")]
    Llm(#[from] LlmError),
    /// A blocking task failed.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// Loads the embedder described by `cfg`.
pub async fn load_embedder(cfg: &Config) -> Result<Embedder, StartError> {
    match cfg.embedding_type.unwrap_or(EmbeddingType::Local) {
        EmbeddingType::Local => {
            let model_id = cfg.model_id().to_owned();
            let dir = crate::embed::resolve_model_dir(&model_id, cfg.model_dir.as_deref(), &cfg.model_roots())?;
            let opts = LocalOptions {
                batch_size: cfg.embed_batch_size.max(1),
                batch_tokens: if cfg.embed_batch_tokens == 0 { 0 } else { cfg.embed_batch_tokens.max(64) },
                backend: cfg.embed_backend,
                onnxruntime_lib: cfg.onnxruntime_lib.clone(),
                threads: cfg.embed_threads,
                query_encoder: cfg.query_encoder.clone(),
                query_workers: cfg.query_workers,
            };
            tracing::info!(model = %model_id, dir = %dir.display(), "loading embedding model");
            let e = tokio::task::spawn_blocking(move || LocalEmbedder::load(&model_id, &dir, opts))
                .await
                .map_err(|e| StartError::Task(e.to_string()))??;
            tracing::info!(backend = e.backend_name(), "embedding model loaded");
            Ok(Embedder::Local(Arc::new(e)))
        }
        EmbeddingType::Remote => {
            let url = cfg.embedding_url.clone().unwrap_or_default();
            let e = RemoteEmbedder::connect(
                &url,
                cfg.model_id(),
                cfg.access_secret.clone(),
                cfg.remote_embedding_max_tokens,
            )
            .await?;
            Ok(Embedder::Remote(Arc::new(e)))
        }
    }
}

/// Builds the chunker matching `embedder`.
pub fn chunker_for(embedder: &Embedder, overlap: usize) -> Result<Chunker, StartError> {
    let sizer = match embedder {
        Embedder::Local(e) => Sizer::Tokens(e.sizing_tokenizer()),
        Embedder::Remote(_) => Sizer::Approx,
    };
    Ok(Chunker::new(sizer, embedder.chunk_tokens(), overlap)?)
}

/// Builds the application state from a resolved configuration and an embedder.
pub async fn build_state(cfg: &Config, embedder: Embedder) -> Result<AppState, StartError> {
    let chunker = chunker_for(&embedder, cfg.chunk_overlap_tokens)?;
    let store = match &cfg.data_dir {
        Some(dir) => {
            let dir = dir.clone();
            Some(
                tokio::task::spawn_blocking(move || Store::open(&dir))
                    .await
                    .map_err(|e| StartError::Task(e.to_string()))??,
            )
        }
        None => None,
    };
    let settings = EngineSettings {
        fusion: Fusion { dense: cfg.dense_weight, sparse: 1.0 - cfg.dense_weight },
        persist_dir: cfg.persist_dir.clone(),
    };
    let engine = tokio::task::spawn_blocking(move || Engine::new(embedder, chunker, store, settings))
        .await
        .map_err(|e| StartError::Task(e.to_string()))??;
    let llm = match &cfg.llm_inference_url {
        Some(url) => Some(Arc::new(LlmClient::new(
            url,
            cfg.llm_access_secret.clone(),
            Duration::from_secs(cfg.llm_timeout_seconds.max(1)),
        )?)),
        None => None,
    };
    Ok(AppState {
        engine: Arc::new(engine),
        llm,
        settings: Arc::new(ApiSettings {
            api_key: cfg.api_key.clone(),
            max_top_k: cfg.max_top_k,
            max_documents: cfg.max_documents_per_request,
            max_document_bytes: cfg.max_document_bytes,
            max_request_bytes: cfg.max_request_bytes,
            context_window: cfg.llm_context_window,
            context_token_ratio: cfg.context_token_fill_ratio,
            node_token_approximation: cfg.node_token_approximation,
            min_similarity: cfg.min_similarity,
        }),
    })
}
