//! Workspace admission rules (create and update).
//!
//! Rule numbers in comments refer to the create rules of the upstream reference (§1.7): 1 name, 2 inference
//! xor tuning, 3 instance type per provisioner, 4 annotations, 5 label selector, 6 preset name, 7 SKU and
//! partition with auto-provisioning, 8 bring-your-own nodes, 9 GPU memory fit, 10 runtime, 11 model access
//! secret, 12 adapters, 13 inference config, 14 partitions, 15 model streaming, 16 tuning, 17 data sources.

use std::collections::BTreeMap;

use kaito_core::catalog::{self, CatalogError, Preset, Runtime};
use kaito_core::plan::{self, PlanInput};
use kaito_core::sku::{self, GpuConfig};
use kaito_core::{GIB, PlanError};

use super::common::{
    check_data_destination, check_data_source, check_instance_type, check_label_selector, check_name_label,
    mig_profile_memory_gib, selector_as_map,
};
use super::{NodeProvisioner, Outcome, ValidationContext, annotation_field};
use crate::labels::{
    ANNOTATION_BYPASS_RESOURCE_CHECKS, ANNOTATION_MODEL_STREAMING, ANNOTATION_NODE_CLASS_NAME,
    ANNOTATION_NODE_IMAGE_FAMILY, ANNOTATION_PERFORMANCE_MODE, ANNOTATION_RUNTIME, ANNOTATION_USE_LOCAL_WEIGHTS,
};
use crate::v1alpha1;
use crate::v1beta1::{InferenceSpec, PartitionMode, PresetSpec, ResourceSpec, TuningMethod, TuningSpec, Workspace};

/// Key of the inference ConfigMap that holds the runtime settings.
pub const INFERENCE_CONFIG_KEY: &str = "inference_config.yaml";
/// Key of the tuning ConfigMap that holds the training settings.
pub const TRAINING_CONFIG_KEY: &str = "training_config.yaml";
/// CSI driver model streaming needs on Azure.
pub const BLOB_CSI_DRIVER: &str = "blob.csi.azure.com";
/// Most adapters one Workspace may load.
pub const MAX_ADAPTERS: usize = 10;
/// Default instance type the v1alpha1 CRD applies when none is given.
pub const V1ALPHA1_DEFAULT_INSTANCE_TYPE: &str = "Standard_NC24ads_A100_v4";

const TRAINING_SECTIONS: &[&str] =
    &["ModelConfig", "QuantizationConfig", "LoraConfig", "TrainingArguments", "DatasetConfig", "DataCollator"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1alpha1,
    V1beta1,
}

type Annotations = BTreeMap<String, String>;

fn annotations(ws: &Workspace) -> Annotations {
    ws.metadata.annotations.clone().unwrap_or_default()
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Validates a Workspace (`kaito.sh/v1beta1`) being created.
pub fn validate_workspace_create(ws: &Workspace, ctx: &ValidationContext) -> Outcome {
    validate_create(ws, ctx, Version::V1beta1)
}

/// Converts a `kaito.sh/v1alpha1` Workspace to v1beta1 (the schemas are field-compatible), applying the
/// v1alpha1 CRD default instance type as the API server would.
pub fn workspace_from_v1alpha1(ws: &v1alpha1::Workspace) -> Result<Workspace, String> {
    let mut value = serde_json::to_value(ws).map_err(|e| e.to_string())?;
    if let Some(object) = value.as_object_mut() {
        object.insert("apiVersion".into(), serde_json::Value::String("kaito.sh/v1beta1".into()));
    }
    let mut converted: Workspace =
        serde_json::from_value(value).map_err(|e| format!("cannot be read as kaito.sh/v1beta1: {e}"))?;
    if converted.spec.resource.instance_type.is_none() {
        converted.spec.resource.instance_type = Some(V1ALPHA1_DEFAULT_INSTANCE_TYPE.to_string());
    }
    Ok(converted)
}

/// Validates a Workspace (`kaito.sh/v1alpha1`) being created: converted to v1beta1, then the same rules,
/// without the v1beta1 deprecation warnings for `resource.count`.
pub fn validate_workspace_v1alpha1_create(ws: &v1alpha1::Workspace, ctx: &ValidationContext) -> Outcome {
    match workspace_from_v1alpha1(ws) {
        Ok(converted) => validate_create(&converted, ctx, Version::V1alpha1),
        Err(message) => {
            let mut outcome = Outcome::default();
            outcome.violation("inference.template", message);
            outcome
        }
    }
}

fn validate_create(ws: &Workspace, ctx: &ValidationContext, version: Version) -> Outcome {
    let mut out = Outcome::default();
    let annotations = annotations(ws);
    deprecation_warnings(ws, version, &mut out);

    // Rule 1.
    check_name_label(ws.metadata.name.as_deref(), &mut out);
    // Rule 2.
    match (&ws.spec.inference, &ws.spec.tuning) {
        (Some(_), Some(_)) => out.violation(
            "inference",
            "inference and tuning are both set: a Workspace either serves a model or tunes one; remove one of them",
        ),
        (None, None) => out.violation(
            "inference",
            "neither inference nor tuning is set: add inference.preset to serve a model, or tuning to fine-tune one",
        ),
        _ => {}
    }
    // Rules 3, 7 and the resource half of 14.
    check_resource(&ws.spec.resource, ctx, &mut out);
    // Rule 4.
    check_annotations(&annotations, ctx, &mut out);
    // Rule 5.
    check_label_selector(&ws.spec.resource.label_selector, "resource.labelSelector", &mut out);

    if let Some(inference) = &ws.spec.inference {
        check_inference(ws, inference, &annotations, ctx, &mut out);
    }
    if let Some(tuning) = &ws.spec.tuning {
        check_tuning(&ws.spec.resource, tuning, ctx, &mut out);
    }
    out
}

fn deprecation_warnings(ws: &Workspace, version: Version, out: &mut Outcome) {
    let resource = &ws.spec.resource;
    if resource.preferred_nodes.as_ref().is_some_and(|n| !n.is_empty()) {
        out.warn("resource.preferredNodes is deprecated and ignored: select nodes with resource.labelSelector");
    }
    if version == Version::V1beta1 && resource.count.is_some() {
        out.warn(
            "resource.count is deprecated in kaito.sh/v1beta1: the vllm runtime computes the node count from the model and instance type (status.targetNodeCount)",
        );
    }
    let presets = [
        ws.spec.inference.as_ref().and_then(|i| i.preset.as_ref()).map(|p| (p, "inference.preset")),
        ws.spec.tuning.as_ref().and_then(|t| t.preset.as_ref()).map(|p| (p, "tuning.preset")),
    ];
    for (preset, field) in presets.into_iter().flatten() {
        if preset.access_mode.is_some() {
            out.warn(format!("{field}.accessMode is deprecated and ignored: weights are downloaded from Hugging Face"));
        }
        if let Some(options) = &preset.preset_options {
            if options.image.is_some() {
                out.warn(format!(
                    "{field}.presetOptions.image is deprecated and ignored: weights are downloaded from Hugging Face"
                ));
            }
            if options.image_pull_secrets.is_some() {
                out.warn(format!(
                    "{field}.presetOptions.imagePullSecrets is deprecated and ignored: use presetOptions.modelAccessSecret for gated models"
                ));
            }
        }
    }
}

fn check_resource(resource: &ResourceSpec, ctx: &ValidationContext, out: &mut Outcome) {
    let instance_type = non_empty(resource.instance_type.as_deref());
    if ctx.provisioner.provisions_nodes() {
        match instance_type {
            None => out.violation(
                "resource.instanceType",
                format!(
                    "required when the operator provisions nodes ({}): set a GPU SKU such as Standard_NC24ads_A100_v4 (`kaito plan <model>` recommends one)",
                    ctx.provisioner
                ),
            ),
            Some(it) => check_instance_type(it, ctx.cloud, "resource.instanceType", out),
        }
        if resource.partition.is_some() {
            out.violation(
                "resource.partition",
                "GPU partitions are only for bring-your-own nodes: remove resource.partition, or run the controller with --node-provisioner=byo",
            );
        }
        return;
    }
    if let Some(it) = instance_type {
        out.violation(
            "resource.instanceType",
            format!(
                "must be empty with bring-your-own nodes (--node-provisioner=byo), found \"{it}\": remove it; nodes are found by resource.labelSelector"
            ),
        );
    }
    if let Some(partition) = &resource.partition {
        match partition.mode {
            PartitionMode::Mig => {
                if !ctx.feature_gates.enable_mig {
                    out.violation(
                        "resource.partition.mode",
                        "MIG partitions need the enableMIG feature gate: turn it on in the controller's --feature-gates, or remove resource.partition",
                    );
                }
                match non_empty(partition.profile.as_deref()) {
                    None => out.violation(
                        "resource.partition.profile",
                        "a MIG partition needs a profile: set one such as 1g.10gb or 3g.40gb",
                    ),
                    Some(profile) if mig_profile_memory_gib(profile).is_none() => out.violation(
                        "resource.partition.profile",
                        format!("\"{profile}\" is not a known MIG profile: use one such as 1g.10gb, 2g.20gb, 3g.40gb or 7g.80gb"),
                    ),
                    Some(_) => {}
                }
                if partition.count.is_some() {
                    out.violation(
                        "resource.partition.count",
                        "count is only for accelerator partitions: remove it (a MIG partition is one slice per pod)",
                    );
                }
            }
            PartitionMode::Accelerator => {
                if !ctx.feature_gates.enable_accelerator {
                    out.violation(
                        "resource.partition.mode",
                        "accelerator partitions need the enableAccelerator feature gate: turn it on in the controller's --feature-gates, or remove resource.partition",
                    );
                }
                if partition.count.is_none() {
                    out.violation(
                        "resource.partition.count",
                        "an accelerator partition needs count: set the number of accelerators per replica",
                    );
                }
                if partition.profile.is_some() {
                    out.violation(
                        "resource.partition.profile",
                        "profile is only for MIG partitions: remove it from an accelerator partition",
                    );
                }
            }
        }
    }
}

fn check_annotations(annotations: &Annotations, ctx: &ValidationContext, out: &mut Outcome) {
    if let Some(value) = annotations.get(ANNOTATION_NODE_IMAGE_FAMILY)
        && !matches!(value.to_ascii_lowercase().as_str(), "ubuntu" | "azurelinux")
    {
        out.violation(
            annotation_field(ANNOTATION_NODE_IMAGE_FAMILY),
            format!("\"{value}\" is not a node image family: use ubuntu or azurelinux"),
        );
    }
    if let Some(value) = annotations.get(ANNOTATION_PERFORMANCE_MODE)
        && !matches!(value.as_str(), "balanced" | "interactivity" | "throughput")
    {
        out.violation(
            annotation_field(ANNOTATION_PERFORMANCE_MODE),
            format!("\"{value}\" is not a performance mode: use balanced, interactivity or throughput"),
        );
    }
    if let Some(value) = annotations.get(ANNOTATION_USE_LOCAL_WEIGHTS)
        && !matches!(value.as_str(), "true" | "false")
    {
        out.violation(
            annotation_field(ANNOTATION_USE_LOCAL_WEIGHTS),
            format!("\"{value}\" must be \"true\" or \"false\""),
        );
    }
    if let Some(value) = annotations.get(ANNOTATION_RUNTIME)
        && value.parse::<Runtime>().is_err()
    {
        out.violation(
            annotation_field(ANNOTATION_RUNTIME),
            format!("\"{value}\" is not a runtime: use vllm or transformers"),
        );
    }
    if let Some(value) = annotations.get(ANNOTATION_NODE_CLASS_NAME) {
        if ctx.provisioner != NodeProvisioner::Karpenter {
            out.warn(format!(
                "{ANNOTATION_NODE_CLASS_NAME} is only used with --node-provisioner=karpenter and is ignored here"
            ));
        } else if !ctx.node_classes.is_empty() && !ctx.node_classes.iter().any(|c| c == value) {
            out.violation(
                annotation_field(ANNOTATION_NODE_CLASS_NAME),
                format!(
                    "NodeClass \"{value}\" is not configured on the controller: use one of {}",
                    ctx.node_classes.join(", ")
                ),
            );
        }
    }
}

/// The runtime a Workspace will use: the `kaito.sh/runtime` annotation (default vllm), or transformers
/// when the vLLM feature gate is off.
fn runtime_of(annotations: &Annotations, ctx: &ValidationContext) -> Runtime {
    if !ctx.feature_gates.vllm {
        return Runtime::Transformers;
    }
    annotations.get(ANNOTATION_RUNTIME).and_then(|v| v.parse().ok()).unwrap_or(Runtime::Vllm)
}

fn uses_local_weights(annotations: &Annotations) -> bool {
    annotations.get(ANNOTATION_USE_LOCAL_WEIGHTS).is_some_and(|v| v == "true")
}

/// Rule 6: the preset name resolves. `Ok(None)` for a Hugging Face id outside the catalog (resolved by the
/// controller from the model's files).
fn resolve_preset(preset: &PresetSpec, field: &str, out: &mut Outcome) -> Option<&'static Preset> {
    if preset.name.trim().is_empty() {
        out.violation(
            format!("{field}.name"),
            "required: set a catalog model (`kaito models list`) or a Hugging Face id such as org/model",
        );
        return None;
    }
    match catalog::lookup(&preset.name) {
        Ok(found) => Some(found),
        Err(CatalogError::NotInCatalog { .. }) => None,
        Err(error) => {
            out.violation(format!("{field}.name"), error.to_string());
            None
        }
    }
}

fn check_inference(
    ws: &Workspace,
    inference: &InferenceSpec,
    annotations: &Annotations,
    ctx: &ValidationContext,
    out: &mut Outcome,
) {
    let runtime = runtime_of(annotations, ctx);
    match (&inference.preset, &inference.template) {
        (Some(_), Some(_)) => out.violation(
            "inference.template",
            "inference.preset and inference.template are both set: use a preset, or your own pod template, not both",
        ),
        (None, None) => out.violation(
            "inference.preset",
            "set inference.preset (a catalog model or Hugging Face id) or inference.template (your own pod template)",
        ),
        _ => {}
    }
    check_adapters(inference, runtime, out);
    let Some(preset_spec) = &inference.preset else {
        return;
    };
    let preset = resolve_preset(preset_spec, "inference.preset", out);

    // Rule 10.
    if let Some(preset) = preset {
        if runtime == Runtime::Transformers && !preset.supports(Runtime::Transformers) {
            out.violation(
                "inference.preset.name",
                format!(
                    "{} cannot be served by the transformers runtime: remove the {ANNOTATION_RUNTIME} annotation to use vllm",
                    preset.name
                ),
            );
        }
        let has_adapters = inference.adapters.as_ref().is_some_and(|a| !a.is_empty());
        if runtime == Runtime::Vllm && has_adapters && !preset.vllm.lora_allowed {
            out.violation(
                "inference.adapters",
                format!(
                    "vLLM cannot load LoRA adapters for {}: remove the adapters or pick another model",
                    preset.name
                ),
            );
        }
    }

    // Rule 11.
    let secret = preset_spec.preset_options.as_ref().and_then(|o| non_empty(o.model_access_secret.as_deref()));
    let secret_field = "inference.preset.presetOptions.modelAccessSecret";
    if uses_local_weights(annotations) {
        if secret.is_some() {
            out.violation(
                secret_field,
                format!(
                    "weights are loaded from the node ({ANNOTATION_USE_LOCAL_WEIGHTS}: \"true\"), not downloaded, so no Hugging Face token is used: remove modelAccessSecret or the annotation"
                ),
            );
        }
    } else if let Some(preset) = preset
        && preset.hf_auth_required
        && secret.is_none()
    {
        out.violation(
            secret_field,
            format!(
                "{} is a gated Hugging Face model: create a Secret with key HF_TOKEN (a token that accepted the model's license) and set its name here",
                preset.hf_id
            ),
        );
    }

    // Rule 13.
    let max_model_len = match preset {
        Some(preset) if runtime == Runtime::Vllm => check_inference_config(inference, preset, ctx, out),
        _ => None,
    };

    // Rule 8.
    let byo = if ctx.provisioner.provisions_nodes() { None } else { check_byo_nodes(ws, ctx, out) };

    // Rules 9 and 14 (memory of a MIG slice).
    if let Some(preset) = preset
        && !annotations.contains_key(ANNOTATION_BYPASS_RESOURCE_CHECKS)
    {
        check_memory_fit(ws, preset, runtime, max_model_len, byo, ctx, out);
    }

    // Rule 15.
    let streaming_disabled =
        annotations.get(ANNOTATION_MODEL_STREAMING).is_some_and(|v| v.eq_ignore_ascii_case("disabled"));
    if ctx.feature_gates.model_streaming
        && runtime == Runtime::Vllm
        && !streaming_disabled
        && ctx.cloud == kaito_core::Cloud::Azure
        && let Some(drivers) = &ctx.csi_drivers
        && !drivers.iter().any(|d| d == BLOB_CSI_DRIVER)
    {
        out.violation(
            annotation_field(ANNOTATION_MODEL_STREAMING),
            format!(
                "model streaming needs the Azure Blob CSI driver ({BLOB_CSI_DRIVER}), which the cluster does not have: enable the driver, or set {ANNOTATION_MODEL_STREAMING}: disabled"
            ),
        );
    }
}

/// Rules 10 (vLLM and adapter strength) and 12 (adapters).
fn check_adapters(inference: &InferenceSpec, runtime: Runtime, out: &mut Outcome) {
    let Some(adapters) = &inference.adapters else {
        return;
    };
    if adapters.len() > MAX_ADAPTERS {
        out.violation(
            "inference.adapters",
            format!("{} adapters are listed; at most {MAX_ADAPTERS} can be loaded: remove some", adapters.len()),
        );
    }
    let mut seen = BTreeMap::new();
    for (i, adapter) in adapters.iter().enumerate() {
        let field = format!("inference.adapters[{i}]");
        match &adapter.source {
            None => {
                out.violation(format!("{field}.source"), "required: give the adapter's image or volumeSource and name")
            }
            Some(source) => {
                match source.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                    None => out.violation(
                        format!("{field}.source.name"),
                        "required: name the adapter (a DNS subdomain such as my-adapter)",
                    ),
                    Some(name) => {
                        if let Some(first) = seen.insert(name.to_string(), i) {
                            out.violation(
                                format!("{field}.source.name"),
                                format!("adapter name \"{name}\" is also used by inference.adapters[{first}]: give each adapter its own name"),
                            );
                        }
                    }
                }
                check_data_source(source, &format!("{field}.source"), false, out);
            }
        }
        if let Some(strength) = adapter.strength.as_deref() {
            if runtime == Runtime::Vllm && inference.preset.is_some() {
                out.violation(
                    format!("{field}.strength"),
                    "vLLM does not support adapter strength: remove strength, or use the transformers runtime",
                );
            } else {
                match strength.trim().parse::<f64>() {
                    Ok(value) if (0.0..=1.0).contains(&value) => {}
                    _ => out.violation(
                        format!("{field}.strength"),
                        format!("\"{strength}\" is not a number between 0 and 1: use e.g. \"0.5\" (default \"1.0\")"),
                    ),
                }
            }
        }
    }
}

fn positive_token_count(raw: &serde_json::Value) -> Option<u32> {
    let value = match raw {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    value.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

/// The `vllm.max-model-len` an inference ConfigMap's `data` sets, when it sets a valid one (rule 13
/// reports missing keys and malformed values; the controller sizes the plan with this).
pub fn configured_max_model_len(data: &BTreeMap<String, String>) -> Option<u32> {
    let parsed: serde_json::Value = serde_saphyr::from_str(data.get(INFERENCE_CONFIG_KEY)?).ok()?;
    positive_token_count(parsed.get("vllm")?.get("max-model-len")?)
}

/// Rule 13. Returns the valid explicit `vllm.max-model-len`, if the config is known and sets one.
fn check_inference_config(
    inference: &InferenceSpec,
    preset: &Preset,
    ctx: &ValidationContext,
    out: &mut Outcome,
) -> Option<u32> {
    let name = non_empty(inference.config.as_deref())?;
    let field = "inference.config";
    let data = match ctx.config_map(name) {
        Err(()) => {
            out.violation(
                field,
                format!("ConfigMap \"{name}\" does not exist in the Workspace's namespace: create it with a key {INFERENCE_CONFIG_KEY}"),
            );
            return None;
        }
        Ok(None) => return None,
        Ok(Some(data)) => data,
    };
    let Some(text) = data.get(INFERENCE_CONFIG_KEY) else {
        out.violation(
            field,
            format!("ConfigMap \"{name}\" has no key {INFERENCE_CONFIG_KEY}: put the runtime settings under that key"),
        );
        return None;
    };
    let parsed: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            out.violation(field, format!("{INFERENCE_CONFIG_KEY} in ConfigMap \"{name}\" is not valid YAML: {error}"));
            return None;
        }
    };
    let raw = parsed.get("vllm")?.get("max-model-len")?;
    let Some(value) = positive_token_count(raw) else {
        out.violation(
            field,
            format!("vllm.max-model-len in ConfigMap \"{name}\" is {raw}, not a positive integer: set a token count such as 8192"),
        );
        return None;
    };
    if value > preset.model_token_limit {
        let error = PlanError::MaxModelLenTooLarge {
            model: preset.name.clone(),
            requested: value,
            limit: preset.model_token_limit,
        };
        out.violation(field, format!("ConfigMap \"{name}\": {error}"));
        return None;
    }
    Some(value)
}

/// Rule 8: the selected bring-your-own nodes exist, carry GPU Feature Discovery labels and are uniform.
/// Returns their GPU shape and count when known and valid.
fn check_byo_nodes(ws: &Workspace, ctx: &ValidationContext, out: &mut Outcome) -> Option<(GpuConfig, u32)> {
    let nodes = ctx.byo_nodes.as_ref()?;
    let field = "resource.labelSelector";
    if nodes.is_empty() {
        let wanted = selector_as_map(&ws.spec.resource.label_selector)
            .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        out.violation(
            field,
            format!("no node matches the selector: label your GPU nodes (kubectl label node <node> {wanted})"),
        );
        return None;
    }
    let mut shape: Option<GpuConfig> = None;
    for (i, labels) in nodes.iter().enumerate() {
        let node = labels.get("kubernetes.io/hostname").cloned().unwrap_or_else(|| format!("#{i}"));
        match sku::from_node_labels(labels) {
            Err(error) => {
                out.violation(field, format!("selected node {node}: {error}"));
                return None;
            }
            Ok(gpu) => match &shape {
                None => shape = Some(gpu),
                Some(first)
                    if first.gpu_model != gpu.gpu_model
                        || first.gpu_count != gpu.gpu_count
                        || first.gpu_memory_per_gpu_bytes != gpu.gpu_memory_per_gpu_bytes =>
                {
                    out.violation(
                        field,
                        format!(
                            "selected nodes differ in GPUs ({} × {} {:.0} GiB versus node {node} with {} × {} {:.0} GiB): select nodes of one GPU shape",
                            first.gpu_count,
                            first.gpu_model,
                            first.gpu_memory_per_gpu_gib(),
                            gpu.gpu_count,
                            gpu.gpu_model,
                            gpu.gpu_memory_per_gpu_gib()
                        ),
                    );
                    return None;
                }
                Some(_) => {}
            },
        }
    }
    shape.map(|gpu| (gpu, u32::try_from(nodes.len()).unwrap_or(u32::MAX)))
}

/// Rule 9 (and the MIG half of rule 14): the model fits the GPUs it will get, through kaito-core's planner.
fn check_memory_fit(
    ws: &Workspace,
    preset: &Preset,
    runtime: Runtime,
    max_model_len: Option<u32>,
    byo: Option<(GpuConfig, u32)>,
    ctx: &ValidationContext,
    out: &mut Outcome,
) {
    let field = "inference.preset.name";
    let resource = &ws.spec.resource;
    let (gpu, node_limit) = if ctx.provisioner.provisions_nodes() {
        let Some(gpu) = non_empty(resource.instance_type.as_deref()).and_then(|it| sku::lookup(ctx.cloud, it)) else {
            // Unknown (but admitted) SKU, or no instance type (reported elsewhere): nothing to size against.
            return;
        };
        (gpu.clone(), None)
    } else {
        let mig_profile = resource
            .partition
            .as_ref()
            .filter(|p| p.mode == PartitionMode::Mig && ctx.feature_gates.enable_mig)
            .and_then(|p| non_empty(p.profile.as_deref()));
        match (byo, mig_profile) {
            (Some((gpu, nodes)), None) => (gpu, Some(nodes)),
            (Some((gpu, nodes)), Some(profile)) => match gpu.with_mig_profile(profile) {
                Ok(slice) => (slice, Some(nodes)),
                Err(error) => {
                    out.violation("resource.partition.profile", error.to_string());
                    return;
                }
            },
            (None, Some(profile)) => {
                // Nodes unknown: compare the weights with the slice's memory.
                if let Some(gib) = mig_profile_memory_gib(profile)
                    && preset.weight_bytes > gib * GIB
                {
                    out.violation(
                        field,
                        format!(
                            "{} needs {:.0} GiB for its weights; MIG profile {profile} has {gib} GiB: use a larger profile or whole GPUs",
                            preset.name,
                            preset.weight_gib()
                        ),
                    );
                }
                return;
            }
            (None, None) => return,
        }
    };
    if !preset.supports(runtime) {
        return; // reported by rule 10
    }
    let input = PlanInput {
        max_model_len,
        runtime,
        requested_count: resource.count.and_then(|c| u32::try_from(c).ok()),
        node_limit,
        ..PlanInput::new(preset, &gpu)
    };
    match plan::plan(input) {
        Err(PlanError::RuntimeUnsupported { .. } | PlanError::MaxModelLenTooLarge { .. }) => {}
        Err(error) => out.violation(field, error.to_string()),
        Ok(plan) if !plan.fits => {
            out.violation(field, plan.reason.unwrap_or_else(|| "the model does not fit these GPUs".to_string()))
        }
        Ok(_) => {}
    }
}

/// Rule 16 (and 17 for the tuning data).
fn check_tuning(resource: &ResourceSpec, tuning: &TuningSpec, ctx: &ValidationContext, out: &mut Outcome) {
    if tuning.method.is_none() {
        out.violation("tuning.method", "required: set lora or qlora");
    }
    if resource.count.is_some_and(|c| c > 1) {
        out.violation("resource.count", "tuning runs on one node: set count to 1 or remove it");
    }
    if resource.partition.is_some() {
        out.violation("resource.partition", "tuning cannot use GPU partitions: remove resource.partition");
    }
    match &tuning.preset {
        None => out.violation(
            "tuning.preset",
            "required: set tuning.preset.name to a model that supports tuning (TUNING column of `kaito models list`)",
        ),
        Some(spec) => {
            let resolved = resolve_preset(spec, "tuning.preset", out);
            match resolved {
                Some(preset) if !preset.tuning => out.violation(
                    "tuning.preset.name",
                    format!(
                        "{} does not support fine-tuning: pick a model with tuning support (TUNING column of `kaito models list`)",
                        preset.name
                    ),
                ),
                None if catalog::lookup(&spec.name).is_err_and(|e| matches!(e, CatalogError::NotInCatalog { .. })) => {
                    out.violation(
                        "tuning.preset.name",
                        format!(
                            "{} is not in the catalog: tuning is only available for catalog models with tuning support (`kaito models list`)",
                            spec.name.trim()
                        ),
                    )
                }
                _ => {}
            }
        }
    }
    if let Some(method) = tuning.method {
        check_tuning_config(tuning, method, ctx, out);
    }
    check_data_source(&tuning.input, "tuning.input", true, out);
    check_data_destination(&tuning.output, "tuning.output", out);
}

fn default_tuning_template(method: TuningMethod) -> &'static str {
    match method {
        TuningMethod::Lora => "lora-params-template",
        TuningMethod::Qlora => "qlora-params-template",
    }
}

fn check_tuning_config(tuning: &TuningSpec, method: TuningMethod, ctx: &ValidationContext, out: &mut Outcome) {
    let field = "tuning.config";
    let (name, data) = match non_empty(tuning.config.as_deref()) {
        Some(name) => match ctx.config_map(name) {
            Err(()) => {
                out.violation(
                    field,
                    format!("ConfigMap \"{name}\" does not exist in the Workspace's namespace: create it with a key {TRAINING_CONFIG_KEY}"),
                );
                return;
            }
            Ok(None) => return,
            Ok(Some(data)) => (name, data),
        },
        None => {
            let name = default_tuning_template(method);
            let Some(maps) = &ctx.release_config_maps else {
                return;
            };
            match maps.get(name) {
                Some(data) => (name, data),
                None => {
                    out.violation(
                        field,
                        format!("the default ConfigMap \"{name}\" is missing from the operator's namespace: reinstall the chart, or set tuning.config to your own ConfigMap"),
                    );
                    return;
                }
            }
        }
    };
    let Some(text) = data.get(TRAINING_CONFIG_KEY) else {
        out.violation(
            field,
            format!("ConfigMap \"{name}\" has no key {TRAINING_CONFIG_KEY}: put the training settings under that key"),
        );
        return;
    };
    for problem in training_config_problems(text, method) {
        out.violation(field, format!("ConfigMap \"{name}\": {problem}"));
    }
}

/// What is wrong with a `training_config.yaml` for a tuning method (empty when it is fine).
pub fn training_config_problems(text: &str, method: TuningMethod) -> Vec<String> {
    let mut problems = Vec::new();
    let parsed: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(value) => value,
        Err(error) => return vec![format!("{TRAINING_CONFIG_KEY} is not valid YAML: {error}")],
    };
    let Some(config) = parsed.get("training_config").and_then(|c| c.as_object()) else {
        return vec![format!("{TRAINING_CONFIG_KEY} must have a top-level training_config mapping")];
    };
    for key in config.keys() {
        if !TRAINING_SECTIONS.contains(&key.as_str()) {
            problems.push(format!(
                "training_config has an unknown section {key}: allowed sections are {}",
                TRAINING_SECTIONS.join(", ")
            ));
        }
    }
    let quantization = config.get("QuantizationConfig");
    let flag = |name: &str, problems: &mut Vec<String>| -> bool {
        match quantization.and_then(|q| q.get(name)) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(format!("QuantizationConfig.{name} is {other}: use true or false"));
                false
            }
        }
    };
    let four = flag("load_in_4bit", &mut problems);
    let eight = flag("load_in_8bit", &mut problems);
    if four && eight {
        problems.push("QuantizationConfig sets both load_in_4bit and load_in_8bit: keep at most one".to_string());
    }
    match method {
        TuningMethod::Lora if four || eight => problems.push(
            "lora tunes an unquantized model: set load_in_4bit and load_in_8bit to false, or use method qlora".to_string(),
        ),
        TuningMethod::Qlora if quantization.is_none() => problems.push(
            "qlora needs a QuantizationConfig section with load_in_4bit: true (or load_in_8bit: true)".to_string(),
        ),
        TuningMethod::Qlora if !four && !eight => problems.push(
            "qlora needs a quantized model: set QuantizationConfig.load_in_4bit (or load_in_8bit) to true, or use method lora"
                .to_string(),
        ),
        _ => {}
    }
    if let Some(dir) = config.get("TrainingArguments").and_then(|t| t.get("output_dir")) {
        match dir.as_str() {
            Some(path) if is_under_mnt(path) => {}
            _ => problems
                .push(format!("TrainingArguments.output_dir {dir} must be a directory under /mnt, e.g. /mnt/results")),
        }
    }
    problems
}

/// Whether an absolute path, after resolving `.` and `..`, is strictly below `/mnt`.
fn is_under_mnt(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.len() >= 2 && parts[0] == "mnt"
}

/// Validates an update of a Workspace: immutable fields, then the create rules that still apply to a
/// changed object (annotations, adapters, inference config, tuning data). An object being deleted is
/// always admitted, so finalizers can be removed.
pub fn validate_workspace_update(old: &Workspace, new: &Workspace, ctx: &ValidationContext) -> Outcome {
    let mut out = Outcome::default();
    if new.metadata.deletion_timestamp.is_some() {
        return out;
    }
    deprecation_warnings(new, Version::V1beta1, &mut out);
    let annotations = annotations(new);

    if old.spec.inference.is_some() != new.spec.inference.is_some()
        || old.spec.tuning.is_some() != new.spec.tuning.is_some()
    {
        let field = if new.spec.inference.is_some() || old.spec.inference.is_some() { "inference" } else { "tuning" };
        out.violation(field, "a Workspace cannot switch between inference and tuning: delete it and create a new one");
    }

    // Resource immutables.
    let (o, n) = (&old.spec.resource, &new.spec.resource);
    if o.count != n.count {
        out.violation("resource.count", "is immutable: create a new Workspace to change the node count");
    }
    if o.partition != n.partition {
        out.violation("resource.partition", "is immutable: create a new Workspace to change GPU partitioning");
    }
    let selectors_equal = match (selector_as_map(&o.label_selector), selector_as_map(&n.label_selector)) {
        (Ok(a), Ok(b)) => a == b,
        _ => o.label_selector == n.label_selector,
    };
    if !selectors_equal {
        out.violation("resource.labelSelector", "is immutable: create a new Workspace to select other nodes");
    }
    let (old_it, new_it) = (non_empty(o.instance_type.as_deref()), non_empty(n.instance_type.as_deref()));
    if let Some(old_it) = old_it
        && new_it != Some(old_it)
        && !(new_it.is_none() && ctx.provisioner == NodeProvisioner::Byo)
    {
        out.violation(
            "resource.instanceType",
            format!("is immutable once set (was \"{old_it}\"): create a new Workspace for another instance type"),
        );
    }

    // Inference immutables and re-validation.
    if let (Some(o), Some(n)) = (&old.spec.inference, &new.spec.inference) {
        if o.preset != n.preset {
            out.violation("inference.preset", "is immutable: create a new Workspace to serve another model");
        }
        if o.template.is_some() != n.template.is_some() {
            out.violation(
                "inference.template",
                "may be changed but not added or removed: create a new Workspace to switch between preset and template",
            );
        }
        let runtime = runtime_of(&annotations, ctx);
        check_adapters(n, runtime, &mut out);
        if let Some(spec) = &n.preset
            && let Ok(preset) = catalog::lookup(&spec.name)
            && runtime == Runtime::Vllm
        {
            check_inference_config(n, preset, ctx, &mut out);
        }
    }

    // Tuning immutables and re-validation.
    if let (Some(o), Some(n)) = (&old.spec.tuning, &new.spec.tuning) {
        if o.preset != n.preset {
            out.violation("tuning.preset", "is immutable: create a new Workspace to tune another model");
        }
        if o.method != n.method {
            out.violation("tuning.method", "is immutable: create a new Workspace to use another method");
        }
        if o.input.name != n.input.name {
            out.violation("tuning.input.name", "is immutable: keep the input's name");
        }
        check_data_source(&n.input, "tuning.input", true, &mut out);
        check_data_destination(&n.output, "tuning.output", &mut out);
    }

    let old_streaming = old.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_MODEL_STREAMING));
    if old_streaming != annotations.get(ANNOTATION_MODEL_STREAMING) {
        out.violation(
            annotation_field(ANNOTATION_MODEL_STREAMING),
            "is immutable: create a new Workspace to turn model streaming on or off",
        );
    }
    check_annotations(&annotations, ctx, &mut out);
    out
}
