//! The ONNX Runtime back-end of the local embedder.
//!
//! candle's CPU kernels reach about a third of PyTorch's throughput on BERT-sized models;
//! ONNX Runtime's MLAS GEMMs match or beat it. The runtime is not linked at build time: it is
//! loaded from `libonnxruntime.so` at start-up (the PyPI `onnxruntime` wheel ships one), so the
//! service builds and runs without it and falls back to candle when it is absent.
//!
//! The model is an ONNX export of the same Hugging Face model (`model.onnx` or
//! `onnx/model.onnx` in the model directory, as Hugging Face repositories lay it out) taking
//! `input_ids`, `attention_mask` and optionally `token_type_ids`, and returning the token
//! vectors (`last_hidden_state`, or the first output).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

/// Errors of the ONNX Runtime back-end.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The shared library could not be loaded.
    #[error(
        "cannot load ONNX Runtime from {path}: {reason}. Point RAG_ONNXRUNTIME_LIB (or ORT_DYLIB_PATH) at \
         libonnxruntime.so (pip's onnxruntime wheel ships it under onnxruntime/capi/), or set \
         RAG_EMBED_BACKEND=candle"
    )]
    Library {
        /// Library path tried.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The process already runs ONNX Runtime from another library file.
    #[error(
        "ONNX Runtime is already loaded from {loaded}; cannot also load {requested} (a process runs one ONNX \
         Runtime: point RAG_ONNXRUNTIME_LIB at a single library)"
    )]
    OtherLibrary {
        /// Library in use.
        loaded: PathBuf,
        /// Library asked for.
        requested: PathBuf,
    },
    /// The model file could not be loaded into a session.
    #[error("cannot load ONNX model {path}: {reason}")]
    Model {
        /// Model file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The model's inputs or outputs are not those of a BERT encoder export.
    #[error("ONNX model {path} is not a BERT encoder export: {reason}")]
    Signature {
        /// Model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Inference failed.
    #[error("ONNX Runtime inference failed: {0}")]
    Run(String),
}

/// The ONNX file of the model in `dir`, if it has one.
pub fn model_file(dir: &Path) -> Option<PathBuf> {
    [dir.join("model.onnx"), dir.join("onnx").join("model.onnx")].into_iter().find(|p| p.is_file())
}

/// The ONNX Runtime library named by the environment (`RAG_ONNXRUNTIME_LIB`, then ort's own
/// `ORT_DYLIB_PATH`), if one is named.
pub fn library_from_env() -> Option<PathBuf> {
    ["RAG_ONNXRUNTIME_LIB", "ORT_DYLIB_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// One ONNX Runtime environment per process (the runtime allows no more), remembered with the
/// library it came from. A failed attempt is not remembered, so a later call with a correct
/// path can still succeed.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn environment(library: &Path) -> Result<Environment, OnnxError> {
    let mut loaded = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    match &*loaded {
        Some((path, env)) if path == library => return Ok(env.clone()),
        Some((path, _)) => {
            return Err(OnnxError::OtherLibrary { loaded: path.clone(), requested: library.to_owned() });
        }
        None => {}
    }
    let failed = |reason: String| OnnxError::Library { path: library.to_owned(), reason };
    if !library.is_file() {
        return Err(failed("no such file".to_owned()));
    }
    let env = ort::init_from(library)
        .map_err(|e| failed(e.to_string()))?
        .with_name("kaito-rag")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    *loaded = Some((library.to_owned(), env.clone()));
    Ok(env)
}

/// A BERT encoder running in ONNX Runtime.
pub struct OnnxEncoder {
    /// `Session::run` needs `&mut`; forward passes are serialised anyway (each uses every core).
    session: Mutex<Session>,
    wants_token_types: bool,
    output: String,
    path: PathBuf,
}

impl std::fmt::Debug for OnnxEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEncoder").field("path", &self.path).finish()
    }
}

impl OnnxEncoder {
    /// Loads `model` with the runtime in `library`, using `threads` threads per forward pass
    /// (0: one per core). `prepack` lets the runtime keep its GEMM-ready copy of the weights.
    pub fn load(model: &Path, library: &Path, threads: usize, prepack: bool) -> Result<Self, OnnxError> {
        let env = environment(library)?;
        let bad_model = |e: ort::Error| OnnxError::Model { path: model.to_owned(), reason: e.to_string() };
        let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let session = Session::builder(&env)
            .map_err(bad_model)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| bad_model(e.into()))?
            .with_intra_threads(threads)
            .map_err(|e| bad_model(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| bad_model(e.into()))?
            .with_prepacking(prepack)
            .map_err(|e| bad_model(e.into()))?
            .with_intra_op_spinning(false)
            .map_err(|e| bad_model(e.into()))?
            // The fused residual-add + layer norm kernel normalises with a scalar loop: unfused,
            // a 12-token query takes 12 % less CPU (same output within 2e-6); document batches
            // are not affected either way (measured with ONNX Runtime 1.32, docs/benchmarks-rag.md).
            .with_config_entry("optimization.disable_specified_optimizers", "SkipLayerNormFusion")
            .map_err(|e| bad_model(e.into()))?
            .commit_from_file(model)
            .map_err(bad_model)?;
        let signature = |reason: String| OnnxError::Signature { path: model.to_owned(), reason };
        let inputs: Vec<String> = session.inputs().iter().map(|i| i.name().to_owned()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !inputs.iter().any(|i| i == required) {
                return Err(signature(format!("no input {required:?} (inputs: {inputs:?})")));
            }
        }
        if let Some(other) =
            inputs.iter().find(|i| !["input_ids", "attention_mask", "token_type_ids"].contains(&i.as_str()))
        {
            return Err(signature(format!("unexpected input {other:?}")));
        }
        let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        let output = outputs
            .iter()
            .find(|o| *o == "last_hidden_state")
            .or_else(|| outputs.first())
            .cloned()
            .ok_or_else(|| signature("no outputs".to_owned()))?;
        Ok(Self {
            session: Mutex::new(session),
            wants_token_types: inputs.iter().any(|i| i == "token_type_ids"),
            output,
            path: model.to_owned(),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs the encoder on a `batch` × `len` padded batch and hands `read` the token vectors
    /// (`batch` × `len` × hidden, row-major, read where the runtime put them rather than copied)
    /// and the hidden size.
    pub fn forward<T>(
        &self,
        batch: usize,
        len: usize,
        ids: Vec<i64>,
        types: Vec<i64>,
        mask: Vec<i64>,
        read: impl FnOnce(&[f32], usize) -> T,
    ) -> Result<T, OnnxError> {
        let run = |e: ort::Error| OnnxError::Run(e.to_string());
        let shape = [batch as i64, len as i64];
        let mut inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids)).map_err(run)?,
            "attention_mask" => Tensor::from_array((shape, mask)).map_err(run)?,
        ];
        if self.wants_token_types {
            inputs.push(("token_type_ids".into(), Tensor::from_array((shape, types)).map_err(run)?.into()));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(inputs).map_err(run)?;
        let value = outputs
            .get(self.output.as_str())
            .ok_or_else(|| OnnxError::Run(format!("output {:?} missing", self.output)))?;
        let (out_shape, data) = value.try_extract_tensor::<f32>().map_err(run)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        match dims[..] {
            [b, t, hidden] if b as usize == batch && t as usize == len && hidden > 0 => Ok(read(data, hidden as usize)),
            _ => Err(OnnxError::Run(format!("output shape {dims:?}, expected [{batch}, {len}, hidden]"))),
        }
    }
}
