//! Model presets: the curated catalog, legacy short names, deprecated names, and offline resolution of
//! other Hugging Face models.
//!
//! The catalog is the data file `data/models.yaml`, compiled in and parsed once. A preset name given by a
//! user is matched case-insensitively against legacy aliases (e.g. `phi-4`) and Hugging Face ids (e.g.
//! `microsoft/phi-4`). Ids that are not in the catalog are resolved by the caller from the model's files
//! with [`resolve_from_hf_files`]; this crate never reads files or talks to the network.

mod hf;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

pub use hf::{is_supported_architecture, resolve_from_hf_files, supported_architectures};

const MODELS_YAML: &str = include_str!("../data/models.yaml");

/// Extra disk (GiB) a node needs beyond the weights: image layers, caches, logs.
pub const DISK_OVERHEAD_GIB: f64 = 80.0;

/// Bytes used to store one KV-cache element; upstream sizes the cache for 16-bit values.
const KV_ELEMENT_BYTES: u64 = 2;

/// An inference runtime that can serve a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// vLLM (the default; every preset supports it).
    Vllm,
    /// Hugging Face transformers (only presets with a transformers command).
    Transformers,
}

impl Runtime {
    /// The lowercase name used in annotations and JSON (`vllm`, `transformers`).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Vllm => "vllm",
            Runtime::Transformers => "transformers",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Runtime {
    type Err = CatalogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vllm" => Ok(Runtime::Vllm),
            "transformers" => Ok(Runtime::Transformers),
            _ => Err(CatalogError::UnknownRuntime { runtime: s.to_string() }),
        }
    }
}

/// Where a preset's facts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PresetSource {
    /// The compiled-in curated catalog.
    Catalog,
    /// Derived from a Hugging Face model's `config.json` and safetensors metadata.
    HuggingFace,
}

/// How the KV cache of one token is laid out, which decides its size in bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum KvCacheLayout {
    /// Classic attention (MHA, GQA or MQA): each layer stores a key and a value per KV head.
    Attention {
        /// Number of transformer layers (`num_hidden_layers`).
        layers: u32,
        /// Number of key/value heads (`num_key_value_heads`).
        kv_heads: u32,
        /// Dimension of one head (`head_dim`, or hidden size / attention heads).
        head_dim: u32,
        /// Hidden size, when known (only informative).
        hidden_size: Option<u32>,
        /// Number of query heads, when known (decides MHA versus GQA).
        attention_heads: Option<u32>,
    },
    /// Multi-head latent attention (DeepSeek-V3 style): each layer stores one compressed latent vector.
    Latent {
        /// Number of transformer layers.
        layers: u32,
        /// Rank of the compressed KV latent (`kv_lora_rank`).
        kv_lora_rank: u32,
        /// Dimension of the decoupled rotary key (`qk_rope_head_dim`).
        qk_rope_head_dim: u32,
    },
    /// The architecture's config is not available; the catalog states bytes per token directly and says
    /// which layout was assumed in the entry's note.
    Stated {
        /// KV-cache bytes per token for the whole model.
        bytes_per_token: u64,
    },
}

impl KvCacheLayout {
    /// KV-cache bytes per token for the whole model (all layers), in 16-bit precision.
    ///
    /// Attention: 2 bytes × layers × (2 × kv_heads × head_dim). Latent: 2 bytes × layers ×
    /// (kv_lora_rank + qk_rope_head_dim).
    pub fn bytes_per_token(&self) -> u64 {
        match *self {
            KvCacheLayout::Attention { layers, kv_heads, head_dim, .. } => {
                KV_ELEMENT_BYTES * u64::from(layers) * 2 * u64::from(kv_heads) * u64::from(head_dim)
            }
            KvCacheLayout::Latent { layers, kv_lora_rank, qk_rope_head_dim } => {
                KV_ELEMENT_BYTES * u64::from(layers) * u64::from(kv_lora_rank + qk_rope_head_dim)
            }
            KvCacheLayout::Stated { bytes_per_token } => bytes_per_token,
        }
    }

    /// The attention kind: `MHA`, `GQA`, `MQA`, `MLA`, or `unknown` when the layout was stated.
    pub fn attention_type(&self) -> &'static str {
        match *self {
            KvCacheLayout::Attention { kv_heads, attention_heads, .. } => match (kv_heads, attention_heads) {
                (1, _) => "MQA",
                (kv, Some(q)) if kv == q => "MHA",
                _ => "GQA",
            },
            KvCacheLayout::Latent { .. } => "MLA",
            KvCacheLayout::Stated { .. } => "unknown",
        }
    }
}

fn default_true() -> bool {
    true
}

/// Per-model vLLM settings that become command-line flags or pod settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmSettings {
    /// `--tokenizer-mode` (`mistral`, `deepseek_v32`, `deepseek_v4`); absent means vLLM's `auto`.
    #[serde(default)]
    pub tokenizer_mode: Option<String>,
    /// `--config-format` (`mistral` for Mistral-format checkpoints).
    #[serde(default)]
    pub config_format: Option<String>,
    /// `--load-format` (`mistral` for Mistral-format checkpoints).
    #[serde(default)]
    pub load_format: Option<String>,
    /// `--trust-remote-code`: the model needs code from its repository.
    #[serde(default)]
    pub trust_remote_code: bool,
    /// `--kv-cache-dtype` (e.g. `fp8`).
    #[serde(default)]
    pub kv_cache_dtype: Option<String>,
    /// Whether vLLM may load LoRA adapters for this model (`--enable-lora`).
    #[serde(default = "default_true")]
    pub lora_allowed: bool,
    /// Whether KV-cache CPU offload (LMCache) can be used; false for hybrid-KV architectures and GPT-OSS.
    #[serde(default = "default_true")]
    pub kv_cpu_offload: bool,
    /// The model needs DeepGEMM kernels (`VLLM_USE_DEEP_GEMM=1`).
    #[serde(default)]
    pub deep_gemm: bool,
    /// The model needs the CUDA toolkit init container (JIT-compiled kernels).
    #[serde(default)]
    pub cuda_toolkit: bool,
    /// Further model-specific flags, name (without `--`) to value; an empty value is a bare flag.
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
}

impl Default for VllmSettings {
    fn default() -> Self {
        VllmSettings {
            tokenizer_mode: None,
            config_format: None,
            load_format: None,
            trust_remote_code: false,
            kv_cache_dtype: None,
            lora_allowed: true,
            kv_cpu_offload: true,
            deep_gemm: false,
            cuda_toolkit: false,
            extra_args: BTreeMap::new(),
        }
    }
}

/// A model preset: everything the planner and the command-line builders need to know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Canonical preset name: the first legacy alias, else the lowercased Hugging Face id. Used as the
    /// default served model name.
    pub name: String,
    /// Hugging Face repository id, with its original capitalisation (e.g. `microsoft/Phi-4-mini-instruct`).
    pub hf_id: String,
    /// Legacy short names accepted as `inference.preset.name` (lowercase).
    pub aliases: Vec<String>,
    /// Model architecture (`architectures[0]` of `config.json`).
    pub architecture: String,
    /// Total parameter count in billions, when known.
    pub parameters_billions: Option<f64>,
    /// Size of the weights in bytes (catalog `modelFileSize`, ≈ total safetensors size).
    pub weight_bytes: u64,
    /// Data type passed to the runtime: `auto` for quantized checkpoints, else `bfloat16` (or the
    /// checkpoint's 16-bit type).
    pub dtype: String,
    /// Largest context length (`max-model-len`) the model supports.
    pub model_token_limit: u32,
    /// Quantization method of the checkpoint (e.g. `fp8`, `awq`, `mxfp4`), if quantized.
    pub quantization: Option<String>,
    /// Runtimes that can serve the preset; always includes vLLM.
    pub runtimes: Vec<Runtime>,
    /// Whether fine-tuning (LoRA/QLoRA) is supported.
    pub tuning: bool,
    /// Whether the model can be served across several nodes (pipeline parallel over Ray).
    pub distributed_inference: bool,
    /// vLLM `--tool-call-parser`, if tool calling is supported.
    pub tool_call_parser: Option<String>,
    /// vLLM `--reasoning-parser`, if the model emits reasoning.
    pub reasoning_parser: Option<String>,
    /// Chat template file name under `/workspace/chat_templates/`, if one is needed.
    pub chat_template: Option<String>,
    /// Whether the Hugging Face repository is gated (needs an `HF_TOKEN` secret).
    pub hf_auth_required: bool,
    /// KV-cache layout used for sizing.
    pub kv_cache: KvCacheLayout,
    /// Per-model vLLM settings.
    pub vllm: VllmSettings,
    /// Where the facts come from.
    pub source: PresetSource,
    /// Free-text note from the catalog (e.g. which layout was assumed for KV sizing).
    pub note: Option<String>,
}

impl Preset {
    /// Node OS-disk size in GiB: floor(weights GiB + 80).
    pub fn disk_gib(&self) -> u64 {
        (crate::bytes_to_gib(self.weight_bytes as f64) + DISK_OVERHEAD_GIB).floor() as u64
    }

    /// KV-cache bytes per token for the whole model (see [`KvCacheLayout::bytes_per_token`]).
    pub fn bytes_per_token(&self) -> u64 {
        self.kv_cache.bytes_per_token()
    }

    /// Size of the weights in GiB.
    pub fn weight_gib(&self) -> f64 {
        crate::bytes_to_gib(self.weight_bytes as f64)
    }

    /// Whether `runtime` can serve this preset.
    pub fn supports(&self, runtime: Runtime) -> bool {
        self.runtimes.contains(&runtime)
    }

    /// Whether the checkpoint is quantized.
    pub fn is_quantized(&self) -> bool {
        self.quantization.is_some()
    }
}

impl Serialize for Preset {
    // Written by hand so that the derived sizes (disk, bytes per token) appear in `-o json` output
    // without being stored twice.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Preset", 24)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("hfId", &self.hf_id)?;
        s.serialize_field("aliases", &self.aliases)?;
        s.serialize_field("architecture", &self.architecture)?;
        s.serialize_field("parametersBillions", &self.parameters_billions)?;
        s.serialize_field("weightBytes", &self.weight_bytes)?;
        s.serialize_field("diskGib", &self.disk_gib())?;
        s.serialize_field("dtype", &self.dtype)?;
        s.serialize_field("modelTokenLimit", &self.model_token_limit)?;
        s.serialize_field("quantization", &self.quantization)?;
        s.serialize_field("runtimes", &self.runtimes)?;
        s.serialize_field("tuning", &self.tuning)?;
        s.serialize_field("distributedInference", &self.distributed_inference)?;
        s.serialize_field("toolCallParser", &self.tool_call_parser)?;
        s.serialize_field("reasoningParser", &self.reasoning_parser)?;
        s.serialize_field("chatTemplate", &self.chat_template)?;
        s.serialize_field("hfAuthRequired", &self.hf_auth_required)?;
        s.serialize_field("attentionType", self.kv_cache.attention_type())?;
        s.serialize_field("bytesPerToken", &self.bytes_per_token())?;
        s.serialize_field("kvCache", &self.kv_cache)?;
        s.serialize_field("vllm", &self.vllm)?;
        s.serialize_field("source", &self.source)?;
        s.serialize_field("note", &self.note)?;
        s.end()
    }
}

/// A legacy preset name that is rejected at admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecatedPreset {
    /// The legacy preset name (lowercase).
    pub name: String,
    /// The Hugging Face repository the preset used to serve.
    pub hf_id: String,
    /// Why it was retired.
    pub note: String,
}

/// Errors of preset lookup and resolution. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// A name without `/` that is neither a legacy alias nor a catalog id.
    #[error(
        "unknown model preset \"{name}\": run `kaito models list` to see the catalog, or give a Hugging Face id such as org/model"
    )]
    Unknown {
        /// The name as given.
        name: String,
    },
    /// A deprecated legacy preset (upstream's admission message, kept verbatim for compatibility).
    #[error("Model {name} is deprecated and no longer supported")]
    Deprecated {
        /// The name as given.
        name: String,
    },
    /// A Hugging Face id that is not in the catalog: resolve it from its files with
    /// [`resolve_from_hf_files`].
    #[error("model {hf_id} is not in the KAITO catalog: resolve it from its config.json and safetensors files")]
    NotInCatalog {
        /// The id as given.
        hf_id: String,
    },
    /// A name containing `/` that is not of the form `org/model`.
    #[error("invalid model name \"{name}\": a Hugging Face id must look like org/model")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// The model's architecture is not in the vLLM allow-list.
    #[error(
        "model {hf_id} uses architecture {architecture}, which the vLLM runtime in the KAITO image cannot serve: pick a catalog model (`kaito models list`) or deploy it with a template workspace and your own image"
    )]
    UnsupportedArchitecture {
        /// The Hugging Face id.
        hf_id: String,
        /// The architecture named in `config.json`.
        architecture: String,
    },
    /// `config.json` lacks something the planner needs, or is not JSON.
    #[error("config.json of {hf_id} cannot be used: {reason}")]
    InvalidConfig {
        /// The Hugging Face id.
        hf_id: String,
        /// What is wrong.
        reason: String,
    },
    /// Neither a safetensors index with `metadata.total_size` nor any safetensors file sizes were given.
    #[error(
        "no safetensors weights found for {hf_id}: provide model.safetensors.index.json or the sizes of the *.safetensors files (only safetensors checkpoints are supported)"
    )]
    MissingWeights {
        /// The Hugging Face id.
        hf_id: String,
    },
    /// A runtime name other than `vllm` or `transformers`.
    #[error("unknown runtime \"{runtime}\": use vllm or transformers")]
    UnknownRuntime {
        /// The name as given.
        runtime: String,
    },
}

/// One model entry as written in `data/models.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRow {
    hf_id: String,
    aliases: Vec<String>,
    architecture: String,
    parameters_billions: Option<f64>,
    weights_gib: f64,
    disk_gib: u64,
    dtype: String,
    model_token_limit: u32,
    quantization: Option<String>,
    tool_call_parser: Option<String>,
    reasoning_parser: Option<String>,
    chat_template: Option<String>,
    transformers: bool,
    tuning: bool,
    hf_auth_required: bool,
    #[serde(default)]
    shape: Option<ShapeRow>,
    #[serde(default)]
    bytes_per_token: Option<u64>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    vllm: VllmSettings,
}

/// Attention layout as written in the data file: either GQA fields or MLA fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapeRow {
    layers: u32,
    #[serde(default)]
    hidden_size: Option<u32>,
    #[serde(default)]
    attention_heads: Option<u32>,
    #[serde(default)]
    kv_heads: Option<u32>,
    #[serde(default)]
    head_dim: Option<u32>,
    #[serde(default)]
    kv_lora_rank: Option<u32>,
    #[serde(default)]
    qk_rope_head_dim: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    models: Vec<ModelRow>,
    deprecated: Vec<DeprecatedPreset>,
}

/// The parsed catalog with its lookup index.
struct Catalog {
    presets: Vec<Preset>,
    /// Lowercased alias or HF id → index into `presets`.
    index: HashMap<String, usize>,
    deprecated: Vec<DeprecatedPreset>,
}

impl ModelRow {
    fn into_preset(self) -> Result<Preset, String> {
        let kv_cache = match (self.shape, self.bytes_per_token) {
            (Some(shape), None) => shape.into_layout(&self.hf_id)?,
            (None, Some(bytes_per_token)) => {
                if self.note.is_none() {
                    return Err(format!(
                        "{}: a stated bytes_per_token needs a note saying what was assumed",
                        self.hf_id
                    ));
                }
                KvCacheLayout::Stated { bytes_per_token }
            }
            _ => {
                return Err(format!("{}: exactly one of shape and bytes_per_token is required", self.hf_id));
            }
        };
        let weight_bytes = crate::gib_to_bytes(self.weights_gib);
        let mut runtimes = vec![Runtime::Vllm];
        if self.transformers {
            runtimes.push(Runtime::Transformers);
        }
        let aliases: Vec<String> = self.aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
        let name = aliases.first().cloned().unwrap_or_else(|| self.hf_id.to_ascii_lowercase());
        let preset = Preset {
            name,
            hf_id: self.hf_id,
            aliases,
            architecture: self.architecture,
            parameters_billions: self.parameters_billions,
            weight_bytes,
            dtype: self.dtype,
            model_token_limit: self.model_token_limit,
            quantization: self.quantization,
            runtimes,
            tuning: self.tuning,
            // v0.12 serves every catalog model with vLLM, which can always span nodes.
            distributed_inference: true,
            tool_call_parser: self.tool_call_parser,
            reasoning_parser: self.reasoning_parser,
            chat_template: self.chat_template,
            hf_auth_required: self.hf_auth_required,
            kv_cache,
            vllm: self.vllm,
            source: PresetSource::Catalog,
            note: self.note,
        };
        // The disk column of the upstream table is derived; a mismatch means a typo in the data file.
        if preset.disk_gib() != self.disk_gib {
            return Err(format!(
                "{}: disk_gib {} does not equal floor(weights_gib + 80) = {}",
                preset.hf_id,
                self.disk_gib,
                preset.disk_gib()
            ));
        }
        Ok(preset)
    }
}

impl ShapeRow {
    fn into_layout(self, hf_id: &str) -> Result<KvCacheLayout, String> {
        match (self.kv_heads, self.head_dim, self.kv_lora_rank, self.qk_rope_head_dim) {
            (Some(kv_heads), Some(head_dim), None, None) => Ok(KvCacheLayout::Attention {
                layers: self.layers,
                kv_heads,
                head_dim,
                hidden_size: self.hidden_size,
                attention_heads: self.attention_heads,
            }),
            (None, None, Some(kv_lora_rank), Some(qk_rope_head_dim)) => {
                Ok(KvCacheLayout::Latent { layers: self.layers, kv_lora_rank, qk_rope_head_dim })
            }
            _ => Err(format!("{hf_id}: shape needs kv_heads + head_dim, or kv_lora_rank + qk_rope_head_dim")),
        }
    }
}

impl Catalog {
    fn parse(yaml: &str) -> Result<Catalog, String> {
        let file: ModelsFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        let mut presets = Vec::with_capacity(file.models.len());
        let mut index = HashMap::new();
        for row in file.models {
            let preset = row.into_preset()?;
            let position = presets.len();
            let keys = std::iter::once(preset.hf_id.to_ascii_lowercase()).chain(preset.aliases.iter().cloned());
            for key in keys {
                if index.insert(key.clone(), position).is_some() {
                    return Err(format!("duplicate catalog name {key}"));
                }
            }
            presets.push(preset);
        }
        let mut deprecated = file.deprecated;
        for entry in &mut deprecated {
            entry.name = entry.name.to_ascii_lowercase();
            if index.contains_key(&entry.name) {
                return Err(format!("{} is both deprecated and in the catalog", entry.name));
            }
        }
        Ok(Catalog { presets, index, deprecated })
    }
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        Catalog::parse(MODELS_YAML).unwrap_or_else(|e| panic!("compiled-in data/models.yaml is invalid: {e}"))
    })
}

/// All catalog presets, in the order of the catalog.
pub fn all() -> &'static [Preset] {
    &catalog().presets
}

/// The deprecated legacy preset names.
pub fn deprecated() -> &'static [DeprecatedPreset] {
    &catalog().deprecated
}

/// Every legacy alias with the preset it names, sorted by alias.
pub fn aliases() -> Vec<(&'static str, &'static Preset)> {
    let mut out: Vec<(&'static str, &'static Preset)> =
        all().iter().flat_map(|p| p.aliases.iter().map(move |a| (a.as_str(), p))).collect();
    out.sort_by_key(|(alias, _)| *alias);
    out
}

/// Checks that a name containing `/` looks like a Hugging Face id `org/model` (both halves non-empty,
/// exactly one slash).
pub fn validate_hf_id(name: &str) -> Result<(), CatalogError> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(org), Some(model), None) if !org.trim().is_empty() && !model.trim().is_empty() => Ok(()),
        _ => Err(CatalogError::InvalidName { name: name.to_string() }),
    }
}

/// Finds a preset by legacy alias or Hugging Face id, case-insensitively.
///
/// Deprecated legacy names fail with [`CatalogError::Deprecated`]; other names without `/` with
/// [`CatalogError::Unknown`]; well-formed ids that are not in the catalog with
/// [`CatalogError::NotInCatalog`] (the caller then resolves them with [`resolve_from_hf_files`]).
pub fn lookup(name: &str) -> Result<&'static Preset, CatalogError> {
    let trimmed = name.trim();
    let key = trimmed.to_ascii_lowercase();
    let catalog = catalog();
    if catalog.deprecated.iter().any(|d| d.name == key) {
        return Err(CatalogError::Deprecated { name: trimmed.to_string() });
    }
    if let Some(&position) = catalog.index.get(&key) {
        return Ok(&catalog.presets[position]);
    }
    if key.contains('/') {
        validate_hf_id(trimmed)?;
        return Err(CatalogError::NotInCatalog { hf_id: trimmed.to_string() });
    }
    Err(CatalogError::Unknown { name: trimmed.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_catalog_parses() {
        let parsed = Catalog::parse(MODELS_YAML).expect("data/models.yaml parses");
        assert_eq!(parsed.presets.len(), all().len());
    }

    #[test]
    fn stated_bytes_per_token_requires_a_note() {
        let yaml = "models:\n  - {hf_id: a/b, aliases: [], architecture: X, parameters_billions: null, weights_gib: 1.0, disk_gib: 81, dtype: bfloat16, model_token_limit: 10, quantization: null, tool_call_parser: null, reasoning_parser: null, chat_template: null, transformers: false, tuning: false, hf_auth_required: false, bytes_per_token: 5}\ndeprecated: []\n";
        let err = Catalog::parse(yaml).err().expect("rejected");
        assert!(err.contains("note"), "{err}");
    }

    #[test]
    fn wrong_disk_column_is_rejected() {
        let yaml = "models:\n  - {hf_id: a/b, aliases: [], architecture: X, parameters_billions: null, weights_gib: 1.5, disk_gib: 82, dtype: bfloat16, model_token_limit: 10, quantization: null, tool_call_parser: null, reasoning_parser: null, chat_template: null, transformers: false, tuning: false, hf_auth_required: false, shape: {layers: 1, kv_heads: 1, head_dim: 1}}\ndeprecated: []\n";
        let err = Catalog::parse(yaml).err().expect("rejected");
        assert!(err.contains("disk_gib"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let row = "{hf_id: a/b, aliases: [x], architecture: X, parameters_billions: null, weights_gib: 1.0, disk_gib: 81, dtype: bfloat16, model_token_limit: 10, quantization: null, tool_call_parser: null, reasoning_parser: null, chat_template: null, transformers: false, tuning: false, hf_auth_required: false, shape: {layers: 1, kv_heads: 1, head_dim: 1}}";
        let yaml = format!("models:\n  - {row}\n  - {}\ndeprecated: []\n", row.replace("a/b", "c/d"));
        let err = Catalog::parse(&yaml).err().expect("rejected");
        assert!(err.contains("duplicate catalog name x"), "{err}");
    }

    #[test]
    fn runtime_parses_and_prints_lowercase() {
        assert_eq!("VLLM".parse::<Runtime>().ok(), Some(Runtime::Vllm));
        assert_eq!(Runtime::Transformers.to_string(), "transformers");
        assert_eq!(serde_json::to_string(&Runtime::Transformers).ok().as_deref(), Some("\"transformers\""));
        assert!("tgi".parse::<Runtime>().is_err());
    }

    #[test]
    fn kv_layouts_compute_bytes_per_token() {
        let gqa = KvCacheLayout::Attention {
            layers: 32,
            kv_heads: 8,
            head_dim: 128,
            hidden_size: Some(4096),
            attention_heads: Some(32),
        };
        // 2 bytes × 32 layers × 2 (K and V) × 8 heads × 128 = 131072
        assert_eq!(gqa.bytes_per_token(), 131_072);
        assert_eq!(gqa.attention_type(), "GQA");
        let mla = KvCacheLayout::Latent { layers: 61, kv_lora_rank: 512, qk_rope_head_dim: 64 };
        // 2 bytes × 61 × (512 + 64) = 70272
        assert_eq!(mla.bytes_per_token(), 70_272);
        assert_eq!(mla.attention_type(), "MLA");
    }
}
