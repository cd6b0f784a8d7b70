//! Offline resolution of a Hugging Face model that is not in the curated catalog.
//!
//! The caller reads `config.json`, `model.safetensors.index.json` and the safetensors file sizes from a
//! local directory, a ConfigMap or an HTTP response; this module only interprets them.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use super::{CatalogError, KvCacheLayout, Preset, PresetSource, Runtime, VllmSettings};

const ARCHITECTURES_YAML: &str = include_str!("../../data/hf_architectures.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchitectureDefaults {
    architecture: String,
    #[serde(default)]
    tool_call_parser: Option<String>,
    #[serde(default)]
    reasoning_parser: Option<String>,
    #[serde(default)]
    chat_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchitecturesFile {
    supported: Vec<String>,
    defaults: Vec<ArchitectureDefaults>,
}

struct Architectures {
    supported: Vec<String>,
    supported_set: HashSet<String>,
    defaults: HashMap<String, ArchitectureDefaults>,
}

fn parse_architectures(yaml: &str) -> Result<Architectures, String> {
    let file: ArchitecturesFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let supported_set: HashSet<String> = file.supported.iter().cloned().collect();
    if supported_set.len() != file.supported.len() {
        return Err("duplicate architecture in the supported list".to_string());
    }
    let mut defaults = HashMap::new();
    for entry in file.defaults {
        if !supported_set.contains(&entry.architecture) {
            return Err(format!("defaults given for unsupported architecture {}", entry.architecture));
        }
        defaults.insert(entry.architecture.clone(), entry);
    }
    Ok(Architectures { supported: file.supported, supported_set, defaults })
}

fn architectures() -> &'static Architectures {
    static ARCHITECTURES: OnceLock<Architectures> = OnceLock::new();
    ARCHITECTURES.get_or_init(|| {
        parse_architectures(ARCHITECTURES_YAML)
            .unwrap_or_else(|e| panic!("compiled-in data/hf_architectures.yaml is invalid: {e}"))
    })
}

/// The model architectures (as named in `config.json`) that the vLLM runtime can serve.
pub fn supported_architectures() -> &'static [String] {
    &architectures().supported
}

/// Whether `architecture` (exact, as in `config.json`) is in the vLLM allow-list.
pub fn is_supported_architecture(architecture: &str) -> bool {
    architectures().supported_set.contains(architecture)
}

/// Reads `config.json` fields, preferring the text sub-config of multimodal models.
struct ConfigReader<'a> {
    hf_id: &'a str,
    root: &'a serde_json::Map<String, Value>,
    text: Option<&'a serde_json::Map<String, Value>>,
}

impl<'a> ConfigReader<'a> {
    /// The first of `keys` present (not null), looking in the text config first.
    fn value(&self, keys: &[&str]) -> Option<&'a Value> {
        let scopes = self.text.into_iter().chain(std::iter::once(self.root));
        for scope in scopes {
            for key in keys {
                match scope.get(*key) {
                    Some(Value::Null) | None => {}
                    Some(v) => return Some(v),
                }
            }
        }
        None
    }

    fn u32(&self, keys: &[&str]) -> Result<Option<u32>, CatalogError> {
        match self.value(keys) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.invalid(format!("{} must be a positive integer, got {v}", keys[0]))),
        }
    }

    fn string(&self, keys: &[&str]) -> Option<&'a str> {
        self.value(keys).and_then(Value::as_str)
    }

    fn invalid(&self, reason: String) -> CatalogError {
        CatalogError::InvalidConfig { hf_id: self.hf_id.to_string(), reason }
    }
}

/// Builds a [`Preset`] for a Hugging Face model from its files, without network or disk access.
///
/// - `config_json`: the repository's `config.json`. Read: `architectures`, hidden size, layers, attention
///   and key/value heads, `head_dim`, `max_position_embeddings`, `torch_dtype`/`dtype`,
///   `quantization_config`, and for multi-head latent attention `kv_lora_rank`/`qk_rope_head_dim`.
///   Multimodal models are read from their `text_config`.
/// - `safetensors_index_json`: `model.safetensors.index.json`, whose `metadata.total_size` gives the
///   weight size when present.
/// - `safetensors_sizes`: sizes in bytes of the `*.safetensors` files, summed when the index gives no
///   total.
///
/// The architecture must be in the vLLM allow-list ([`supported_architectures`]). The preset supports the
/// vLLM runtime only, and can span nodes. Gated repositories cannot be detected offline:
/// `hf_auth_required` is false and the caller sets it when a metadata fetch was refused.
pub fn resolve_from_hf_files(
    hf_id: &str,
    config_json: &str,
    safetensors_index_json: Option<&str>,
    safetensors_sizes: &[u64],
) -> Result<Preset, CatalogError> {
    let hf_id = hf_id.trim();
    super::validate_hf_id(hf_id)?;
    let invalid = |reason: String| CatalogError::InvalidConfig { hf_id: hf_id.to_string(), reason };
    let config: Value = serde_json::from_str(config_json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let root = config.as_object().ok_or_else(|| invalid("the top level is not a JSON object".to_string()))?;
    let reader = ConfigReader {
        hf_id,
        root,
        text: root.get("text_config").or_else(|| root.get("llm_config")).and_then(Value::as_object),
    };

    let architecture = root
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|list| list.first())
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no `architectures` list".to_string()))?
        .to_string();
    if !is_supported_architecture(&architecture) {
        return Err(CatalogError::UnsupportedArchitecture { hf_id: hf_id.to_string(), architecture });
    }

    let kv_cache = read_kv_layout(&reader)?;
    let model_token_limit = reader
        .u32(&["max_position_embeddings", "max_sequence_length", "seq_length", "n_positions", "model_max_length"])?
        .ok_or_else(|| invalid("no max_position_embeddings (context length)".to_string()))?;

    let quantization = reader
        .value(&["quantization_config"])
        .and_then(|q| q.get("quant_method"))
        .and_then(Value::as_str)
        .map(str::to_string);
    // Quantized checkpoints carry their own types; otherwise keep a 16-bit checkpoint type and fall back
    // to bfloat16 (a float32 checkpoint would double the memory the planner assumed).
    let dtype = if quantization.is_some() {
        "auto".to_string()
    } else {
        match reader.string(&["torch_dtype", "dtype"]) {
            Some(t @ ("bfloat16" | "float16")) => t.to_string(),
            _ => "bfloat16".to_string(),
        }
    };

    let weight_bytes = weight_bytes(hf_id, safetensors_index_json, safetensors_sizes)?;
    let defaults = architectures().defaults.get(&architecture);
    Ok(Preset {
        name: hf_id.to_ascii_lowercase(),
        hf_id: hf_id.to_string(),
        aliases: Vec::new(),
        architecture,
        parameters_billions: None,
        weight_bytes,
        dtype,
        model_token_limit,
        quantization,
        runtimes: vec![Runtime::Vllm],
        tuning: false,
        distributed_inference: true,
        tool_call_parser: defaults.and_then(|d| d.tool_call_parser.clone()),
        reasoning_parser: defaults.and_then(|d| d.reasoning_parser.clone()),
        chat_template: defaults.and_then(|d| d.chat_template.clone()),
        hf_auth_required: false,
        kv_cache,
        vllm: VllmSettings::default(),
        source: PresetSource::HuggingFace,
        note: None,
    })
}

fn read_kv_layout(reader: &ConfigReader<'_>) -> Result<KvCacheLayout, CatalogError> {
    let layers = reader
        .u32(&["num_hidden_layers", "n_layer", "num_layers", "n_layers"])?
        .filter(|&n| n > 0)
        .ok_or_else(|| reader.invalid("no num_hidden_layers".to_string()))?;
    if let (Some(kv_lora_rank), Some(qk_rope_head_dim)) =
        (reader.u32(&["kv_lora_rank"])?, reader.u32(&["qk_rope_head_dim"])?)
    {
        return Ok(KvCacheLayout::Latent { layers, kv_lora_rank, qk_rope_head_dim });
    }
    let hidden_size = reader.u32(&["hidden_size", "n_embd", "d_model"])?;
    let attention_heads = reader.u32(&["num_attention_heads", "n_head", "num_heads"])?.filter(|&n| n > 0);
    // Older Falcon configs mark multi-query attention with a flag instead of a head count.
    let multi_query = reader.value(&["multi_query"]).and_then(Value::as_bool).unwrap_or(false);
    let kv_heads = match reader.u32(&["num_key_value_heads", "num_kv_heads", "n_head_kv"])? {
        Some(n) if n > 0 => Some(n),
        _ if multi_query => Some(1),
        _ => attention_heads,
    }
    .ok_or_else(|| reader.invalid("no num_attention_heads or num_key_value_heads".to_string()))?;
    let head_dim = match reader.u32(&["head_dim"])? {
        Some(d) if d > 0 => d,
        _ => match (hidden_size, attention_heads) {
            (Some(hidden), Some(heads)) => hidden / heads,
            _ => {
                return Err(reader.invalid("no head_dim and no hidden_size/num_attention_heads".to_string()));
            }
        },
    };
    Ok(KvCacheLayout::Attention { layers, kv_heads, head_dim, hidden_size, attention_heads })
}

fn weight_bytes(
    hf_id: &str,
    safetensors_index_json: Option<&str>,
    safetensors_sizes: &[u64],
) -> Result<u64, CatalogError> {
    if let Some(index) = safetensors_index_json {
        let parsed: Value = serde_json::from_str(index).map_err(|e| CatalogError::InvalidConfig {
            hf_id: hf_id.to_string(),
            reason: format!("model.safetensors.index.json is not valid JSON: {e}"),
        })?;
        let total = parsed
            .get("metadata")
            .and_then(|m| m.get("total_size"))
            .and_then(|t| t.as_u64().or_else(|| t.as_str().and_then(|s| s.parse().ok())));
        if let Some(total) = total.filter(|&t| t > 0) {
            return Ok(total);
        }
    }
    let sum: u64 = safetensors_sizes.iter().sum();
    if sum == 0 {
        return Err(CatalogError::MissingWeights { hf_id: hf_id.to_string() });
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_architecture_list_parses() {
        let parsed = parse_architectures(ARCHITECTURES_YAML).expect("data/hf_architectures.yaml parses");
        assert!(parsed.supported.len() >= 60, "{}", parsed.supported.len());
    }

    #[test]
    fn every_catalog_architecture_is_supported() {
        for preset in super::super::all() {
            assert!(is_supported_architecture(&preset.architecture), "{} ({})", preset.hf_id, preset.architecture);
        }
    }

    #[test]
    fn index_total_size_wins_over_file_sizes() {
        let index = r#"{"metadata": {"total_size": 1000}, "weight_map": {}}"#;
        assert_eq!(weight_bytes("a/b", Some(index), &[5, 6]), Ok(1000));
        assert_eq!(weight_bytes("a/b", Some(r#"{"weight_map": {}}"#), &[5, 6]), Ok(11));
        assert_eq!(weight_bytes("a/b", None, &[7]), Ok(7));
        assert!(matches!(weight_bytes("a/b", None, &[]), Err(CatalogError::MissingWeights { .. })));
    }
}
