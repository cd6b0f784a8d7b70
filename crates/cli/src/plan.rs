//! `kaito plan`: the sizing plan of a model on an instance type, or the smallest fitting one of a cloud.

use std::io::Write;

use kaito_core::catalog;
use kaito_core::plan::{self, Plan, PlanInput};
use kaito_core::{Cloud, sku};
use serde::Serialize;

use crate::cli::PlanArgs;
use crate::error::CliError;
use crate::output::{self, gib};

/// What `-o json|yaml` prints: the model and the plan's fields side by side.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    model: &'a str,
    hf_id: &'a str,
    cloud: Option<Cloud>,
    #[serde(flatten)]
    plan: &'a Plan,
}

/// Prints the plan; returns whether it fits.
pub fn run<W: Write>(out: &mut W, args: &PlanArgs) -> Result<bool, CliError> {
    let preset = catalog::lookup(&args.model)?;
    let (plan, cloud) = match &args.instance_type {
        Some(name) => {
            let gpu = sku::lookup_any(name).ok_or_else(|| CliError::UnknownInstanceType {
                name: name.clone(),
                hint: Cloud::ALL
                    .into_iter()
                    .find_map(|c| sku::suggest(c, name))
                    .map(|s| format!("did you mean {s}?"))
                    .unwrap_or_else(|| "use --cloud azure|aws|arc to get a recommendation".to_string()),
            })?;
            let input = PlanInput { max_model_len: args.max_model_len, ..PlanInput::new(preset, gpu) };
            (plan::plan(input)?, gpu.cloud)
        }
        None => {
            let cloud: Cloud = args.cloud.map(Into::into).unwrap_or(Cloud::Azure);
            (plan::recommend(preset, cloud, args.max_model_len)?, Some(cloud))
        }
    };
    let report = Report { model: &preset.name, hf_id: &preset.hf_id, cloud, plan: &plan };
    if output::structured(out, args.output, &report)? {
        return Ok(plan.fits);
    }
    let gpu_memory = gib(plan.gpu_memory_per_gpu_bytes);
    let headroom = if plan.headroom_bytes < 0 {
        format!("-{}", gib(plan.headroom_bytes.unsigned_abs()))
    } else {
        gib(plan.headroom_bytes.unsigned_abs())
    };
    let mut pairs = vec![
        ("model", format!("{} ({})", preset.name, preset.hf_id)),
        ("instance type", format!("{} ({}, {} × {gpu_memory})", plan.sku, plan.gpu_model, plan.gpus_per_node)),
        ("runtime", plan.runtime.to_string()),
        ("nodes", plan.nodes.to_string()),
        ("GPUs per node", plan.gpus_per_node.to_string()),
        ("total GPUs", plan.total_gpus.to_string()),
        (
            "parallelism",
            format!(
                "tensor {} × pipeline {} × data {}",
                plan.tensor_parallel, plan.pipeline_parallel, plan.data_parallel
            ),
        ),
        ("weights", gib(plan.weight_bytes)),
        ("max-model-len", plan.max_model_len.to_string()),
        ("gpu-memory-utilization", format!("{:.2}", plan.gpu_memory_utilization)),
        (
            "KV-cache budget",
            format!("{} per GPU ({} tokens per replica)", gib(plan.kv_cache_budget_bytes), plan.kv_cache_tokens),
        ),
        ("headroom", headroom),
        ("fits", if plan.fits { "yes".to_string() } else { "no".to_string() }),
    ];
    if let Some(reason) = &plan.reason {
        pairs.push(("reason", reason.clone()));
    }
    output::key_values(out, &pairs)?;
    Ok(plan.fits)
}
