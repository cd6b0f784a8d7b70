//! Sizing plans: how many nodes and GPUs a preset needs on a GPU shape, and how the model is split.
//!
//! The node count for vLLM follows upstream KAITO's estimator exactly ([`estimate_nodes`]), so that a
//! Workspace gets the same `targetNodeCount` here as upstream. The parallelism split follows upstream's
//! vLLM command builder. Everything else in a [`Plan`] (KV-cache budget, headroom) is reporting on top.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::catalog::{Preset, Runtime};
use crate::sku::{self, Cloud, GpuConfig, GpuVendor};
use crate::{GIB, bytes_to_gib};

/// Context length assumed for sizing when the user does not set `vllm.max-model-len`.
pub const DEFAULT_MAX_MODEL_LEN: u32 = 2048;
/// Weights are inflated by this factor to cover buffers loaded with them.
pub const MODEL_SIZE_FACTOR: f64 = 1.02;
/// Share of each GPU's memory the estimator counts as usable.
pub const ESTIMATOR_MEMORY_FRACTION: f64 = 0.84;
/// Per-GPU memory taken by the CUDA context, NCCL buffers and the like, before any KV cache.
pub const RUNTIME_OVERHEAD_BYTES: f64 = 2.3 * GIB as f64;
/// Extra room for activations while running the model, relative to the weights.
pub const ACTIVATION_FACTOR: f64 = 1.05;
/// vLLM `--gpu-memory-utilization` passed on most GPUs.
pub const GPU_MEMORY_UTILIZATION: f64 = 0.84;
/// vLLM `--gpu-memory-utilization` on NVIDIA A10, whose 24 GB leave less slack for the CUDA context.
pub const GPU_MEMORY_UTILIZATION_A10: f64 = 0.82;
/// Data parallelism is chosen over tensor parallelism when the weights take less than this share of
/// one GPU.
pub const DATA_PARALLEL_WEIGHT_FRACTION: f64 = 0.5;

/// The `--max-model-len` a deployment runs with: vLLM's automatic choice, or an explicit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxModelLen {
    /// Let vLLM pick the largest context that fits (`auto`); sizing assumes 2048 tokens.
    #[default]
    Auto,
    /// An explicit context length from the user's inference config.
    Explicit(u32),
}

impl MaxModelLen {
    /// The context length to size the KV cache for.
    pub fn for_estimation(self) -> u32 {
        match self {
            MaxModelLen::Auto => DEFAULT_MAX_MODEL_LEN,
            MaxModelLen::Explicit(n) => n,
        }
    }
}

impl fmt::Display for MaxModelLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxModelLen::Auto => f.write_str("auto"),
            MaxModelLen::Explicit(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for MaxModelLen {
    // `"auto"` or a number, the same spelling as the vLLM flag.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxModelLen::Auto => serializer.serialize_str("auto"),
            MaxModelLen::Explicit(n) => serializer.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for MaxModelLen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MaxModelLenVisitor;

        impl Visitor<'_> for MaxModelLenVisitor {
            type Value = MaxModelLen;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"auto\" or a positive integer")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MaxModelLen, E> {
                u32::try_from(v)
                    .ok()
                    .filter(|&n| n > 0)
                    .map(MaxModelLen::Explicit)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MaxModelLen, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<MaxModelLen, E> {
                if v.eq_ignore_ascii_case("auto") {
                    return Ok(MaxModelLen::Auto);
                }
                v.parse::<u64>()
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
                    .and_then(|n| self.visit_u64(n))
            }
        }

        deserializer.deserialize_any(MaxModelLenVisitor)
    }
}

/// What to plan: a preset on a GPU shape.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The model.
    pub preset: &'a Preset,
    /// The GPU shape of one node (catalog SKU, BYO node labels, or a MIG slice).
    pub gpu: &'a GpuConfig,
    /// Explicit `vllm.max-model-len` from the user's config; `None` means `auto` (sized for 2048).
    pub max_model_len: Option<u32>,
    /// The runtime that will serve the model.
    pub runtime: Runtime,
    /// `resource.count`: the node count for the transformers runtime (default 1); vLLM ignores it and
    /// estimates the count, as upstream does.
    pub requested_count: Option<u32>,
    /// The most nodes the caller can supply (bring-your-own: ready matching nodes). A plan needing more
    /// is returned with `fits = false`.
    pub node_limit: Option<u32>,
}

impl<'a> PlanInput<'a> {
    /// vLLM, automatic context length, no count and no node limit.
    pub fn new(preset: &'a Preset, gpu: &'a GpuConfig) -> Self {
        PlanInput { preset, gpu, max_model_len: None, runtime: Runtime::Vllm, requested_count: None, node_limit: None }
    }
}

/// A sizing plan; written into Workspace status, hence camelCase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// SKU of every node.
    pub sku: String,
    /// GPU model of the SKU.
    pub gpu_model: String,
    /// Runtime the plan was made for.
    pub runtime: Runtime,
    /// Number of nodes (the Workspace's `targetNodeCount`).
    pub nodes: u32,
    /// GPUs per node.
    pub gpus_per_node: u32,
    /// GPUs in total (nodes × GPUs per node).
    pub total_gpus: u32,
    /// Tensor-parallel degree (vLLM `--tensor-parallel-size`).
    pub tensor_parallel: u32,
    /// Pipeline-parallel degree: one stage per node for vLLM; for transformers, the GPUs of a node that
    /// `device_map=auto` spreads the layers over.
    pub pipeline_parallel: u32,
    /// Data-parallel degree: model replicas (vLLM `--data-parallel-size`; for transformers, one per node).
    pub data_parallel: u32,
    /// Size of the weights in bytes.
    pub weight_bytes: u64,
    /// Memory of one GPU in bytes.
    pub gpu_memory_per_gpu_bytes: u64,
    /// KV-cache memory left on each GPU after the runtime share, the overhead, the weights shard and
    /// activations, in bytes (0 if none is left).
    pub kv_cache_budget_bytes: u64,
    /// Tokens of KV cache one model replica can hold with that budget (across its TP × PP GPUs).
    pub kv_cache_tokens: u64,
    /// Share of GPU memory the runtime may use (vLLM `--gpu-memory-utilization`; 1.0 for transformers).
    pub gpu_memory_utilization: f64,
    /// Context length the server runs with.
    pub max_model_len: MaxModelLen,
    /// Estimator slack in bytes: usable memory of all GPUs minus what the estimator requires (vLLM), or
    /// GPU memory of one node minus the weights (transformers). Negative when the model does not fit.
    pub headroom_bytes: i64,
    /// Whether the deployment fits. False only for checks callers may bypass (transformers memory check,
    /// node limit); the reason says what to do.
    pub fits: bool,
    /// Why the plan does not fit, or a note about it.
    pub reason: Option<String>,
    /// The GPUs are MIG slices.
    pub mig: bool,
}

impl Plan {
    /// Whether the model is spread over several nodes (Ray leader/worker pods).
    pub fn is_multi_node(&self) -> bool {
        self.nodes > 1
    }
}

/// Errors of planning. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The preset cannot be served by the requested runtime.
    #[error("{model} cannot be served by the {runtime} runtime: use the vllm runtime")]
    RuntimeUnsupported {
        /// Preset name.
        model: String,
        /// The runtime asked for.
        runtime: Runtime,
    },
    /// An explicit context length is larger than the model supports.
    #[error(
        "max-model-len {requested} is larger than the {limit} tokens {model} supports: set vllm.max-model-len to at most {limit}"
    )]
    MaxModelLenTooLarge {
        /// Preset name.
        model: String,
        /// The value asked for.
        requested: u32,
        /// The model's token limit.
        limit: u32,
    },
    /// An explicit context length of zero.
    #[error("max-model-len must be a positive number of tokens: remove it to let vLLM choose (auto)")]
    MaxModelLenZero,
    /// The GPU shape has no GPUs or no memory.
    #[error(
        "{sku} reports {gpus} GPUs and {memory_gib:.0} GiB of GPU memory: check the SKU name or the node's nvidia.com/gpu.* labels"
    )]
    InvalidGpu {
        /// SKU name.
        sku: String,
        /// GPUs per node.
        gpus: u32,
        /// Node GPU memory in GiB.
        memory_gib: f64,
    },
    /// The per-GPU fixed cost (runtime overhead + KV cache for the context) exceeds what a GPU offers.
    #[error(
        "{model} cannot run on {sku} with max-model-len {max_model_len}: each GPU needs {fixed_gib:.1} GiB for the runtime and KV cache but has {available_gib:.1} GiB usable; {advice}"
    )]
    KvCacheExceedsGpu {
        /// Preset name.
        model: String,
        /// SKU name.
        sku: String,
        /// Context length used for sizing.
        max_model_len: u32,
        /// Fixed per-GPU need in GiB.
        fixed_gib: f64,
        /// Usable memory per GPU in GiB.
        available_gib: f64,
        /// What to do.
        advice: String,
    },
    /// The model needs several nodes but cannot be spread over them.
    #[error(
        "{model} needs {needed_gib:.0} GiB of GPU memory; {sku} has {node_gib:.0} GiB per node and {why}: {advice}"
    )]
    CannotSpanNodes {
        /// Preset name.
        model: String,
        /// SKU name.
        sku: String,
        /// Estimated GPU memory need in GiB.
        needed_gib: f64,
        /// GPU memory of one node in GiB.
        node_gib: f64,
        /// Why several nodes are not possible.
        why: String,
        /// What to do.
        advice: String,
    },
    /// No SKU of the cloud can serve the model.
    #[error("no {cloud} GPU SKU can serve {model} with max-model-len {max_model_len}: {advice}")]
    NoSkuFits {
        /// Preset name.
        model: String,
        /// The cloud searched.
        cloud: Cloud,
        /// Context length used for sizing.
        max_model_len: u32,
        /// What to do.
        advice: String,
    },
}

/// Intermediate values of upstream's node estimator, in bytes (floating point, as upstream computes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeEstimate {
    /// Weights × 1.02.
    pub model_bytes: f64,
    /// Node GPU memory / GPU count.
    pub per_gpu_bytes: f64,
    /// Per-GPU memory × 0.84.
    pub available_per_gpu_bytes: f64,
    /// 2.3 GiB + max-model-len × bytes-per-token / GPU count.
    pub fixed_per_gpu_bytes: f64,
    /// (available − fixed) / 1.05, or `None` when available ≤ fixed.
    pub usable_per_gpu_bytes: Option<f64>,
    /// floor(model / usable) + 1.
    pub min_gpus: Option<u64>,
    /// ceil(min GPUs / GPU count); `None` when the model cannot fit at any node count.
    pub nodes: Option<u32>,
}

/// Upstream KAITO's node estimator for vLLM (the single place the formula lives).
///
/// modelSize = weights × 1.02; perGPU = node GPU memory / GPU count; avail = perGPU × 0.84;
/// fixed = 2.3 GiB + maxModelLen × bytesPerToken / GPU count; if avail ≤ fixed there is no answer;
/// availPerGPU = (avail − fixed) / 1.05; minGPUs = floor(modelSize / availPerGPU) + 1;
/// nodes = ceil(minGPUs / GPU count).
pub fn estimate_nodes(
    weight_bytes: u64,
    bytes_per_token: u64,
    gpu_count: u32,
    total_gpu_memory_bytes: u64,
    max_model_len: u32,
) -> NodeEstimate {
    let gpus = f64::from(gpu_count.max(1));
    let model_bytes = weight_bytes as f64 * MODEL_SIZE_FACTOR;
    let per_gpu_bytes = total_gpu_memory_bytes as f64 / gpus;
    let available_per_gpu_bytes = per_gpu_bytes * ESTIMATOR_MEMORY_FRACTION;
    let fixed_per_gpu_bytes = RUNTIME_OVERHEAD_BYTES + f64::from(max_model_len) * bytes_per_token as f64 / gpus;
    let mut estimate = NodeEstimate {
        model_bytes,
        per_gpu_bytes,
        available_per_gpu_bytes,
        fixed_per_gpu_bytes,
        usable_per_gpu_bytes: None,
        min_gpus: None,
        nodes: None,
    };
    if gpu_count == 0 || available_per_gpu_bytes <= fixed_per_gpu_bytes {
        return estimate;
    }
    let usable = (available_per_gpu_bytes - fixed_per_gpu_bytes) / ACTIVATION_FACTOR;
    let min_gpus = (model_bytes / usable).floor() + 1.0;
    // A pathological shape (tiny usable memory) could ask for more nodes than fit in u32: no answer.
    let nodes = (min_gpus / gpus).ceil();
    estimate.usable_per_gpu_bytes = Some(usable);
    if min_gpus < u64::MAX as f64 {
        estimate.min_gpus = Some(min_gpus as u64);
    }
    if nodes >= 1.0 && nodes <= f64::from(u32::MAX) {
        estimate.nodes = Some(nodes as u32);
    }
    estimate
}

/// The vLLM `--gpu-memory-utilization` for a GPU shape.
pub fn gpu_memory_utilization(gpu: &GpuConfig) -> f64 {
    if gpu.is_a10() { GPU_MEMORY_UTILIZATION_A10 } else { GPU_MEMORY_UTILIZATION }
}

/// Plans a preset on a GPU shape.
///
/// vLLM: the node count comes from [`estimate_nodes`]; errors when no node count works, or when more
/// than one node is needed but the model cannot span nodes or the GPUs are MIG slices. Tensor parallel =
/// GPUs per node and pipeline parallel = nodes, except that small models (weights < 50 % of one GPU, ≥ 2
/// GPUs) run one replica per GPU (data parallel). Transformers: `requested_count` nodes (default 1),
/// each serving the whole model; the memory check is reported through `fits`.
pub fn plan(input: PlanInput<'_>) -> Result<Plan, PlanError> {
    plan_with(input, Hints::On)
}

/// Whether error messages may search the catalog for an alternative SKU (off while already searching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hints {
    On,
    Off,
}

fn plan_with(input: PlanInput<'_>, hints: Hints) -> Result<Plan, PlanError> {
    let PlanInput { preset, gpu, runtime, .. } = input;
    if !preset.supports(runtime) {
        return Err(PlanError::RuntimeUnsupported { model: preset.name.clone(), runtime });
    }
    let max_model_len = match input.max_model_len {
        None => MaxModelLen::Auto,
        Some(0) => return Err(PlanError::MaxModelLenZero),
        Some(n) if n > preset.model_token_limit => {
            return Err(PlanError::MaxModelLenTooLarge {
                model: preset.name.clone(),
                requested: n,
                limit: preset.model_token_limit,
            });
        }
        Some(n) => MaxModelLen::Explicit(n),
    };
    if gpu.gpu_count == 0 || gpu.total_gpu_memory_bytes == 0 {
        return Err(PlanError::InvalidGpu {
            sku: gpu.sku.clone(),
            gpus: gpu.gpu_count,
            memory_gib: gpu.total_gpu_memory_gib(),
        });
    }
    match runtime {
        Runtime::Vllm => plan_vllm(input, max_model_len, hints),
        Runtime::Transformers => Ok(plan_transformers(input, max_model_len, hints)),
    }
}

fn plan_vllm(input: PlanInput<'_>, max_model_len: MaxModelLen, hints: Hints) -> Result<Plan, PlanError> {
    let PlanInput { preset, gpu, .. } = input;
    let tokens = max_model_len.for_estimation();
    let estimate = estimate_nodes(
        preset.weight_bytes,
        preset.bytes_per_token(),
        gpu.gpu_count,
        gpu.total_gpu_memory_bytes,
        tokens,
    );
    let Some(nodes) = estimate.nodes else {
        let advice = match alternative(input, hints) {
            Some(sku) => format!("lower vllm.max-model-len or use {sku}"),
            None => "lower vllm.max-model-len or use GPUs with more memory".to_string(),
        };
        return Err(PlanError::KvCacheExceedsGpu {
            model: preset.name.clone(),
            sku: gpu.sku.clone(),
            max_model_len: tokens,
            fixed_gib: bytes_to_gib(estimate.fixed_per_gpu_bytes),
            available_gib: bytes_to_gib(estimate.available_per_gpu_bytes),
            advice,
        });
    };
    let gpus_per_node = gpu.gpu_count;
    let total_gpus = nodes.saturating_mul(gpus_per_node);
    if nodes > 1 && (!preset.distributed_inference || gpu.mig) {
        let why = if gpu.mig {
            "a MIG slice cannot be combined with slices on other nodes".to_string()
        } else {
            format!("{} cannot be spread over several nodes", preset.name)
        };
        let advice = match alternative(input, hints) {
            Some(sku) => format!("use {sku}, which fits on one node"),
            None if gpu.mig => "use a larger MIG profile or whole GPUs".to_string(),
            None => "use a SKU with more GPU memory per node".to_string(),
        };
        return Err(PlanError::CannotSpanNodes {
            model: preset.name.clone(),
            sku: gpu.sku.clone(),
            needed_gib: needed_gib(&estimate, total_gpus),
            node_gib: gpu.total_gpu_memory_gib(),
            why,
            advice,
        });
    }

    let small_model = (preset.weight_bytes as f64)
        < DATA_PARALLEL_WEIGHT_FRACTION * gpu.gpu_memory_per_gpu_bytes as f64
        && gpus_per_node >= 2;
    let (tensor_parallel, data_parallel) = if small_model { (1, gpus_per_node) } else { (gpus_per_node, 1) };
    let pipeline_parallel = nodes;
    let utilization = gpu_memory_utilization(gpu);

    let usable_total = f64::from(total_gpus) * estimate.available_per_gpu_bytes;
    let required_total =
        estimate.model_bytes * ACTIVATION_FACTOR + f64::from(total_gpus) * estimate.fixed_per_gpu_bytes;
    let headroom_bytes = (usable_total - required_total) as i64;

    let (fits, reason) = match input.node_limit {
        Some(limit) if nodes > limit => {
            let alternative = alternative(input, hints)
                .map(|sku| format!(" or use {sku}, which fits on one node"))
                .unwrap_or_default();
            (
                false,
                Some(format!(
                    "{} needs {:.0} GiB of GPU memory: {nodes} nodes of {} ({:.0} GiB each) but only {limit} available: add {} node(s){alternative}",
                    preset.name,
                    needed_gib(&estimate, total_gpus),
                    gpu.sku,
                    gpu.total_gpu_memory_gib(),
                    nodes - limit,
                )),
            )
        }
        _ => (true, None),
    };

    let (kv_cache_budget_bytes, kv_cache_tokens) =
        kv_budget(preset, gpu, utilization, tensor_parallel.saturating_mul(pipeline_parallel));
    Ok(Plan {
        sku: gpu.sku.clone(),
        gpu_model: gpu.gpu_model.clone(),
        runtime: Runtime::Vllm,
        nodes,
        gpus_per_node,
        total_gpus,
        tensor_parallel,
        pipeline_parallel,
        data_parallel,
        weight_bytes: preset.weight_bytes,
        gpu_memory_per_gpu_bytes: gpu.gpu_memory_per_gpu_bytes,
        kv_cache_budget_bytes,
        kv_cache_tokens,
        gpu_memory_utilization: utilization,
        max_model_len,
        headroom_bytes,
        fits,
        reason,
        mig: gpu.mig,
    })
}

fn plan_transformers(input: PlanInput<'_>, max_model_len: MaxModelLen, hints: Hints) -> Plan {
    let PlanInput { preset, gpu, .. } = input;
    // resource.count is the node count for transformers; 0 is treated as the CRD default.
    let nodes = input.requested_count.unwrap_or(1).max(1);
    let gpus_per_node = gpu.gpu_count;
    let node_bytes = gpu.total_gpu_memory_bytes;
    let headroom_bytes = node_bytes as i64 - preset.weight_bytes as i64;

    let alternative = || {
        alternative(input, hints)
            .map(|sku| format!("use {sku}"))
            .unwrap_or_else(|| "use a SKU with more GPU memory per node".to_string())
    };
    // Upstream's admission check compares count × node memory with the weights, then rejects a model that
    // needs more than one node's memory because transformers cannot span nodes.
    let reason = if u64::from(nodes).saturating_mul(node_bytes) < preset.weight_bytes {
        Some(format!(
            "Insufficient total GPU memory: {} needs {:.0} GiB for its weights; {nodes} × {} has {:.0} GiB: {}, or the vllm runtime",
            preset.name,
            preset.weight_gib(),
            gpu.sku,
            f64::from(nodes) * gpu.total_gpu_memory_gib(),
            alternative(),
        ))
    } else if node_bytes < preset.weight_bytes {
        Some(format!(
            "Multi-node distributed inference is not supported with Huggingface Transformers runtime: {} needs {:.0} GiB for its weights and {} has {:.0} GiB per node: {}, or the vllm runtime",
            preset.name,
            preset.weight_gib(),
            gpu.sku,
            gpu.total_gpu_memory_gib(),
            alternative(),
        ))
    } else {
        None
    };
    let (kv_cache_budget_bytes, kv_cache_tokens) = kv_budget(preset, gpu, 1.0, gpus_per_node);
    Plan {
        sku: gpu.sku.clone(),
        gpu_model: gpu.gpu_model.clone(),
        runtime: Runtime::Transformers,
        nodes,
        gpus_per_node,
        total_gpus: nodes.saturating_mul(gpus_per_node),
        tensor_parallel: 1,
        pipeline_parallel: gpus_per_node,
        data_parallel: nodes,
        weight_bytes: preset.weight_bytes,
        gpu_memory_per_gpu_bytes: gpu.gpu_memory_per_gpu_bytes,
        kv_cache_budget_bytes,
        kv_cache_tokens,
        gpu_memory_utilization: 1.0,
        max_model_len,
        headroom_bytes,
        fits: reason.is_none(),
        reason,
        mig: gpu.mig,
    }
}

/// Estimated raw GPU memory the deployment needs, for messages: what the estimator requires of the
/// given GPUs, scaled back from the 84 % usable share.
fn needed_gib(estimate: &NodeEstimate, gpus: u32) -> f64 {
    let required = estimate.model_bytes * ACTIVATION_FACTOR + f64::from(gpus) * estimate.fixed_per_gpu_bytes;
    bytes_to_gib(required / ESTIMATOR_MEMORY_FRACTION)
}

/// Per-GPU KV-cache budget and the tokens one replica holds, for a model sharded over `shards` GPUs.
fn kv_budget(preset: &Preset, gpu: &GpuConfig, utilization: f64, shards: u32) -> (u64, u64) {
    let shards = shards.max(1);
    let weights_share = preset.weight_bytes as f64 * MODEL_SIZE_FACTOR * ACTIVATION_FACTOR / f64::from(shards);
    let budget = gpu.gpu_memory_per_gpu_bytes as f64 * utilization - RUNTIME_OVERHEAD_BYTES - weights_share;
    let budget = budget.max(0.0);
    let tokens = match preset.bytes_per_token() {
        0 => 0,
        per_token => (budget * f64::from(shards) / per_token as f64).floor() as u64,
    };
    (budget as u64, tokens)
}

/// An SKU of the same cloud that serves the model on one node, for error advice.
fn alternative(input: PlanInput<'_>, hints: Hints) -> Option<String> {
    if hints == Hints::Off {
        return None;
    }
    let cloud = input.gpu.cloud?;
    best_plan(input.preset, cloud, input.max_model_len, input.runtime)
        .filter(|p| p.nodes == 1 && p.sku != input.gpu.sku)
        .map(|p| p.sku)
}

/// The smallest-fitting plan over a cloud's recommendable SKUs (NVIDIA, not legacy).
fn best_plan(preset: &Preset, cloud: Cloud, max_model_len: Option<u32>, runtime: Runtime) -> Option<Plan> {
    let candidates =
        sku::all(cloud).iter().filter(|gpu| !gpu.legacy && gpu.vendor == GpuVendor::Nvidia).filter_map(|gpu| {
            let input = PlanInput {
                max_model_len,
                runtime,
                // Transformers serves on one node; ask for exactly that.
                requested_count: Some(1),
                ..PlanInput::new(preset, gpu)
            };
            let plan = plan_with(input, Hints::Off).ok()?;
            plan.fits.then_some((plan, gpu.total_gpu_memory_bytes))
        });
    candidates
        .min_by(|(a, a_node_bytes), (b, b_node_bytes)| compare_plans(a, *a_node_bytes, b, *b_node_bytes))
        .map(|(plan, _)| plan)
}

/// Fewest nodes, then least total GPU memory, then fewest GPUs, then SKU name.
fn compare_plans(a: &Plan, a_node_bytes: u64, b: &Plan, b_node_bytes: u64) -> Ordering {
    let total = |plan: &Plan, node_bytes: u64| u128::from(plan.nodes) * u128::from(node_bytes);
    a.nodes
        .cmp(&b.nodes)
        .then_with(|| total(a, a_node_bytes).cmp(&total(b, b_node_bytes)))
        .then_with(|| a.total_gpus.cmp(&b.total_gpus))
        .then_with(|| a.sku.cmp(&b.sku))
}

/// The smallest SKU of `cloud` that serves `preset` with vLLM: fewest nodes first, then least total GPU
/// memory, then fewest GPUs, then name. Legacy and non-NVIDIA SKUs are skipped.
pub fn recommend(preset: &Preset, cloud: Cloud, max_model_len: Option<u32>) -> Result<Plan, PlanError> {
    if let Some(n) = max_model_len {
        if n == 0 {
            return Err(PlanError::MaxModelLenZero);
        }
        if n > preset.model_token_limit {
            return Err(PlanError::MaxModelLenTooLarge {
                model: preset.name.clone(),
                requested: n,
                limit: preset.model_token_limit,
            });
        }
    }
    best_plan(preset, cloud, max_model_len, Runtime::Vllm).ok_or_else(|| PlanError::NoSkuFits {
        model: preset.name.clone(),
        cloud,
        max_model_len: max_model_len.unwrap_or(DEFAULT_MAX_MODEL_LEN),
        advice: if max_model_len.is_some() {
            "lower vllm.max-model-len, or bring your own nodes with more GPU memory".to_string()
        } else {
            "bring your own nodes with more GPU memory".to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_model_len_serializes_as_auto_or_number() {
        assert_eq!(serde_json::to_string(&MaxModelLen::Auto).ok().as_deref(), Some("\"auto\""));
        assert_eq!(serde_json::to_string(&MaxModelLen::Explicit(4096)).ok().as_deref(), Some("4096"));
        for (text, expected) in [
            ("\"auto\"", MaxModelLen::Auto),
            ("\"AUTO\"", MaxModelLen::Auto),
            ("8192", MaxModelLen::Explicit(8192)),
            ("\"8192\"", MaxModelLen::Explicit(8192)),
        ] {
            assert_eq!(serde_json::from_str::<MaxModelLen>(text).ok(), Some(expected), "{text}");
        }
        for bad in ["0", "-1", "\"big\"", "1.5", "4294967296"] {
            assert!(serde_json::from_str::<MaxModelLen>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn estimator_has_no_answer_when_fixed_cost_exceeds_a_gpu() {
        // 8 GiB GPU: avail = 6.72 GiB. 2.3 GiB + 1,000,000 tokens × 8192 B ≈ 2.3 + 7.63 GiB > 6.72 GiB.
        let estimate = estimate_nodes(GIB, 8192, 1, 8 * GIB, 1_000_000);
        assert_eq!(estimate.nodes, None);
        assert_eq!(estimate.usable_per_gpu_bytes, None);
        let zero_gpus = estimate_nodes(GIB, 8192, 0, 8 * GIB, 2048);
        assert_eq!(zero_gpus.nodes, None);
    }
}
