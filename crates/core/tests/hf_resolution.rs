//! Offline resolution of Hugging Face models from their files (fixtures under tests/fixtures/).

use kaito_core::catalog::{self, CatalogError, KvCacheLayout, PresetSource};
use kaito_core::plan::{self, PlanInput};
use kaito_core::sku::{self, Cloud};
use kaito_core::{GIB, Runtime};

const QWEN_CONFIG: &str = include_str!("fixtures/qwen2.5-7b-instruct.config.json");
const QWEN_INDEX: &str = include_str!("fixtures/qwen2.5-7b-instruct.safetensors.index.json");
const QWEN_AWQ_CONFIG: &str = include_str!("fixtures/qwen2.5-7b-instruct-awq.config.json");
const MISTRAL_CONFIG: &str = include_str!("fixtures/mistral-7b-instruct-v0.2.config.json");
const GEMMA_CONFIG: &str = include_str!("fixtures/gemma-3-12b-it.config.json");
const DEEPSEEK_LITE_CONFIG: &str = include_str!("fixtures/deepseek-v2-lite.config.json");
const BERT_CONFIG: &str = include_str!("fixtures/bert-base-uncased.config.json");

#[test]
fn qwen2_config_with_safetensors_index() {
    let preset = catalog::resolve_from_hf_files("Qwen/Qwen2.5-7B-Instruct", QWEN_CONFIG, Some(QWEN_INDEX), &[])
        .expect("supported model");
    assert_eq!(preset.name, "qwen/qwen2.5-7b-instruct");
    assert_eq!(preset.hf_id, "Qwen/Qwen2.5-7B-Instruct");
    assert_eq!(preset.architecture, "Qwen2ForCausalLM");
    assert_eq!(preset.weight_bytes, 15_231_233_024);
    assert_eq!(preset.model_token_limit, 32_768);
    assert_eq!(preset.dtype, "bfloat16");
    assert_eq!(preset.quantization, None);
    assert_eq!(preset.runtimes, vec![Runtime::Vllm]);
    assert_eq!(preset.source, PresetSource::HuggingFace);
    assert!(preset.distributed_inference);
    assert_eq!(
        preset.kv_cache,
        KvCacheLayout::Attention {
            layers: 28,
            kv_heads: 4,
            head_dim: 128,
            hidden_size: Some(3584),
            attention_heads: Some(28),
        }
    );
    // 2 bytes × 28 layers × 2 × 4 KV heads × 128 = 57344, as for the catalog's Qwen2.5-Coder-7B.
    assert_eq!(preset.bytes_per_token(), 57_344);
    assert_eq!(preset.tool_call_parser.as_deref(), Some("hermes"));
    // 15231233024 B = 14.19 GiB → disk floor(94.19) = 94.
    assert_eq!(preset.disk_gib(), 94);

    // A resolved preset plans like a catalog one.
    let a10 = sku::lookup(Cloud::Azure, "Standard_NV36ads_A10_v5").expect("in catalog");
    let plan = plan::plan(PlanInput::new(&preset, a10)).expect("fits");
    assert_eq!(plan.nodes, 1);
}

#[test]
fn mistral_config_with_file_sizes_only() {
    let sizes = [4_943_162_336, 4_999_819_336, 4_540_516_344];
    let preset = catalog::resolve_from_hf_files("mistralai/Mistral-7B-Instruct-v0.2", MISTRAL_CONFIG, None, &sizes)
        .expect("supported model");
    assert_eq!(preset.weight_bytes, 14_483_498_016);
    assert_eq!(preset.bytes_per_token(), 131_072);
    assert_eq!(preset.kv_cache.attention_type(), "GQA");
    assert_eq!(preset.tool_call_parser.as_deref(), Some("mistral"));
    assert_eq!(preset.model_token_limit, 32_768);
}

#[test]
fn quantized_checkpoints_run_with_auto_dtype() {
    let preset = catalog::resolve_from_hf_files("Qwen/Qwen2.5-7B-Instruct-AWQ", QWEN_AWQ_CONFIG, None, &[5 * GIB])
        .expect("supported model");
    assert_eq!(preset.quantization.as_deref(), Some("awq"));
    assert_eq!(preset.dtype, "auto");
    // head_dim is absent: hidden 3584 / 28 heads = 128.
    assert_eq!(preset.bytes_per_token(), 57_344);
}

#[test]
fn multimodal_configs_are_read_from_text_config() {
    let preset = catalog::resolve_from_hf_files("google/gemma-3-12b-it", GEMMA_CONFIG, None, &[24 * GIB])
        .expect("supported model");
    assert_eq!(preset.architecture, "Gemma3ForConditionalGeneration");
    assert_eq!(preset.model_token_limit, 131_072);
    // 2 × 48 layers × 2 × 8 KV heads × 256 = 393216.
    assert_eq!(preset.bytes_per_token(), 393_216);
}

#[test]
fn latent_attention_configs_use_the_latent_size() {
    let preset =
        catalog::resolve_from_hf_files("deepseek-ai/DeepSeek-V2-Lite", DEEPSEEK_LITE_CONFIG, None, &[30 * GIB])
            .expect("supported model");
    assert_eq!(preset.kv_cache.attention_type(), "MLA");
    // 2 × 27 layers × (512 + 64) = 31104.
    assert_eq!(preset.bytes_per_token(), 31_104);
}

#[test]
fn unsupported_architecture_is_named_with_what_to_do() {
    let err = catalog::resolve_from_hf_files("google-bert/bert-base-uncased", BERT_CONFIG, None, &[440_000_000])
        .expect_err("BERT is not a vLLM text-generation model");
    assert_eq!(
        err,
        CatalogError::UnsupportedArchitecture {
            hf_id: "google-bert/bert-base-uncased".to_string(),
            architecture: "BertForMaskedLM".to_string(),
        }
    );
    let message = err.to_string();
    assert!(message.contains("BertForMaskedLM"), "{message}");
    assert!(message.contains("template workspace"), "{message}");
}

#[test]
fn broken_inputs_are_reported() {
    let resolve = |config: &str, sizes: &[u64]| catalog::resolve_from_hf_files("org/model", config, None, sizes);
    assert!(matches!(resolve("not json", &[1]), Err(CatalogError::InvalidConfig { .. })));
    assert!(matches!(resolve("{}", &[1]), Err(CatalogError::InvalidConfig { .. })));
    let no_layers = r#"{"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096}"#;
    let err = resolve(no_layers, &[1]).expect_err("no layers");
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    let no_context = r#"{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64}"#;
    let err = resolve(no_context, &[1]).expect_err("no context length");
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    assert!(matches!(resolve(MISTRAL_CONFIG, &[]), Err(CatalogError::MissingWeights { .. })));
    assert!(matches!(
        catalog::resolve_from_hf_files("not-an-id", MISTRAL_CONFIG, None, &[1]),
        Err(CatalogError::InvalidName { .. })
    ));
}

#[test]
fn falcon_multi_query_flag_means_one_kv_head() {
    let falcon = r#"{"architectures": ["FalconForCausalLM"], "hidden_size": 4544, "n_head": 71, "n_layer": 32,
        "multi_query": true, "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}"#;
    let preset = catalog::resolve_from_hf_files("tiiuae/falcon-7b", falcon, None, &[14 * GIB]).expect("supported");
    // 2 × 32 × 2 × 1 × 64 = 8192, the legacy falcon-7b value.
    assert_eq!(preset.bytes_per_token(), 8192);
    assert_eq!(preset.kv_cache.attention_type(), "MQA");
}
