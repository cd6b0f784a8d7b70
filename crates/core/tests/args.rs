//! Container command lines (upstream-kaito.md §2.7, §2.8): exact expected commands.

use kaito_core::args::{
    self, ArgsError, CONFIG_FILE_PATH, ModelSource, PerformanceMode, TransformersOptions, VllmOptions,
};
use kaito_core::catalog;
use kaito_core::plan::{self, PlanInput};
use kaito_core::sku::{self, Cloud};
use kaito_core::{Plan, Preset, Runtime};

fn preset(name: &str) -> &'static Preset {
    catalog::lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn plan_on(preset: &Preset, sku_name: &str) -> Plan {
    let gpu = sku::lookup(Cloud::Azure, sku_name).unwrap_or_else(|| panic!("{sku_name} in catalog"));
    plan::plan(PlanInput::new(preset, gpu)).unwrap_or_else(|e| panic!("{e}"))
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()]
}

#[test]
fn single_node_vllm_command() {
    let mini = preset("phi-4-mini-instruct");
    let plan = plan_on(mini, "Standard_NC24ads_A100_v4");
    let command = args::vllm_command(mini, &plan, &VllmOptions::new("phi-4-mini-instruct")).expect("builds");
    assert_eq!(
        command,
        sh(concat!(
            "python3 /workspace/vllm/inference_api.py",
            " --allow-remote-files",
            " --chat-template=/workspace/chat_templates/tool-chat-phi4-mini.jinja",
            " --compilation-config.pass_config.fuse_allreduce_rms=False",
            " --download-dir=/workspace/weights",
            " --dtype=bfloat16",
            " --gpu-memory-utilization=0.84",
            " --kv-events-config='{\"enable_kv_cache_events\":true}'",
            " --max-model-len=auto",
            " --model=microsoft/Phi-4-mini-instruct",
            " --served-model-name=phi-4-mini-instruct",
            " --tensor-parallel-size=1",
        ))
    );
}

#[test]
fn multi_node_vllm_command() {
    // llama-3.3-70b-instruct needs 3 single-GPU A100 nodes (see tests/plan.rs): TP 1 × PP 3 over Ray.
    let llama = preset("llama-3.3-70b-instruct");
    let plan = plan_on(llama, "Standard_NC24ads_A100_v4");
    assert_eq!(plan.nodes, 3);
    let leader = args::leader_address("llama", "prod");
    let opts = VllmOptions {
        adapters_present: true,
        config_file: Some(CONFIG_FILE_PATH),
        leader_address: Some(&leader),
        ..VllmOptions::new("llama-3.3-70b-instruct")
    };
    let command = args::vllm_command(llama, &plan, &opts).expect("builds");
    let server = concat!(
        "python3 /workspace/vllm/inference_api.py",
        " --allow-remote-files",
        " --chat-template=/workspace/chat_templates/tool-chat-llama3.1-json.jinja",
        " --compilation-config.pass_config.fuse_allreduce_rms=False",
        " --distributed-executor-backend=ray",
        " --download-dir=/workspace/weights",
        " --dtype=bfloat16",
        " --enable-auto-tool-choice",
        " --enable-lora",
        " --gpu-memory-utilization=0.84",
        " --kaito-config-file=/mnt/config/inference_config.yaml",
        " --kaito-kv-cache-cpu-memory-utilization=0",
        " --kv-events-config='{\"enable_kv_cache_events\":true}'",
        " --max-model-len=auto",
        " --model=meta-llama/Llama-3.3-70B-Instruct",
        " --pipeline-parallel-size=3",
        " --served-model-name=llama-3.3-70b-instruct",
        " --tensor-parallel-size=1",
        " --tool-call-parser=llama3_json",
    );
    let expected = format!(
        "if [ \"${{POD_INDEX}}\" = \"0\" ]; then /workspace/vllm/multi-node-serving.sh leader --ray_cluster_size=3 --ray_port=6379; {server}; else /workspace/vllm/multi-node-serving.sh worker --ray_address=llama-0.llama-headless.prod.svc.cluster.local --ray_port=6379; fi"
    );
    assert_eq!(command, sh(&expected));

    let no_leader = args::vllm_command(llama, &plan, &VllmOptions::new("llama-3.3-70b-instruct"));
    assert_eq!(no_leader, Err(ArgsError::MissingLeaderAddress { nodes: 3 }));
}

#[test]
fn small_models_on_multi_gpu_nodes_run_data_parallel() {
    let phi4 = preset("phi-4");
    let plan = plan_on(phi4, "Standard_NC48ads_A100_v4");
    let flags = args::vllm_flags(phi4, &plan, &VllmOptions::new("phi-4")).expect("builds");
    assert_eq!(flags.get("data-parallel-size").map(String::as_str), Some("2"));
    assert_eq!(flags.get("tensor-parallel-size").map(String::as_str), Some("1"));
    assert_eq!(flags.get("kaito-kv-cache-cpu-memory-utilization").map(String::as_str), Some("0"));
    assert!(!flags.contains_key("pipeline-parallel-size"));
}

#[test]
fn per_model_settings_become_flags() {
    let r1 = preset("deepseek-r1-0528");
    let plan = plan_on(r1, "Standard_ND96isr_H200_v5");
    let flags = args::vllm_flags(r1, &plan, &VllmOptions::new("deepseek-r1-0528")).expect("builds");
    let get = |k: &str| flags.get(k).map(String::as_str);
    assert_eq!(get("tokenizer-mode"), Some("deepseek_v32"));
    assert_eq!(get("reasoning-parser"), Some("deepseek_r1"));
    assert_eq!(get("tool-call-parser"), Some("deepseek_v3"));
    assert_eq!(get("dtype"), Some("auto"));
    assert_eq!(get("tensor-parallel-size"), Some("8"));

    let ministral = preset("ministral-3-3b-instruct");
    let plan = plan_on(ministral, "Standard_NV36ads_A10_v5");
    let flags = args::vllm_flags(ministral, &plan, &VllmOptions::new("ministral-3-3b-instruct")).expect("builds");
    assert_eq!(flags.get("load-format").map(String::as_str), Some("mistral"));
    assert_eq!(flags.get("gpu-memory-utilization").map(String::as_str), Some("0.82"));

    // Streaming replaces the checkpoint's load format and drops the download flags.
    let streamed = VllmOptions {
        model_source: ModelSource::Streaming { url: "az://models/ministral" },
        performance_mode: PerformanceMode::Throughput,
        port: Some(args::DECODE_SIDECAR_PORT),
        revision: Some("abc123"),
        ..VllmOptions::new("ministral-3-3b-instruct")
    };
    let flags = args::vllm_flags(ministral, &plan, &streamed).expect("builds");
    let get = |k: &str| flags.get(k).map(String::as_str);
    assert_eq!(get("load-format"), Some("runai_streamer"));
    assert_eq!(get("model"), Some("az://models/ministral"));
    assert_eq!(get("performance-mode"), Some("throughput"));
    assert_eq!(get("port"), Some("5001"));
    assert_eq!(get("code-revision"), Some("abc123"));
    assert_eq!(get("download-dir"), None);

    let qwen = preset("Qwen/Qwen3.5-9B");
    let plan = plan_on(qwen, "Standard_NC24ads_A100_v4");
    let flags = args::vllm_flags(qwen, &plan, &VllmOptions::new("qwen/qwen3.5-9b")).expect("builds");
    assert_eq!(flags.get("gdn-prefill-backend").map(String::as_str), Some("triton"));
    assert_eq!(flags.get("kaito-kv-cache-cpu-memory-utilization").map(String::as_str), Some("0"));
}

#[test]
fn transformers_command() {
    let phi4 = preset("phi-4");
    let command = args::transformers_command(phi4, &TransformersOptions::new("phi-4")).expect("builds");
    assert_eq!(
        command,
        sh(concat!(
            "accelerate launch --num_processes=1 --num_machines=1 --machine_rank=0 --gpu_ids=all",
            " /workspace/tfs/inference_api.py --pipeline=text-generation --torch_dtype=bfloat16",
            " --served_model_name=phi-4 --pretrained_model_name_or_path=microsoft/phi-4 --allow_remote_files",
        ))
    );
    let r1 = preset("deepseek-r1-distill-llama-8b");
    let command = args::transformers_command(
        r1,
        &TransformersOptions { revision: Some("0123abc"), ..TransformersOptions::new("deepseek-r1-distill-llama-8b") },
    )
    .expect("builds");
    assert!(command[2].contains(" --chat_template=/workspace/chat_templates/tool-chat-deepseekr1.jinja "));
    assert!(command[2].ends_with(
        "--pretrained_model_name_or_path=deepseek-ai/DeepSeek-R1-Distill-Llama-8B --revision=0123abc --allow_remote_files"
    ));
    let oss = preset("gpt-oss-20b");
    let command = args::transformers_command(oss, &TransformersOptions::new("gpt-oss-20b")).expect("builds");
    assert!(command[2].contains("--torch_dtype=auto"));
}

#[test]
fn unsupported_runtimes_are_errors() {
    let mini = preset("phi-4-mini-instruct");
    assert_eq!(
        args::transformers_command(mini, &TransformersOptions::new("x")),
        Err(ArgsError::RuntimeUnsupported { model: "phi-4-mini-instruct".to_string(), runtime: Runtime::Transformers })
    );
    let phi4 = preset("phi-4");
    let gpu = sku::lookup(Cloud::Azure, "Standard_NC24ads_A100_v4").expect("in catalog");
    let tfs_plan =
        plan::plan(PlanInput { runtime: Runtime::Transformers, ..PlanInput::new(phi4, gpu) }).expect("planned");
    assert!(matches!(
        args::vllm_command(phi4, &tfs_plan, &VllmOptions::new("phi-4")),
        Err(ArgsError::PlanRuntimeMismatch { .. })
    ));
    assert_eq!(
        args::vllm_command(phi4, &plan_on(phi4, "Standard_NC24ads_A100_v4"), &VllmOptions::new(" ")),
        Err(ArgsError::EmptyServedModelName)
    );
    assert_eq!(
        args::transformers_command(
            phi4,
            &TransformersOptions {
                model_source: ModelSource::Streaming { url: "az://x" },
                ..TransformersOptions::new("phi-4")
            }
        ),
        Err(ArgsError::StreamingUnsupported)
    );
}
