//! Sentence embeddings.
//!
//! Two back-ends behind one [`Embedder`]:
//!
//! * [`LocalEmbedder`]: a BERT-family sentence-transformers model run in process on CPU,
//!   loaded from a local directory (`config.json`, `tokenizer.json`, the weights as
//!   `model.safetensors` and/or an ONNX export, optionally `sentence_bert_config.json`,
//!   `1_Pooling/config.json`). The encoder runs in ONNX Runtime when the directory has an ONNX
//!   export and the runtime library is available (about 3x faster than candle on CPU, see
//!   docs/benchmarks-rag.md), otherwise in candle. Either way it reproduces sentence-transformers:
//!   truncation at the model's `max_seq_length`, padding to the longest sequence of each batch,
//!   mean (or CLS) pooling over real tokens, L2 normalisation.
//! * [`RemoteEmbedder`]: any OpenAI-compatible `/v1/embeddings` endpoint with a bearer secret.
//!
//! Every vector returned is L2-normalised, so a dot product is the cosine similarity.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{PostProcessor, Tokenizer, TruncationParams, TruncationStrategy};

/// Errors from loading or running an embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model directory or one of its required files does not exist.
    #[error(
        "embedding model {model_id:?} not found: {reason}. Put config.json, model.safetensors and \
         tokenizer.json in one of: {tried}, or point RAG_MODEL_DIR (--model-dir) at that directory"
    )]
    ModelMissing {
        /// The model id that was looked for.
        model_id: String,
        /// What was missing.
        reason: String,
        /// Directories that were searched.
        tried: String,
    },
    /// A model file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON configuration file is malformed.
    #[error("invalid model configuration {path}")]
    Config {
        /// File that failed.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The weights file is malformed.
    #[error("invalid weights file {0}")]
    Weights(String),
    /// candle failed while loading weights or running the model.
    #[error("model execution failed")]
    Candle(#[from] candle_core::Error),
    /// The remote embedding endpoint could not be reached.
    #[error("remote embedding request to {url} failed")]
    Http {
        /// Endpoint.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The remote embedding endpoint answered with an error or an unexpected body.
    #[error("remote embedding endpoint {url} answered {status}: {body}")]
    Remote {
        /// Endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The embedding worker thread panicked or was cancelled.
    #[error("embedding task failed: {0}")]
    Task(String),
    /// The ONNX Runtime back-end failed to load or run.
    #[error(transparent)]
    Onnx(#[from] crate::onnx::OnnxError),
    /// The back-end asked for cannot run with this model directory.
    #[error("RAG_EMBED_BACKEND={backend}: {reason}")]
    Backend {
        /// Back-end asked for.
        backend: &'static str,
        /// Why it cannot run.
        reason: String,
    },
}

/// Which runtime executes the local encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// ONNX Runtime when the model directory has an ONNX export and the runtime library is
    /// found, otherwise candle.
    #[default]
    Auto,
    /// candle (pure Rust, needs `model.safetensors`).
    Candle,
    /// ONNX Runtime (needs `model.onnx` and `libonnxruntime.so`); an error if either is missing.
    Onnx,
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the token vectors of real (non-padding) tokens.
    Mean,
    /// The first (`[CLS]`) token vector.
    Cls,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

/// Tuning knobs for the local embedder.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Maximum number of texts per forward pass.
    pub batch_size: usize,
    /// Maximum number of (padded) tokens per forward pass (a longer text runs alone); 0 picks per
    /// back-end (256 for ONNX Runtime, 1,024 for candle: the least memory at full throughput).
    pub batch_tokens: usize,
    /// Runtime executing the encoder.
    pub backend: Backend,
    /// `libonnxruntime.so` to load; `None` looks at `RAG_ONNXRUNTIME_LIB` and `ORT_DYLIB_PATH`.
    pub onnxruntime_lib: Option<PathBuf>,
    /// Threads per forward pass for ONNX Runtime (0: one per core).
    pub threads: usize,
    /// Encoder for queries.
    pub query_encoder: QueryEncoder,
    /// Query embedding workers, each with its own session of a separate query encoder (0: two
    /// when there are at least two cores); the encoder's threads are divided among them.
    pub query_workers: usize,
}

/// Which encoder embeds queries (documents always use the full-precision model).
///
/// A query is a dozen tokens, so its cost is the model's weights, not its activations: on two
/// AVX2 cores MiniLM needs 5.6 ms of CPU per query in `f32` and 2.2 ms with int8 weights. The
/// quantized query vectors keep a cosine of about 0.993 to the full-precision ones, and the
/// ranking quality is measured by the benchmark's hit@5 (docs/benchmarks-rag.md).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryEncoder {
    /// A quantized ONNX export found in the model directory (see [`quantized_model_file`]) when
    /// documents run on ONNX Runtime; otherwise the document encoder.
    #[default]
    Auto,
    /// The document encoder.
    Same,
    /// This ONNX file (an error if it cannot be loaded).
    File(PathBuf),
}

impl std::str::FromStr for QueryEncoder {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "" | "auto" => Self::Auto,
            "same" => Self::Same,
            path => Self::File(PathBuf::from(path)),
        })
    }
}

/// File names of int8 ONNX exports, as Hugging Face repositories publish them (optimum's
/// `model_qint8_avx2.onnx` family, transformers.js's `model_quantized.onnx`), in the model
/// directory or its `onnx/` folder.
pub fn quantized_model_file(dir: &Path) -> Option<PathBuf> {
    let isa_specific = if cfg!(target_arch = "aarch64") { "model_qint8_arm64.onnx" } else { "model_qint8_avx2.onnx" };
    [isa_specific, "model_quantized.onnx"]
        .into_iter()
        .flat_map(|name| [dir.join(name), dir.join("onnx").join(name)])
        .find(|p| p.is_file())
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            batch_tokens: 0,
            backend: Backend::Auto,
            onnxruntime_lib: None,
            threads: 0,
            query_encoder: QueryEncoder::Auto,
            query_workers: 0,
        }
    }
}

/// The runtime holding the encoder's weights.
enum Encoder {
    Candle(BertModel),
    Onnx(crate::onnx::OnnxEncoder),
}

type QueryJob = (String, tokio::sync::oneshot::Sender<Result<Vec<f32>, EmbedError>>);

/// A BERT-family sentence embedding model running on CPU.
pub struct LocalEmbedder {
    queries: std::sync::OnceLock<std::sync::mpsc::Sender<QueryJob>>,
    model_id: String,
    encoder: Encoder,
    /// Cheaper encoders for queries, when one is configured or found ([`QueryEncoder`]): one
    /// session per query worker thread (empty: queries use `encoder`, one worker).
    query_encoders: Vec<Encoder>,
    /// The model's tokenizer without truncation: it sizes chunks, and [`LocalEmbedder::encode`]
    /// truncates for the model (one tokenizer instead of two saves about 5 MB).
    counter: Arc<Tokenizer>,
    device: Device,
    /// Serialises bulk forward passes: they already use every core, and running two at once
    /// only doubles the memory of their intermediate tensors.
    bulk: std::sync::Mutex<()>,
    dim: usize,
    max_seq_length: usize,
    pooling: Pooling,
    options: LocalOptions,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .field("max_seq_length", &self.max_seq_length)
            .field("pooling", &self.pooling)
            .field("backend", &self.backend_name())
            .finish()
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let bytes = std::fs::read(path).map_err(|source| EmbedError::Io { path: path.to_owned(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| EmbedError::Config { path: path.to_owned(), source })
}

/// Finds the directory of `model_id`: `explicit` if given, else `<root>/<model_id>` or
/// `<root>/<model_id with / replaced by -->` for each root, else a Hugging Face cache snapshot.
pub fn resolve_model_dir(model_id: &str, explicit: Option<&Path>, roots: &[PathBuf]) -> Result<PathBuf, EmbedError> {
    let required = ["config.json", "tokenizer.json"];
    let has_weights = |dir: &Path| dir.join("model.safetensors").is_file() || crate::onnx::model_file(dir).is_some();
    let complete = |dir: &Path| required.iter().all(|f| dir.join(f).is_file()) && has_weights(dir);
    let mut tried = Vec::new();
    if let Some(dir) = explicit {
        if complete(dir) {
            return Ok(dir.to_owned());
        }
        let mut missing: Vec<&str> = required.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if !has_weights(dir) {
            missing.push("model.safetensors (or model.onnx)");
        }
        return Err(EmbedError::ModelMissing {
            model_id: model_id.to_owned(),
            reason: format!("{} lacks {}", dir.display(), missing.join(", ")),
            tried: dir.display().to_string(),
        });
    }
    for root in roots {
        for candidate in [root.join(model_id), root.join(model_id.replace('/', "--"))] {
            if complete(&candidate) {
                return Ok(candidate);
            }
            tried.push(candidate.display().to_string());
        }
        let snapshots = root.join(format!("models--{}", model_id.replace('/', "--"))).join("snapshots");
        if let Ok(entries) = std::fs::read_dir(&snapshots) {
            for entry in entries.flatten() {
                if complete(&entry.path()) {
                    return Ok(entry.path());
                }
            }
        }
        tried.push(snapshots.display().to_string());
    }
    Err(EmbedError::ModelMissing {
        model_id: model_id.to_owned(),
        reason: "no directory holds its files".to_owned(),
        tried: tried.join(", "),
    })
}

impl LocalEmbedder {
    /// Loads a model from `dir`.
    pub fn load(model_id: &str, dir: &Path, mut options: LocalOptions) -> Result<Self, EmbedError> {
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length =
            if st_path.is_file() { read_json::<SentenceBertConfig>(&st_path)?.max_seq_length } else { None }
                .unwrap_or(512)
                .min(config.max_position_embeddings);
        let pool_path = dir.join("1_Pooling").join("config.json");
        let pooling = if pool_path.is_file() {
            let p: PoolingConfig = read_json(&pool_path)?;
            if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens { Pooling::Cls } else { Pooling::Mean }
        } else if model_id.to_ascii_lowercase().contains("bge") {
            Pooling::Cls
        } else {
            Pooling::Mean
        };

        let counter = Arc::new(Self::load_tokenizer(&dir.join("tokenizer.json"), None)?);
        let device = Device::Cpu;
        let encoder = Self::load_encoder(model_id, dir, &config, &options, &device)?;
        let query_encoders = Self::load_query_encoders(dir, &encoder, &options)?;
        if options.batch_tokens == 0 {
            // Measured on 2 cores with MiniLM (docs/benchmarks-rag.md): ONNX Runtime spends the
            // same CPU per token at 256, 512 and 1,024 tokens, and its activation arena peaks 25 MB
            // lower at 256 than at 512 (75 MB lower than at 1,024); candle loses 17 % at 512.
            options.batch_tokens = match encoder {
                Encoder::Onnx(_) => 256,
                Encoder::Candle(_) => 1024,
            };
        }
        Ok(Self {
            queries: std::sync::OnceLock::new(),
            model_id: model_id.to_owned(),
            encoder,
            query_encoders,
            counter,
            device,
            bulk: std::sync::Mutex::new(()),
            dim: config.hidden_size,
            max_seq_length,
            pooling,
            options,
        })
    }

    fn load_encoder(
        model_id: &str,
        dir: &Path,
        config: &BertConfig,
        options: &LocalOptions,
        device: &Device,
    ) -> Result<Encoder, EmbedError> {
        let onnx_model = crate::onnx::model_file(dir);
        let library = options.onnxruntime_lib.clone().or_else(crate::onnx::library_from_env);
        let use_onnx = match (options.backend, &onnx_model, &library) {
            (Backend::Candle, _, _) => false,
            (Backend::Onnx, None, _) => {
                return Err(EmbedError::Backend {
                    backend: "onnx",
                    reason: format!("{} has no model.onnx or onnx/model.onnx", dir.display()),
                });
            }
            (Backend::Onnx, Some(_), None) => {
                return Err(EmbedError::Backend {
                    backend: "onnx",
                    reason: "no ONNX Runtime library: set RAG_ONNXRUNTIME_LIB to the path of libonnxruntime.so".into(),
                });
            }
            (Backend::Onnx, Some(_), Some(_)) => true,
            (Backend::Auto, Some(_), Some(_)) => true,
            (Backend::Auto, None, _) => {
                tracing::info!(dir = %dir.display(), "no ONNX export of the model; running it with candle");
                false
            }
            (Backend::Auto, Some(_), None) => {
                tracing::info!(
                    "ONNX Runtime library not configured (RAG_ONNXRUNTIME_LIB); running the model with candle"
                );
                false
            }
        };
        if let (true, Some(model), Some(library)) = (use_onnx, &onnx_model, &library) {
            // Pre-packed GEMM weights are a second copy of the weights (about 25 MB for MiniLM in
            // f32); measured on 2 cores, MLAS packs per call at no visible cost for document
            // batches of hundreds of tokens.
            match crate::onnx::OnnxEncoder::load(model, library, options.threads, false) {
                Ok(encoder) => return Ok(Encoder::Onnx(encoder)),
                Err(e) if options.backend == Backend::Auto && dir.join("model.safetensors").is_file() => {
                    tracing::warn!(error = %e, "ONNX Runtime unavailable; running the model with candle");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(EmbedError::ModelMissing {
                model_id: model_id.to_owned(),
                reason: format!("{} has no model.safetensors for the candle back-end", dir.display()),
                tried: dir.display().to_string(),
            });
        }
        let tensors = load_safetensors(&weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Ok(Encoder::Candle(BertModel::load(vb, config)?))
    }

    /// Loads the query encoder once per query worker. A 12-token int8 forward pass has ops too
    /// small to split across threads: on 2 cores one session with 2 threads spent 3.4 ms of CPU
    /// per `/retrieve` at 8 clients, a single-threaded one 2.8 ms but could use only one core.
    /// Two single-threaded sessions (about 25 MB more) get the low cost on both cores.
    fn load_query_encoders(
        dir: &Path,
        documents: &Encoder,
        options: &LocalOptions,
    ) -> Result<Vec<Encoder>, EmbedError> {
        let library = options.onnxruntime_lib.clone().or_else(crate::onnx::library_from_env);
        let (file, explicit) = match &options.query_encoder {
            QueryEncoder::Same => return Ok(Vec::new()),
            QueryEncoder::File(file) => (file.clone(), true),
            QueryEncoder::Auto => match (documents, quantized_model_file(dir)) {
                (Encoder::Onnx(_), Some(file)) => (file, false),
                _ => return Ok(Vec::new()),
            },
        };
        let fail = |reason: String| EmbedError::Backend {
            backend: "onnx",
            reason: format!(
                "query encoder {}: {reason} (RAG_QUERY_ENCODER=same uses the document model)",
                file.display()
            ),
        };
        let Some(library) = library else {
            return Err(fail("needs ONNX Runtime: set RAG_ONNXRUNTIME_LIB to the path of libonnxruntime.so".into()));
        };
        // A query has a dozen tokens, so packing the weights on every call would cost as much as
        // the multiplication: pre-packed int8 weights (about 10 MB for MiniLM) save 1.2 ms of
        // CPU per query on 2 cores.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if options.threads == 0 { cores } else { options.threads };
        let workers = if options.query_workers == 0 { threads.clamp(1, 2) } else { options.query_workers };
        let per_worker = (threads / workers).max(1);
        let mut encoders = Vec::with_capacity(workers);
        for _ in 0..workers {
            match crate::onnx::OnnxEncoder::load(&file, &library, per_worker, true) {
                Ok(encoder) => encoders.push(Encoder::Onnx(encoder)),
                Err(e) if !explicit => {
                    tracing::warn!(error = %e, "cannot load the quantized query encoder; queries use the document model");
                    return Ok(Vec::new());
                }
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        tracing::info!(file = %file.display(), workers, threads = per_worker, "queries use a separate (quantized) encoder");
        Ok(encoders)
    }

    /// The file of the query encoder, when queries do not use the document encoder.
    pub fn query_encoder_file(&self) -> Option<&Path> {
        match self.query_encoders.first() {
            Some(Encoder::Onnx(e)) => Some(e.path()),
            _ => None,
        }
    }

    /// The runtime executing the encoder: `onnxruntime` or `candle`.
    pub fn backend_name(&self) -> &'static str {
        match self.encoder {
            Encoder::Candle(_) => "candle",
            Encoder::Onnx(_) => "onnxruntime",
        }
    }

    /// Loads `tokenizer.json` with its padding disabled and truncation set to `truncate_at`
    /// tokens (special tokens included), or disabled when `None`.
    pub fn load_tokenizer(path: &Path, truncate_at: Option<usize>) -> Result<Tokenizer, EmbedError> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let truncation = truncate_at.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            ..TruncationParams::default()
        });
        tokenizer.with_truncation(truncation).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(tokenizer)
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Maximum sequence length (special tokens included).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Most padded tokens per forward pass.
    pub fn batch_tokens(&self) -> usize {
        self.options.batch_tokens
    }

    /// Pooling used.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The model's tokenizer with padding and truncation disabled (for sizing chunks). Shared, not
    /// copied: a BERT tokenizer holds about 5 MB.
    pub fn sizing_tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.counter)
    }

    /// Number of tokens of `text` without special tokens and without truncation.
    pub fn count_tokens(&self, text: &str) -> usize {
        match self.counter.encode_fast(text, false) {
            Ok(enc) => enc.get_ids().len(),
            Err(_) => approx_tokens(text),
        }
    }

    /// Embeds `texts`, returning one L2-normalised vector per text, in input order.
    ///
    /// Texts are sorted by token length and grouped into batches bounded by
    /// [`LocalOptions::batch_size`] and [`LocalOptions::batch_tokens`], so padding waste stays
    /// small. Blocking and CPU-bound: call from a blocking thread.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let _bulk = self.bulk.lock().unwrap_or_else(|p| p.into_inner());
        self.embed_unlocked(&self.encoder, texts, false)
    }

    /// Tokenizes `texts` for the model: at most `max_seq_length` tokens with the special tokens,
    /// cut at the end, as a tokenizer with `LongestFirst` truncation does for single sequences
    /// (and sentence-transformers with it).
    fn encode(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>, EmbedError> {
        let fail = |e: tokenizers::Error| EmbedError::Tokenizer(e.to_string());
        let specials = self.counter.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let room = self.max_seq_length.saturating_sub(specials).max(1);
        self.counter
            .encode_batch(texts.to_vec(), false)
            .map_err(fail)?
            .into_iter()
            .map(|mut encoding| {
                encoding.truncate(room, 0, tokenizers::TruncationDirection::Right);
                self.counter.post_process(encoding, None, true).map_err(fail)
            })
            .collect()
    }

    /// Embeds `texts` with `encoder`, in batches, or one text per forward pass with `alone`.
    ///
    /// The int8 query encoder runs alone: its activations are quantized with one scale per
    /// forward pass, so a query batched with others would get a (slightly) different vector
    /// depending on who else asked at that moment; and alone is also cheapest for it (2.0 ms of
    /// CPU per query, 2.6 ms in a padded batch of eight). Documents gain from batching.
    fn embed_unlocked(&self, encoder: &Encoder, texts: &[&str], alone: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.encode(texts)?;
        let tokens: usize = encodings.iter().map(|e| e.get_ids().len()).sum();
        crate::metrics::METRICS.embedded_tokens.inc_by(tokens as u64);
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = encodings[order[start]].get_ids().len().max(1);
            let by_tokens = (self.options.batch_tokens / longest).max(1);
            let size = self.options.batch_size.max(1).min(by_tokens);
            let end = if alone { start + 1 } else { (start + size).min(order.len()) };
            let batch: Vec<&tokenizers::Encoding> = order[start..end].iter().map(|&i| &encodings[i]).collect();
            let vectors = self.forward(encoder, &batch)?;
            for (slot, v) in order[start..end].iter().zip(vectors) {
                out[*slot] = v;
            }
            start = end;
        }
        Ok(out)
    }

    /// Embeds one query. Worker threads (one per query encoder, started on first use) take the
    /// queries waiting in a shared queue and embed them together, which keeps latency low under
    /// parallel load.
    pub async fn embed_query(self: &Arc<Self>, text: String) -> Result<Vec<f32>, EmbedError> {
        let tx = self.queries.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<QueryJob>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            for worker in 0..self.query_encoders.len().max(1) {
                let (weak, rx) = (Arc::downgrade(self), Arc::clone(&rx));
                let spawned = std::thread::Builder::new()
                    .name(format!("query-embedder-{worker}"))
                    .spawn(move || query_worker(&weak, &rx, worker));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot start a query embedding thread");
                }
            }
            tx
        });
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tx.send((text, done_tx)).map_err(|_| EmbedError::Task("query embedding worker stopped".into()))?;
        done_rx.await.map_err(|_| EmbedError::Task("query embedding worker stopped".into()))?
    }

    fn forward(&self, encoder: &Encoder, batch: &[&tokenizers::Encoding]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let b = batch.len();
        let t = batch.iter().map(|e| e.get_ids().len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0u32; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0u32; b * t];
        for (row, enc) in batch.iter().enumerate() {
            let n = enc.get_ids().len();
            ids[row * t..row * t + n].copy_from_slice(enc.get_ids());
            types[row * t..row * t + n].copy_from_slice(enc.get_type_ids());
            for m in &mut mask[row * t..row * t + n] {
                *m = 1;
            }
        }
        let model = match encoder {
            Encoder::Candle(model) => model,
            Encoder::Onnx(encoder) => {
                let wide = |v: Vec<u32>| v.into_iter().map(i64::from).collect::<Vec<i64>>();
                let pooled = encoder.forward(b, t, wide(ids), wide(types), wide(mask.clone()), |hidden, dim| {
                    pool_rows(hidden, &mask, b, t, dim, self.pooling)
                })?;
                return Ok(pooled);
            }
        };
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let types = Tensor::from_vec(types, (b, t), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let hidden = model.forward(&ids, &types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&m)?.sum(1)?;
                let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                summed.broadcast_div(&counts)?
            }
        };
        let rows: Vec<Vec<f32>> = pooled.to_vec2()?;
        Ok(rows
            .into_iter()
            .map(|mut v| {
                normalize(&mut v);
                v
            })
            .collect())
    }
}

/// Pools `batch` × `len` token vectors of size `dim` (row-major) into one normalised vector per
/// row: the mean over the tokens whose `mask` is 1, or the first token.
fn pool_rows(hidden: &[f32], mask: &[u32], batch: usize, len: usize, dim: usize, pooling: Pooling) -> Vec<Vec<f32>> {
    (0..batch)
        .map(|row| {
            let tokens = &hidden[row * len * dim..(row + 1) * len * dim];
            let mut v = match pooling {
                Pooling::Cls => tokens[..dim].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0f32; dim];
                    let mut count = 0usize;
                    for (token, &m) in tokens.chunks_exact(dim).zip(&mask[row * len..(row + 1) * len]) {
                        if m != 0 {
                            count += 1;
                            for (s, x) in sum.iter_mut().zip(token) {
                                *s += x;
                            }
                        }
                    }
                    let n = count.max(1) as f32;
                    sum.iter_mut().for_each(|s| *s /= n);
                    sum
                }
            };
            normalize(&mut v);
            v
        })
        .collect()
}

const MAX_QUERY_BATCH: usize = 64;
/// Queries one of several workers takes at a time (the others take the rest).
const MAX_QUERY_SHARE: usize = 4;

fn query_worker(
    weak: &std::sync::Weak<LocalEmbedder>,
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<QueryJob>>,
    which: usize,
) {
    loop {
        let jobs = {
            // The lock is held while waiting: the idle workers queue on it, and each new query
            // goes to the one waiting longest.
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(model) = weak.upgrade() else {
                return;
            };
            let max = if model.query_encoders.len() > 1 { MAX_QUERY_SHARE } else { MAX_QUERY_BATCH };
            drop(model);
            match crate::batch::recv_batch(&rx, max) {
                Some(jobs) => jobs,
                None => return,
            }
        };
        let Some(model) = weak.upgrade() else {
            return;
        };
        let texts: Vec<&str> = jobs.iter().map(|(t, _)| t.as_str()).collect();
        let (encoder, alone) = match model.query_encoders.get(which) {
            Some(encoder) => (encoder, true),
            None => (&model.encoder, false),
        };
        match model.embed_unlocked(encoder, &texts, alone) {
            Ok(vectors) => {
                for ((_, done), v) in jobs.into_iter().zip(vectors) {
                    let _ = done.send(Ok(v));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (_, done) in jobs {
                    let _ = done.send(Err(EmbedError::Task(msg.clone())));
                }
            }
        }
    }
}

/// Reads a safetensors file one tensor at a time, so loading needs the model's size in memory
/// rather than twice that (file buffer plus tensors).
fn load_safetensors(path: &Path, device: &Device) -> Result<std::collections::HashMap<String, Tensor>, EmbedError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| EmbedError::Io { path: path.to_owned(), source };
    let bad = |what: String| EmbedError::Weights(format!("{}: {what}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let n = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    if n > 100 << 20 {
        return Err(bad("header larger than 100 MB".into()));
    }
    let mut header = vec![0u8; n];
    f.read_exact(&mut header).map_err(io)?;
    let meta: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|source| EmbedError::Config { path: path.to_owned(), source })?;
    let base = 8 + n as u64;
    let mut out = std::collections::HashMap::new();
    for (name, info) in meta {
        if name == "__metadata__" {
            continue;
        }
        let dtype = match info.get("dtype").and_then(serde_json::Value::as_str) {
            Some("F32") => DType::F32,
            Some("F16") => DType::F16,
            Some("BF16") => DType::BF16,
            Some("I64") => DType::I64,
            Some("U32") => DType::U32,
            Some("U8") => DType::U8,
            other => return Err(bad(format!("tensor {name}: unsupported dtype {other:?}"))),
        };
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad(format!("tensor {name}: no shape")))?;
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        let [start, end] = offsets[..] else {
            return Err(bad(format!("tensor {name}: no data_offsets")));
        };
        let size = end.checked_sub(start).ok_or_else(|| bad(format!("tensor {name}: bad data_offsets")))?;
        if size != (shape.iter().product::<usize>() * dtype.size_in_bytes()) as u64 {
            return Err(bad(format!("tensor {name}: size does not match its shape")));
        }
        let mut buf = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(base + start)).map_err(io)?;
        f.read_exact(&mut buf).map_err(io)?;
        let mut t = Tensor::from_raw_buffer(&buf, dtype, &shape, device)?;
        if matches!(dtype, DType::F16 | DType::BF16) {
            t = t.to_dtype(DType::F32)?;
        }
        out.insert(name, t);
    }
    Ok(out)
}

/// L2-normalises `v` in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

/// An OpenAI-compatible `/v1/embeddings` client.
#[derive(Debug, Clone)]
pub struct RemoteEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    secret: Option<String>,
    dim: usize,
    max_tokens: usize,
    batch_size: usize,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl RemoteEmbedder {
    /// Creates a client for `url` (a base URL or the full `/v1/embeddings` URL) and discovers
    /// the vector dimension by embedding a probe sentence.
    pub async fn connect(
        url: &str,
        model: &str,
        secret: Option<String>,
        max_tokens: usize,
    ) -> Result<Self, EmbedError> {
        let url = if url.contains("/embeddings") {
            url.to_owned()
        } else {
            format!("{}/v1/embeddings", url.trim_end_matches('/'))
        };
        crate::llm::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| EmbedError::Http { url: url.clone(), source })?;
        let mut this = Self { client, url, model: model.to_owned(), secret, dim: 0, max_tokens, batch_size: 64 };
        let probe = this.embed(&["dimension probe".to_owned()]).await?;
        this.dim = probe.first().map(Vec::len).unwrap_or(0);
        Ok(this)
    }

    /// Embeds `texts` (normalised), in input order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let mut req = self.client.post(&self.url).json(&serde_json::json!({"model": self.model, "input": batch}));
            if let Some(secret) = &self.secret {
                req = req.bearer_auth(secret);
            }
            let resp = req.send().await.map_err(|source| EmbedError::Http { url: self.url.clone(), source })?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|source| EmbedError::Http { url: self.url.clone(), source })?;
            let remote_err = |what: &str| EmbedError::Remote {
                url: self.url.clone(),
                status: status.as_u16(),
                body: format!("{what}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])),
            };
            if !status.is_success() {
                return Err(remote_err("error"));
            }
            let parsed: EmbeddingsResponse =
                serde_json::from_slice(&body).map_err(|_| remote_err("unexpected body"))?;
            if parsed.data.len() != batch.len() {
                return Err(remote_err("wrong number of embeddings"));
            }
            let mut items = parsed.data;
            items.sort_by_key(|i| i.index.unwrap_or(0));
            for mut item in items {
                normalize(&mut item.embedding);
                out.push(item.embedding);
            }
        }
        Ok(out)
    }
}

/// The embedding back-end used by the service.
#[derive(Debug, Clone)]
pub enum Embedder {
    /// In-process candle model.
    Local(Arc<LocalEmbedder>),
    /// OpenAI-compatible endpoint.
    Remote(Arc<RemoteEmbedder>),
}

impl Embedder {
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        match self {
            Embedder::Local(e) => e.dim(),
            Embedder::Remote(e) => e.dim,
        }
    }

    /// Model identifier.
    pub fn model_id(&self) -> &str {
        match self {
            Embedder::Local(e) => &e.model_id,
            Embedder::Remote(e) => &e.model,
        }
    }

    /// Token budget of one chunk: the model window without its special tokens.
    pub fn chunk_tokens(&self) -> usize {
        match self {
            Embedder::Local(e) => e.max_seq_length().saturating_sub(2).max(16),
            Embedder::Remote(e) => e.max_tokens.max(16),
        }
    }

    /// Counts tokens of `text` (exact for local models, approximately 4 bytes a token otherwise).
    pub fn count_tokens(&self, text: &str) -> usize {
        match self {
            Embedder::Local(e) => e.count_tokens(text),
            Embedder::Remote(_) => approx_tokens(text),
        }
    }

    /// Embeds `texts` without blocking the async runtime.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let started = std::time::Instant::now();
        let n = texts.len() as u64;
        let out = self.embed_inner(texts).await;
        let m = &crate::metrics::METRICS;
        m.embedding_seconds.observe(started.elapsed().as_secs_f64());
        m.embedded_texts.inc_by(n);
        out
    }

    /// Embeds one query (batched with concurrent queries for local models).
    pub async fn embed_query(&self, text: String) -> Result<Vec<f32>, EmbedError> {
        let started = std::time::Instant::now();
        let out = match self {
            Embedder::Local(e) => e.embed_query(text).await,
            Embedder::Remote(e) => e.embed(&[text]).await.map(|mut v| v.pop().unwrap_or_default()),
        };
        let m = &crate::metrics::METRICS;
        m.embedding_seconds.observe(started.elapsed().as_secs_f64());
        m.embedded_texts.inc();
        out
    }

    async fn embed_inner(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Embedder::Local(e) => {
                let e = Arc::clone(e);
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    e.embed(&refs)
                })
                .await
                .map_err(|e| EmbedError::Task(e.to_string()))?
            }
            Embedder::Remote(e) => e.embed(&texts).await,
        }
    }
}

/// Rough token estimate for text without a tokenizer (about 4 bytes per token).
pub fn approx_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}
