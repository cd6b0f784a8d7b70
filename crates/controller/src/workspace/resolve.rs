//! Validate a Workspace and turn it into what to run (pure): the model, the GPU shape, the sizing plan and
//! the number of nodes.

use std::collections::BTreeMap;

use kaito_api::labels::{ANNOTATION_RUNTIME, RESERVED_SELECTOR_KEYS};
use kaito_api::v1beta1::{SizingPlan, Workspace};
use kaito_core::catalog::{self, Preset, Runtime};
use kaito_core::plan::{self, Plan, PlanInput};
use kaito_core::sku::{self, GpuConfig};

use crate::config::{Config, NodeProvisioner};

/// Why a Workspace cannot be deployed as written. Each message names the field and says what to do.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ResolveError {
    /// Neither or both of inference and tuning.
    #[error("exactly one of inference and tuning must be set: add an inference.preset to serve a model")]
    NoWorkload,
    /// Tuning Workspaces are not run by this controller yet.
    #[error("tuning: fine-tuning Jobs are not supported by this controller version; use an inference Workspace")]
    TuningUnsupported,
    /// Neither preset nor template.
    #[error("inference: set inference.preset.name (a catalog model) or inference.template (your own pod)")]
    NoPresetOrTemplate,
    /// The preset name does not resolve.
    #[error("inference.preset.name: {0}")]
    Preset(#[source] catalog::CatalogError),
    /// Runtime annotation with an unknown value.
    #[error("metadata.annotations[kaito.sh/runtime]: {0:?} is not a runtime: use vllm or transformers")]
    UnknownRuntime(String),
    /// The preset cannot run on the requested runtime.
    #[error(
        "metadata.annotations[kaito.sh/runtime]: {model} does not support the {runtime} runtime: remove the annotation to use vllm"
    )]
    RuntimeUnsupported {
        /// Preset name.
        model: String,
        /// Requested runtime.
        runtime: &'static str,
    },
    /// Missing instance type with a provisioner.
    #[error("resource.instanceType: required when the operator provisions nodes, e.g. Standard_NC24ads_A100_v4")]
    MissingInstanceType,
    /// Instance type not in the catalog and not accepted.
    #[error("resource.instanceType: {sku} is not a GPU instance type of {cloud}{hint}")]
    UnknownInstanceType {
        /// Requested SKU.
        sku: String,
        /// Cloud whose catalog was searched.
        cloud: String,
        /// Suggestion.
        hint: String,
    },
    /// The model does not fit.
    #[error("inference.preset.name: {0}")]
    DoesNotFit(#[source] plan::PlanError),
    /// Bring-your-own nodes lack the GPU Feature Discovery labels.
    #[error(
        "resource.labelSelector: the selected node {node} has no usable GPU labels ({reason}): install NVIDIA GPU Feature Discovery or select GPU nodes"
    )]
    ByoNodeShape {
        /// Node name.
        node: String,
        /// What was wrong.
        reason: String,
    },
}

impl ResolveError {
    /// Condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::DoesNotFit(_) => "InsufficientGPUMemory",
            ResolveError::ByoNodeShape { .. } => "NodeGPULabelsMissing",
            ResolveError::TuningUnsupported => "TuningUnsupported",
            _ => "InvalidWorkspace",
        }
    }
}

/// What a Workspace runs.
#[derive(Debug, Clone)]
pub enum Workload {
    /// A catalog model served by vLLM or transformers.
    Preset {
        /// The model.
        preset: &'static Preset,
        /// The runtime.
        runtime: Runtime,
        /// The sizing plan, when the GPU shape is known.
        plan: Option<Box<Plan>>,
    },
    /// The user's pod template.
    Template,
}

/// A Workspace resolved against the catalogs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What runs.
    pub workload: Workload,
    /// Nodes the Workspace needs (status.targetNodeCount).
    pub target_nodes: u32,
    /// GPUs to request per pod (0 when unknown: an unknown SKU or a template).
    pub gpus_per_node: u32,
    /// OS disk of each node, in GiB.
    pub disk_gib: u64,
    /// The instance type, when the operator provisions nodes.
    pub instance_type: Option<String>,
}

/// OS disk for templates and unknown models, as upstream.
pub const DEFAULT_DISK_GIB: u64 = 1024;

/// Resolves a Workspace. `byo_node_labels` are the labels of one ready selected node (bring-your-own only);
/// `max_model_len` is the `vllm.max-model-len` of the Workspace's inference ConfigMap, when it sets one.
pub fn resolve(
    ws: &Workspace,
    config: &Config,
    byo_node_labels: Option<&BTreeMap<String, String>>,
    max_model_len: Option<u32>,
) -> Result<Resolved, ResolveError> {
    let inference = match (&ws.spec.inference, &ws.spec.tuning) {
        (Some(inference), None) => inference,
        (None, Some(_)) => return Err(ResolveError::TuningUnsupported),
        _ => return Err(ResolveError::NoWorkload),
    };
    let count = ws.spec.resource.count.unwrap_or(1).max(1) as u32;
    let instance_type = match config.node_provisioner {
        NodeProvisioner::Byo => None,
        _ => Some(
            ws.spec
                .resource
                .instance_type
                .clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or(ResolveError::MissingInstanceType)?,
        ),
    };
    let gpu: Option<GpuConfig> = match (&instance_type, byo_node_labels) {
        (Some(sku_name), _) => match sku::lookup(config.cloud, sku_name) {
            Some(gpu) => Some(gpu.clone()),
            None if config.cloud == kaito_core::Cloud::Azure && sku::azure_accepts_unknown(sku_name) => None,
            None => {
                let hint = sku::suggest(config.cloud, sku_name)
                    .map(|s| format!(": did you mean {s}?"))
                    .unwrap_or_else(|| ": run `kaito plan <model> --cloud <cloud>` to pick one".into());
                return Err(ResolveError::UnknownInstanceType {
                    sku: sku_name.clone(),
                    cloud: config.cloud.to_string(),
                    hint,
                });
            }
        },
        (None, Some(labels)) => Some(sku::from_node_labels(labels).map_err(|e| ResolveError::ByoNodeShape {
            node: labels.get("kubernetes.io/hostname").cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?),
        (None, None) => None,
    };

    let Some(preset_spec) = &inference.preset else {
        if inference.template.is_none() {
            return Err(ResolveError::NoPresetOrTemplate);
        }
        return Ok(Resolved {
            workload: Workload::Template,
            target_nodes: count,
            gpus_per_node: gpu.as_ref().map_or(0, |g| g.gpu_count),
            disk_gib: DEFAULT_DISK_GIB,
            instance_type,
        });
    };
    let preset = catalog::lookup(&preset_spec.name).map_err(ResolveError::Preset)?;
    let runtime = match ws.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_RUNTIME)) {
        None => Runtime::Vllm,
        Some(value) => match value.to_ascii_lowercase().as_str() {
            "vllm" => Runtime::Vllm,
            "transformers" => Runtime::Transformers,
            _ => return Err(ResolveError::UnknownRuntime(value.clone())),
        },
    };
    if !preset.supports(runtime) {
        return Err(ResolveError::RuntimeUnsupported { model: preset.name.clone(), runtime: runtime.as_str() });
    }
    let plan = match &gpu {
        Some(gpu) => {
            let input =
                PlanInput { runtime, requested_count: Some(count), max_model_len, ..PlanInput::new(preset, gpu) };
            Some(Box::new(plan::plan(input).map_err(ResolveError::DoesNotFit)?))
        }
        None => None,
    };
    let target_nodes = match (&plan, runtime) {
        (Some(plan), Runtime::Vllm) => plan.nodes,
        _ => count,
    };
    Ok(Resolved {
        gpus_per_node: gpu.as_ref().map_or(0, |g| g.gpu_count),
        workload: Workload::Preset { preset, runtime, plan },
        target_nodes,
        disk_gib: preset.disk_gib(),
        instance_type,
    })
}

/// The selector's matchLabels without KAITO's own keys (which would select nothing a user owns).
pub fn sanitized_match_labels(ws: &Workspace) -> BTreeMap<String, String> {
    ws.spec
        .resource
        .label_selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !RESERVED_SELECTOR_KEYS.contains(&k.as_str()))
        .collect()
}

/// The plan as recorded in Workspace status.
pub fn status_plan(plan: &Plan) -> SizingPlan {
    let gib = |bytes: u64| (kaito_core::bytes_to_gib(bytes as f64) * 100.0).round() / 100.0;
    let kv_total = plan.kv_cache_budget_bytes.saturating_mul(plan.total_gpus as u64);
    SizingPlan {
        instance_type: plan.sku.clone(),
        runtime: plan.runtime.as_str().to_string(),
        nodes: plan.nodes as i32,
        gpus_per_node: plan.gpus_per_node as i32,
        gpu_memory_per_gpu_gib: gib(plan.gpu_memory_per_gpu_bytes),
        tensor_parallel: plan.tensor_parallel as i32,
        pipeline_parallel: plan.pipeline_parallel as i32,
        data_parallel: plan.data_parallel as i32,
        weights_gib: gib(plan.weight_bytes),
        kv_cache_gib: gib(kv_total),
        gpu_memory_utilization: plan.gpu_memory_utilization,
        summary: Some(format!(
            "{} node(s) of {} with {} GPU(s) each (TP {} × PP {} × DP {}); {:.1} GiB of weights, {:.1} GiB left for KV cache",
            plan.nodes,
            plan.sku,
            plan.gpus_per_node,
            plan.tensor_parallel,
            plan.pipeline_parallel,
            plan.data_parallel,
            gib(plan.weight_bytes),
            gib(kv_total)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(yaml: &str) -> Workspace {
        serde_saphyr::from_str(yaml).expect("test workspace parses")
    }

    const PHI: &str = "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: w, namespace: ns1}\nresource: {instanceType: Standard_NC24ads_A100_v4, labelSelector: {matchLabels: {apps: x, kaito.sh/workspace: other}}}\ninference: {preset: {name: phi-4-mini-instruct}}\n";

    #[test]
    fn a_small_preset_on_one_a100_needs_one_node() {
        let resolved = resolve(&workspace(PHI), &Config::default(), None, None).unwrap();
        assert_eq!(resolved.target_nodes, 1);
        assert_eq!(resolved.gpus_per_node, 1);
        assert!(matches!(resolved.workload, Workload::Preset { runtime: Runtime::Vllm, plan: Some(_), .. }));
    }

    #[test]
    fn the_configured_max_model_len_sizes_the_plan() {
        let plan_of = |len| match resolve(&workspace(PHI), &Config::default(), None, len).unwrap().workload {
            Workload::Preset { plan: Some(plan), .. } => plan,
            other => panic!("{other:?}"),
        };
        assert_eq!(plan_of(Some(8192)).max_model_len, kaito_core::plan::MaxModelLen::Explicit(8192));
        assert_eq!(plan_of(None).max_model_len, kaito_core::plan::MaxModelLen::Auto);
    }

    #[test]
    fn a_70b_model_on_a100_spans_several_nodes() {
        let ws = workspace(&PHI.replace("phi-4-mini-instruct", "llama-3.3-70b-instruct"));
        let resolved = resolve(&ws, &Config::default(), None, None).unwrap();
        assert!(resolved.target_nodes > 1, "{resolved:?}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (PHI.replace("phi-4-mini-instruct", "no-such-model"), "inference.preset.name"),
            (PHI.replace("Standard_NC24ads_A100_v4", "m5.large"), "resource.instanceType"),
            (PHI.replace("instanceType: Standard_NC24ads_A100_v4, ", ""), "resource.instanceType"),
            (PHI.replace("inference: {preset: {name: phi-4-mini-instruct}}", "inference: {}"), "inference"),
        ];
        for (yaml, field) in cases {
            let err = resolve(&workspace(&yaml), &Config::default(), None, None).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }

    #[test]
    fn reserved_keys_are_dropped_from_the_selector() {
        let labels = sanitized_match_labels(&workspace(PHI));
        assert_eq!(labels, BTreeMap::from([("apps".to_string(), "x".to_string())]));
    }

    #[test]
    fn byo_reads_the_gpu_shape_from_node_labels() {
        let ws = workspace(&PHI.replace("instanceType: Standard_NC24ads_A100_v4, ", ""));
        let config = Config { node_provisioner: NodeProvisioner::Byo, ..Config::default() };
        let labels = BTreeMap::from([
            ("nvidia.com/gpu.product".to_string(), "NVIDIA-A100-PCIE-80GB".to_string()),
            ("nvidia.com/gpu.count".to_string(), "1".to_string()),
            ("nvidia.com/gpu.memory".to_string(), "81920".to_string()),
        ]);
        let resolved = resolve(&ws, &config, Some(&labels), None).unwrap();
        assert_eq!(resolved.target_nodes, 1);
        assert!(resolved.instance_type.is_none());
        let err = resolve(&ws, &config, Some(&BTreeMap::new()), None).unwrap_err();
        assert_eq!(err.reason(), "NodeGPULabelsMissing");
    }
}
