//! Container command lines of the inference servers, as pure functions of a preset and a plan.
//!
//! Both runtimes run through `/bin/sh -c "<script>"` (the multi-node vLLM form needs a shell to branch on
//! the pod index), so every builder returns `["/bin/sh", "-c", script]`. vLLM flags are sorted by name so
//! the same inputs always give the same pod spec (and no spurious rollouts).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::catalog::{Preset, Runtime};
use crate::plan::Plan;

/// Port the inference server listens on (the Service maps 80 → 5000).
pub const INFERENCE_PORT: u16 = 5000;
/// Port of vLLM on decode pods that sit behind a routing sidecar.
pub const DECODE_SIDECAR_PORT: u16 = 5001;
/// Port of vLLM's KV-cache event stream.
pub const KV_EVENTS_PORT: u16 = 5557;
/// Port of the Ray head in multi-node deployments.
pub const RAY_PORT: u16 = 6379;
/// Where weights are downloaded or mounted.
pub const WEIGHTS_DIR: &str = "/workspace/weights";
/// Where the user's inference ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/mnt/config";
/// Key of the inference config in the user's ConfigMap.
pub const CONFIG_FILE_NAME: &str = "inference_config.yaml";
/// Full path of the mounted inference config.
pub const CONFIG_FILE_PATH: &str = "/mnt/config/inference_config.yaml";
/// Directory whose sub-directories are loaded as LoRA adapters.
pub const ADAPTERS_DIR: &str = "/mnt/adapter";
/// Directory of the chat templates shipped in the base image.
pub const CHAT_TEMPLATES_DIR: &str = "/workspace/chat_templates";
/// KAITO's vLLM wrapper.
pub const VLLM_ENTRYPOINT: &str = "/workspace/vllm/inference_api.py";
/// Script that starts the Ray leader or a worker in multi-node deployments.
pub const VLLM_MULTI_NODE_SCRIPT: &str = "/workspace/vllm/multi-node-serving.sh";
/// KAITO's transformers server.
pub const TRANSFORMERS_ENTRYPOINT: &str = "/workspace/tfs/inference_api.py";
/// vLLM's KV-cache event configuration that KAITO enables by default.
pub const KV_EVENTS_CONFIG: &str = r#"{"enable_kv_cache_events":true}"#;

/// The `kaito.sh/performance-mode` annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerformanceMode {
    /// Default; no flag is passed.
    #[default]
    Balanced,
    /// Favour latency.
    Interactivity,
    /// Favour throughput.
    Throughput,
}

impl PerformanceMode {
    /// The lowercase annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            PerformanceMode::Balanced => "balanced",
            PerformanceMode::Interactivity => "interactivity",
            PerformanceMode::Throughput => "throughput",
        }
    }
}

impl fmt::Display for PerformanceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PerformanceMode {
    type Err = ArgsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "balanced" => Ok(PerformanceMode::Balanced),
            "interactivity" => Ok(PerformanceMode::Interactivity),
            "throughput" => Ok(PerformanceMode::Throughput),
            _ => Err(ArgsError::UnknownPerformanceMode { mode: s.to_string() }),
        }
    }
}

/// Where the server gets the weights from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelSource<'a> {
    /// Download from Hugging Face at pod start into [`WEIGHTS_DIR`] (the default).
    #[default]
    HuggingFace,
    /// Stream from object storage (e.g. `az://…`) with the Run:ai streamer (vLLM only).
    Streaming {
        /// The object-storage URL.
        url: &'a str,
    },
    /// Weights already on the node at this path (`kaito.sh/use-local-weights`).
    LocalPath {
        /// Path inside the container.
        path: &'a str,
    },
}

/// Deployment-specific inputs of the vLLM command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VllmOptions<'a> {
    /// `--served-model-name`: usually the lowercased preset name.
    pub served_model_name: &'a str,
    /// LoRA adapters are mounted under [`ADAPTERS_DIR`].
    pub adapters_present: bool,
    /// Path of the mounted inference config, when the Workspace names one (usually [`CONFIG_FILE_PATH`]).
    pub config_file: Option<&'a str>,
    /// The performance-mode annotation.
    pub performance_mode: PerformanceMode,
    /// Where the weights come from.
    pub model_source: ModelSource<'a>,
    /// Commit to download (`--code-revision`), when the preset pins one.
    pub revision: Option<&'a str>,
    /// Port override (decode pods behind a routing sidecar use [`DECODE_SIDECAR_PORT`]).
    pub port: Option<u16>,
    /// DNS name of the leader pod; required when the plan spans several nodes (see [`leader_address`]).
    pub leader_address: Option<&'a str>,
}

impl<'a> VllmOptions<'a> {
    /// Options with only the served model name set: Hugging Face download, no adapters, no config.
    pub fn new(served_model_name: &'a str) -> Self {
        VllmOptions {
            served_model_name,
            adapters_present: false,
            config_file: None,
            performance_mode: PerformanceMode::Balanced,
            model_source: ModelSource::HuggingFace,
            revision: None,
            port: None,
            leader_address: None,
        }
    }
}

/// Deployment-specific inputs of the transformers command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransformersOptions<'a> {
    /// `--served_model_name`.
    pub served_model_name: &'a str,
    /// Where the weights come from (streaming is not supported by transformers).
    pub model_source: ModelSource<'a>,
    /// Commit to download (`--revision`), when the preset pins one.
    pub revision: Option<&'a str>,
}

impl<'a> TransformersOptions<'a> {
    /// Options with only the served model name set (Hugging Face download).
    pub fn new(served_model_name: &'a str) -> Self {
        TransformersOptions { served_model_name, model_source: ModelSource::HuggingFace, revision: None }
    }
}

/// Errors of command-line building. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// The preset has no command for this runtime.
    #[error("{model} cannot be served by the {runtime} runtime: use the vllm runtime")]
    RuntimeUnsupported {
        /// Preset name.
        model: String,
        /// The runtime asked for.
        runtime: Runtime,
    },
    /// The plan was made for another runtime.
    #[error("the plan was made for the {planned} runtime, not {requested}: plan again for {requested}")]
    PlanRuntimeMismatch {
        /// Runtime of the plan.
        planned: Runtime,
        /// Runtime of the command asked for.
        requested: Runtime,
    },
    /// A multi-node plan without the leader's address.
    #[error("the plan spans {nodes} nodes: pass the leader pod's DNS name (leader_address) for the Ray workers")]
    MissingLeaderAddress {
        /// Nodes in the plan.
        nodes: u32,
    },
    /// The served model name is empty.
    #[error("the served model name is empty: pass the preset name")]
    EmptyServedModelName,
    /// Transformers cannot stream weights.
    #[error("the transformers runtime cannot stream weights: use the vllm runtime or download the weights")]
    StreamingUnsupported,
    /// An unknown performance mode.
    #[error("unknown performance mode \"{mode}\": use balanced, interactivity or throughput")]
    UnknownPerformanceMode {
        /// The value as given.
        mode: String,
    },
}

/// DNS name of a multi-node deployment's leader pod: `<ws>-0.<ws>-headless.<ns>.svc.cluster.local`.
pub fn leader_address(workspace: &str, namespace: &str) -> String {
    format!("{workspace}-0.{workspace}-headless.{namespace}.svc.cluster.local")
}

/// Quotes a value for `/bin/sh` when it contains anything but plain word characters.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=,@%+".contains(c));
    if plain { value.to_string() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

/// Renders `--name=value` (or `--name` for an empty value), quoting the value for the shell.
fn render_flags(flags: &BTreeMap<String, String>) -> Vec<String> {
    flags
        .iter()
        .map(
            |(name, value)| {
                if value.is_empty() { format!("--{name}") } else { format!("--{name}={}", shell_quote(value)) }
            },
        )
        .collect()
}

/// The vLLM wrapper's flags (name without `--` → value; empty value = bare flag), sorted by name.
pub fn vllm_flags(preset: &Preset, plan: &Plan, opts: &VllmOptions<'_>) -> Result<BTreeMap<String, String>, ArgsError> {
    if !preset.supports(Runtime::Vllm) {
        return Err(ArgsError::RuntimeUnsupported { model: preset.name.clone(), runtime: Runtime::Vllm });
    }
    if plan.runtime != Runtime::Vllm {
        return Err(ArgsError::PlanRuntimeMismatch { planned: plan.runtime, requested: Runtime::Vllm });
    }
    if opts.served_model_name.trim().is_empty() {
        return Err(ArgsError::EmptyServedModelName);
    }
    let mut flags = BTreeMap::new();
    let mut set = |name: &str, value: &str| {
        flags.insert(name.to_string(), value.to_string());
    };
    let settings = &preset.vllm;

    set("served-model-name", opts.served_model_name);
    set("max-model-len", &plan.max_model_len.to_string());
    set("gpu-memory-utilization", &format!("{}", plan.gpu_memory_utilization));
    set("kv-events-config", KV_EVENTS_CONFIG);
    set("compilation-config.pass_config.fuse_allreduce_rms", "False");
    set("dtype", &preset.dtype);

    // Per-model settings first, so that the weight source below can replace the load format.
    for (name, value) in &settings.extra_args {
        set(name, value);
    }
    if let Some(mode) = &settings.tokenizer_mode {
        set("tokenizer-mode", mode);
    }
    if let Some(format) = &settings.config_format {
        set("config-format", format);
    }
    if let Some(format) = &settings.load_format {
        set("load-format", format);
    }
    if settings.trust_remote_code {
        set("trust-remote-code", "");
    }
    if let Some(dtype) = &settings.kv_cache_dtype {
        set("kv-cache-dtype", dtype);
    }
    if let Some(parser) = &preset.tool_call_parser {
        set("tool-call-parser", parser);
        set("enable-auto-tool-choice", "");
    }
    if let Some(parser) = &preset.reasoning_parser {
        set("reasoning-parser", parser);
    }
    if let Some(template) = &preset.chat_template {
        set("chat-template", &format!("{CHAT_TEMPLATES_DIR}/{template}"));
    }

    match opts.model_source {
        ModelSource::HuggingFace => {
            set("model", &preset.hf_id);
            set("download-dir", WEIGHTS_DIR);
            set("allow-remote-files", "");
        }
        ModelSource::Streaming { url } => {
            set("model", url);
            set("load-format", "runai_streamer");
        }
        ModelSource::LocalPath { path } => {
            set("model", path);
            set("load-format", "runai_streamer");
        }
    }
    if let Some(revision) = opts.revision {
        set("code-revision", revision);
    }
    if opts.adapters_present && settings.lora_allowed {
        set("enable-lora", "");
    }
    if let Some(path) = opts.config_file {
        set("kaito-config-file", path);
    }
    if opts.performance_mode != PerformanceMode::Balanced {
        set("performance-mode", opts.performance_mode.as_str());
    }
    if let Some(port) = opts.port {
        set("port", &port.to_string());
    }

    // LMCache CPU offload cannot work with hybrid KV caches, MIG slices, several replicas per pod or
    // pipeline stages on other nodes.
    if !settings.kv_cpu_offload || plan.mig || plan.data_parallel > 1 || plan.pipeline_parallel > 1 {
        set("kaito-kv-cache-cpu-memory-utilization", "0");
    }
    if plan.data_parallel > 1 {
        set("data-parallel-size", &plan.data_parallel.to_string());
    }
    set("tensor-parallel-size", &plan.tensor_parallel.to_string());
    if plan.is_multi_node() {
        set("pipeline-parallel-size", &plan.pipeline_parallel.to_string());
        set("distributed-executor-backend", "ray");
    }
    Ok(flags)
}

/// The vLLM container command: `["/bin/sh", "-c", script]`.
///
/// Single node: `python3 /workspace/vllm/inference_api.py --flag=value …`. Several nodes: pod 0 starts
/// the Ray leader and then the server; the other pods join as Ray workers at `leader_address`.
pub fn vllm_command(preset: &Preset, plan: &Plan, opts: &VllmOptions<'_>) -> Result<Vec<String>, ArgsError> {
    let flags = vllm_flags(preset, plan, opts)?;
    let mut server = vec!["python3".to_string(), VLLM_ENTRYPOINT.to_string()];
    server.extend(render_flags(&flags));
    let server = server.join(" ");
    let script = if plan.is_multi_node() {
        let leader = opts
            .leader_address
            .filter(|a| !a.trim().is_empty())
            .ok_or(ArgsError::MissingLeaderAddress { nodes: plan.nodes })?;
        format!(
            "if [ \"${{POD_INDEX}}\" = \"0\" ]; then {VLLM_MULTI_NODE_SCRIPT} leader --ray_cluster_size={nodes} --ray_port={RAY_PORT}; {server}; else {VLLM_MULTI_NODE_SCRIPT} worker --ray_address={leader} --ray_port={RAY_PORT}; fi",
            nodes = plan.nodes,
            leader = shell_quote(leader),
        )
    } else {
        server
    };
    Ok(vec!["/bin/sh".to_string(), "-c".to_string(), script])
}

/// The transformers container command: `["/bin/sh", "-c", "accelerate launch … inference_api.py …"]`.
pub fn transformers_command(preset: &Preset, opts: &TransformersOptions<'_>) -> Result<Vec<String>, ArgsError> {
    if !preset.supports(Runtime::Transformers) {
        return Err(ArgsError::RuntimeUnsupported { model: preset.name.clone(), runtime: Runtime::Transformers });
    }
    if opts.served_model_name.trim().is_empty() {
        return Err(ArgsError::EmptyServedModelName);
    }
    let torch_dtype = if preset.is_quantized() { "auto" } else { "bfloat16" };
    let mut parts: Vec<String> = [
        "accelerate launch",
        "--num_processes=1",
        "--num_machines=1",
        "--machine_rank=0",
        "--gpu_ids=all",
        TRANSFORMERS_ENTRYPOINT,
        "--pipeline=text-generation",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    parts.push(format!("--torch_dtype={torch_dtype}"));
    if preset.vllm.trust_remote_code {
        parts.push("--trust_remote_code".to_string());
    }
    if let Some(template) = &preset.chat_template {
        parts.push(format!("--chat_template={CHAT_TEMPLATES_DIR}/{template}"));
    }
    parts.push(format!("--served_model_name={}", shell_quote(opts.served_model_name)));
    match opts.model_source {
        ModelSource::HuggingFace => {
            parts.push(format!("--pretrained_model_name_or_path={}", shell_quote(&preset.hf_id)));
            if let Some(revision) = opts.revision {
                parts.push(format!("--revision={}", shell_quote(revision)));
            }
            parts.push("--allow_remote_files".to_string());
        }
        ModelSource::LocalPath { path } => {
            parts.push(format!("--pretrained_model_name_or_path={}", shell_quote(path)));
        }
        ModelSource::Streaming { .. } => return Err(ArgsError::StreamingUnsupported),
    }
    Ok(vec!["/bin/sh".to_string(), "-c".to_string(), parts.join(" ")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("microsoft/phi-4"), "microsoft/phi-4");
        assert_eq!(shell_quote("0.84"), "0.84");
        assert_eq!(shell_quote(KV_EVENTS_CONFIG), r#"'{"enable_kv_cache_events":true}'"#);
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn performance_mode_parses() {
        assert_eq!("Throughput".parse::<PerformanceMode>(), Ok(PerformanceMode::Throughput));
        assert!("fast".parse::<PerformanceMode>().is_err());
    }

    #[test]
    fn leader_address_follows_the_headless_service() {
        assert_eq!(leader_address("ws", "default"), "ws-0.ws-headless.default.svc.cluster.local");
    }
}
