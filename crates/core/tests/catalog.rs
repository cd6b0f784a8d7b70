//! Catalog contents against the upstream tables (upstream-kaito.md §3.2, §3.3, §1.7) and lookups.

use kaito_core::catalog::{self, CatalogError, KvCacheLayout, PresetSource};
use kaito_core::{GIB, Runtime};

/// Rows of the curated catalog table (§3.2).
const CATALOG_ROWS: usize = 60;
/// Rows of §3.2 with a legacy alias.
const LEGACY_ALIASES: usize = 25;
/// phi-2, four Falcon presets, six Llama-2 presets.
const DEPRECATED_NAMES: usize = 11;

fn preset(name: &str) -> &'static kaito_core::Preset {
    catalog::lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn catalog_has_every_row_of_the_upstream_table() {
    assert_eq!(catalog::all().len(), CATALOG_ROWS);
    assert_eq!(catalog::aliases().len(), LEGACY_ALIASES);
    assert_eq!(catalog::deprecated().len(), DEPRECATED_NAMES);
    // Column counts of the table: TFS = Y, Tune = Y, Auth = Y.
    let count = |f: fn(&kaito_core::Preset) -> bool| catalog::all().iter().filter(|p| f(p)).count();
    assert_eq!(count(|p| p.supports(Runtime::Transformers)), 20);
    assert_eq!(count(|p| p.tuning), 10);
    assert_eq!(count(|p| p.hf_auth_required), 2);
    assert_eq!(count(|p| p.quantization.is_some()), 24);
}

#[test]
fn every_preset_is_servable_by_vllm_and_well_formed() {
    let mut names = std::collections::HashSet::new();
    for p in catalog::all() {
        assert!(p.supports(Runtime::Vllm), "{}", p.hf_id);
        assert!(p.distributed_inference, "{}", p.hf_id);
        assert_eq!(p.source, PresetSource::Catalog);
        assert!(p.weight_bytes > GIB, "{}", p.hf_id);
        assert!(p.bytes_per_token() > 0, "{}", p.hf_id);
        assert!(p.model_token_limit >= 4096, "{}", p.hf_id);
        assert!(names.insert(p.name.clone()), "duplicate name {}", p.name);
        // dtype is auto exactly for quantized checkpoints.
        assert_eq!(p.dtype == "auto", p.is_quantized(), "{}", p.hf_id);
        // Stated KV sizes must say what was assumed.
        if matches!(p.kv_cache, KvCacheLayout::Stated { .. }) {
            assert!(p.note.as_deref().is_some_and(|n| n.contains("assumed")), "{}", p.hf_id);
        }
        // Every preset resolves by its own id and name.
        assert_eq!(catalog::lookup(&p.hf_id).map(|q| &q.hf_id), Ok(&p.hf_id));
        assert_eq!(catalog::lookup(&p.name).map(|q| &q.hf_id), Ok(&p.hf_id));
    }
}

#[test]
fn selected_rows_match_the_table() {
    let phi4 = preset("phi-4");
    assert_eq!(phi4.hf_id, "microsoft/phi-4");
    assert_eq!(phi4.architecture, "Phi3ForCausalLM");
    assert_eq!(phi4.weight_bytes, 29_323_889_214); // 27.31 GiB, rounded up
    assert_eq!(phi4.disk_gib(), 107);
    assert_eq!(phi4.model_token_limit, 16384);
    assert_eq!(phi4.runtimes, vec![Runtime::Vllm, Runtime::Transformers]);
    assert!(phi4.tuning && !phi4.hf_auth_required);
    assert_eq!(phi4.tool_call_parser, None);

    let mini = preset("phi-4-mini-instruct");
    assert_eq!(mini.chat_template.as_deref(), Some("tool-chat-phi4-mini.jinja"));
    assert_eq!(mini.runtimes, vec![Runtime::Vllm]);
    assert_eq!(mini.disk_gib(), 87);

    let llama70 = preset("llama-3.3-70b-instruct");
    assert_eq!(llama70.hf_id, "meta-llama/Llama-3.3-70B-Instruct");
    assert!(llama70.hf_auth_required);
    assert_eq!(llama70.tool_call_parser.as_deref(), Some("llama3_json"));
    assert_eq!(llama70.chat_template.as_deref(), Some("tool-chat-llama3.1-json.jinja"));
    assert_eq!(llama70.disk_gib(), 211);

    let oss = preset("gpt-oss-120b");
    assert_eq!(oss.quantization.as_deref(), Some("mxfp4"));
    assert_eq!(oss.dtype, "auto");
    assert_eq!(oss.reasoning_parser.as_deref(), Some("openai_gptoss"));
    assert_eq!(oss.disk_gib(), 201);
    assert!(!oss.vllm.kv_cpu_offload);

    let v3 = preset("deepseek-v3-0324");
    assert_eq!(v3.reasoning_parser.as_deref(), Some("deepseek_v3"));
    assert_eq!(v3.vllm.tokenizer_mode.as_deref(), Some("deepseek_v32"));
    assert_eq!(v3.disk_gib(), 721);
    assert_eq!(v3.kv_cache.attention_type(), "MLA");

    let ministral = preset("ministral-3-8b-instruct");
    assert_eq!(ministral.vllm.load_format.as_deref(), Some("mistral"));
    assert_eq!(ministral.vllm.config_format.as_deref(), Some("mistral"));
    assert_eq!(ministral.vllm.tokenizer_mode.as_deref(), Some("mistral"));
    assert_eq!(ministral.model_token_limit, 262_144);

    let v4 = preset("deepseek-ai/DeepSeek-V4-Pro");
    assert_eq!(v4.disk_gib(), 885);
    assert_eq!(v4.vllm.kv_cache_dtype.as_deref(), Some("fp8"));
    assert_eq!(v4.vllm.tokenizer_mode.as_deref(), Some("deepseek_v4"));
    assert!(v4.vllm.deep_gemm && v4.vllm.cuda_toolkit);
    assert_eq!(v4.model_token_limit, 1_048_576);

    let qwen35 = preset("Qwen/Qwen3.5-2B");
    assert_eq!(qwen35.name, "qwen/qwen3.5-2b");
    assert!(qwen35.aliases.is_empty());
    assert_eq!(qwen35.vllm.extra_args.get("gdn-prefill-backend").map(String::as_str), Some("triton"));
    let minimax = preset("MiniMaxAI/MiniMax-M2.7");
    assert_eq!(minimax.vllm.extra_args.get("enable-expert-parallel").map(String::as_str), Some(""));
    assert_eq!(minimax.reasoning_parser.as_deref(), Some("minimax_m2_append_think"));
    let glm = preset("zai-org/GLM-5.2-FP8");
    assert_eq!(glm.disk_gib(), 783);
    assert_eq!(glm.vllm.kv_cache_dtype.as_deref(), Some("fp8"));
}

#[test]
fn attention_shapes_reproduce_the_legacy_bytes_per_token() {
    // §3.3 bytes/token of the hand-written v0.10 presets, which used the same formula.
    // (gemma-3 and gpt-oss are left out: their v0.10 values were computed differently.)
    let legacy = [
        ("phi-4", 204_800),
        ("phi-4-mini-instruct", 131_072),
        ("phi-3-mini-4k-instruct", 393_216),
        ("phi-3-mini-128k-instruct", 393_216),
        ("phi-3-medium-4k-instruct", 204_800),
        ("phi-3-medium-128k-instruct", 204_800),
        ("phi-3.5-mini-instruct", 393_216),
        ("qwen2.5-coder-7b-instruct", 57_344),
        ("qwen2.5-coder-32b-instruct", 262_144),
        ("mistral-7b", 131_072),
        ("mistral-7b-instruct", 131_072),
        ("ministral-3-3b-instruct", 106_496),
        ("ministral-3-8b-instruct", 139_264),
        ("ministral-3-14b-instruct", 163_840),
        ("mistral-large-3-675b-instruct", 70_272),
        ("deepseek-r1-distill-llama-8b", 131_072),
        ("deepseek-r1-distill-qwen-14b", 196_608),
        ("deepseek-r1-0528", 70_272),
        ("deepseek-v3-0324", 70_272),
        ("llama-3.1-8b-instruct", 131_072),
        ("llama-3.3-70b-instruct", 327_680),
    ];
    for (name, bytes) in legacy {
        assert_eq!(preset(name).bytes_per_token(), bytes, "{name}");
    }
}

#[test]
fn lookup_is_case_insensitive_over_aliases_and_ids() {
    assert_eq!(preset("PHI-4").hf_id, "microsoft/phi-4");
    assert_eq!(preset("  Phi-4  ").hf_id, "microsoft/phi-4");
    assert_eq!(preset("microsoft/PHI-4-MINI-INSTRUCT").name, "phi-4-mini-instruct");
    assert_eq!(preset("gemma-3-4b-instruct").hf_id, "google/gemma-3-4b-it");
    assert_eq!(preset("mistral-7b").hf_id, "mistralai/Mistral-7B-v0.3");
    assert_eq!(preset("mistralai/mistral-7b-v0.3").name, "mistral-7b");
}

#[test]
fn deprecated_names_are_rejected_with_upstreams_message() {
    for name in ["phi-2", "falcon-7b", "Falcon-40B-Instruct", "llama-2-7b-chat"] {
        let err = catalog::lookup(name).expect_err(name);
        assert_eq!(err, CatalogError::Deprecated { name: name.to_string() });
        assert_eq!(err.to_string(), format!("Model {name} is deprecated and no longer supported"));
    }
}

#[test]
fn unknown_names_point_at_the_model_list() {
    let err = catalog::lookup("phi-5").expect_err("unknown");
    assert_eq!(err, CatalogError::Unknown { name: "phi-5".to_string() });
    assert!(err.to_string().contains("kaito models list"), "{err}");
    assert!(matches!(catalog::lookup(""), Err(CatalogError::Unknown { .. })));
}

#[test]
fn ids_outside_the_catalog_are_left_to_offline_resolution() {
    assert_eq!(
        catalog::lookup("Qwen/Qwen2.5-7B-Instruct"),
        Err(CatalogError::NotInCatalog { hf_id: "Qwen/Qwen2.5-7B-Instruct".to_string() })
    );
    for bad in ["/model", "org/", "a/b/c", " / "] {
        assert!(matches!(catalog::lookup(bad), Err(CatalogError::InvalidName { .. })), "{bad}");
    }
}

#[test]
fn preset_json_includes_the_derived_sizes() {
    let json = serde_json::to_value(preset("phi-4")).expect("serializes");
    assert_eq!(json["hfId"], "microsoft/phi-4");
    assert_eq!(json["diskGib"], 107);
    assert_eq!(json["bytesPerToken"], 204_800);
    assert_eq!(json["attentionType"], "GQA");
    assert_eq!(json["runtimes"], serde_json::json!(["vllm", "transformers"]));
    assert_eq!(json["kvCache"]["kind"], "attention");
    assert_eq!(json["kvCache"]["kvHeads"], 10);
}
