//! Sizing plans: the node count against an independent transcription of upstream's estimator over the
//! whole catalog × SKU cross product, hand-computed rows, recommendations, errors and properties.

use kaito_core::catalog::{self, KvCacheLayout};
use kaito_core::plan::{self, MaxModelLen, PlanError, PlanInput};
use kaito_core::sku::{self, Cloud, GpuConfig, GpuVendor};
use kaito_core::{GIB, Preset, Runtime};
use proptest::prelude::*;

/// upstream-kaito.md §2.3, transcribed line by line (deliberately not sharing code with the crate).
/// Returns `None` where upstream reports an error because the fixed cost exceeds the usable memory.
fn upstream_estimate(
    weights_bytes: f64,
    bytes_per_token: f64,
    sku_gpu_mem_bytes: f64,
    gpu_count: f64,
    max_model_len: f64,
) -> Option<u64> {
    let model_size = weights_bytes * 1.02;
    let per_gpu = sku_gpu_mem_bytes / gpu_count;
    let avail = per_gpu * 0.84;
    let fixed = 2.3 * 1024.0 * 1024.0 * 1024.0 + max_model_len * bytes_per_token / gpu_count;
    if avail <= fixed {
        return None;
    }
    let avail_per_gpu = (avail - fixed) / 1.05;
    let min_gpus = (model_size / avail_per_gpu).floor() + 1.0;
    Some((min_gpus / gpu_count).ceil() as u64)
}

fn every_sku() -> impl Iterator<Item = &'static GpuConfig> {
    Cloud::ALL.into_iter().flat_map(sku::all)
}

fn gpu(cloud: Cloud, name: &str) -> &'static GpuConfig {
    sku::lookup(cloud, name).unwrap_or_else(|| panic!("{name} in catalog"))
}

fn preset(name: &str) -> &'static Preset {
    catalog::lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn node_count_equals_upstream_over_the_whole_cross_product() {
    let mut compared = 0;
    let mut errors = 0;
    for preset in catalog::all() {
        for gpu in every_sku() {
            for max_model_len in [None, Some(8192.min(preset.model_token_limit)), Some(preset.model_token_limit)] {
                let expected = upstream_estimate(
                    preset.weight_bytes as f64,
                    preset.bytes_per_token() as f64,
                    gpu.total_gpu_memory_bytes as f64,
                    f64::from(gpu.gpu_count),
                    f64::from(max_model_len.unwrap_or(2048)),
                );
                let input = PlanInput { max_model_len, ..PlanInput::new(preset, gpu) };
                match (plan::plan(input), expected) {
                    (Ok(p), Some(nodes)) => {
                        assert_eq!(u64::from(p.nodes), nodes, "{} on {} ({max_model_len:?})", preset.name, gpu.sku);
                        assert_eq!(p.total_gpus, p.nodes * gpu.gpu_count);
                        assert!(p.fits);
                    }
                    (Err(PlanError::KvCacheExceedsGpu { .. }), None) => errors += 1,
                    (got, want) => {
                        panic!("{} on {} ({max_model_len:?}): got {got:?}, upstream {want:?}", preset.name, gpu.sku)
                    }
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 60 * (29 + 35 + 8) * 3);
    // Long contexts of big models do not fit small GPUs at all; make sure both branches were exercised.
    assert!(errors > 0 && errors < compared);
}

#[test]
fn hand_computed_rows() {
    // phi-4-mini-instruct on Standard_NC24ads_A100_v4 (1 × 80 GiB), max-model-len 2048:
    //   model = 7.15 × 1.02 = 7.293 GiB; avail = 80 × 0.84 = 67.2 GiB;
    //   fixed = 2.3 GiB + 2048 × 131072 B = 2.3 + 0.25 = 2.55 GiB; usable = (67.2 − 2.55) / 1.05 = 61.57 GiB;
    //   min GPUs = floor(7.293 / 61.57) + 1 = 1 → 1 node, TP 1.
    let p = plan::plan(PlanInput::new(preset("phi-4-mini-instruct"), gpu(Cloud::Azure, "Standard_NC24ads_A100_v4")))
        .expect("fits");
    assert_eq!((p.nodes, p.tensor_parallel, p.pipeline_parallel, p.data_parallel), (1, 1, 1, 1));
    assert_eq!(p.max_model_len, MaxModelLen::Auto);
    assert_eq!(p.gpu_memory_utilization, 0.84);

    // llama-3.3-70b-instruct on Standard_NV36ads_A10_v5 (1 × 24 GiB):
    //   model = 131.42 × 1.02 = 134.048 GiB; avail = 20.16 GiB; fixed = 2.3 + 2048 × 327680 B = 2.3 + 0.625
    //   = 2.925 GiB; usable = (20.16 − 2.925) / 1.05 = 16.414 GiB; 134.048 / 16.414 = 8.17 → 9 GPUs → 9 nodes.
    let p = plan::plan(PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_NV36ads_A10_v5")))
        .expect("fits over nodes");
    assert_eq!((p.nodes, p.tensor_parallel, p.pipeline_parallel), (9, 1, 9));
    assert_eq!(p.gpu_memory_utilization, 0.82);

    //   on Standard_NV72ads_A10_v5 (2 × 24 GiB): fixed = 2.3 + 0.625 / 2 = 2.6125 GiB;
    //   usable = (20.16 − 2.6125) / 1.05 = 16.712 GiB; 134.048 / 16.712 = 8.02 → 9 GPUs → ceil(9 / 2) = 5 nodes.
    let p = plan::plan(PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_NV72ads_A10_v5")))
        .expect("fits over nodes");
    assert_eq!((p.nodes, p.tensor_parallel, p.pipeline_parallel, p.total_gpus), (5, 2, 5, 10));

    //   on Standard_NC24ads_A100_v4: usable = (67.2 − 2.925) / 1.05 = 61.214 GiB; 134.048 / 61.214 = 2.19
    //   → 3 GPUs → 3 nodes.
    let p = plan::plan(PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_NC24ads_A100_v4")))
        .expect("fits over nodes");
    assert_eq!(p.nodes, 3);

    //   on Standard_ND96asr_A100_v4 (8 × 40 GiB): avail 33.6; fixed = 2.3 + 0.625 / 8 = 2.378;
    //   usable = 29.735 GiB; 134.048 / 29.735 = 4.51 → 5 GPUs → 1 node with TP 8.
    let p = plan::plan(PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_ND96asr_A100_v4")))
        .expect("fits");
    assert_eq!((p.nodes, p.tensor_parallel, p.data_parallel), (1, 8, 1));

    // phi-4 on Standard_NC48ads_A100_v4 (2 × 80 GiB): 27.31 GiB < 50 % of 80 GiB → one replica per GPU.
    let p = plan::plan(PlanInput::new(preset("phi-4"), gpu(Cloud::Azure, "Standard_NC48ads_A100_v4"))).expect("fits");
    assert_eq!((p.nodes, p.tensor_parallel, p.data_parallel, p.pipeline_parallel), (1, 1, 2, 1));

    // deepseek-r1-0528 (641.3 GiB, MLA 70272 B/token):
    //   on Standard_ND96isr_H200_v5 (8 × 141): fixed = 2.3 GiB + 2048 × 70272 / 8 B = 2.3168 GiB;
    //   usable = (118.44 − 2.3168) / 1.05 = 110.59 GiB; 654.13 / 110.59 = 5.91 → 6 GPUs → 1 node.
    //   on Standard_ND96isr_H100_v5 (8 × 80): usable = (67.2 − 2.3168) / 1.05 = 61.79 GiB;
    //   654.13 / 61.79 = 10.59 → 11 GPUs → 2 nodes, TP 8 × PP 2.
    let r1 = preset("deepseek-r1-0528");
    let p = plan::plan(PlanInput::new(r1, gpu(Cloud::Azure, "Standard_ND96isr_H200_v5"))).expect("fits");
    assert_eq!(p.nodes, 1);
    let p = plan::plan(PlanInput::new(r1, gpu(Cloud::Azure, "Standard_ND96isr_H100_v5"))).expect("fits");
    assert_eq!((p.nodes, p.tensor_parallel, p.pipeline_parallel, p.total_gpus), (2, 8, 2, 16));
}

#[test]
fn explicit_context_length_is_checked_and_kept() {
    let mini = preset("phi-4-mini-instruct");
    let a100 = gpu(Cloud::Azure, "Standard_NC24ads_A100_v4");
    let p = plan::plan(PlanInput { max_model_len: Some(32_768), ..PlanInput::new(mini, a100) }).expect("fits");
    assert_eq!(p.max_model_len, MaxModelLen::Explicit(32_768));
    let err = plan::plan(PlanInput { max_model_len: Some(200_000), ..PlanInput::new(mini, a100) })
        .expect_err("over the model limit");
    assert_eq!(
        err,
        PlanError::MaxModelLenTooLarge { model: "phi-4-mini-instruct".to_string(), requested: 200_000, limit: 131_072 }
    );
    assert!(err.to_string().contains("at most 131072"));
}

#[test]
fn kv_cache_that_cannot_fit_names_a_better_sku() {
    // llama-3.3-70b at 131072 tokens: 131072 × 327680 B = 40 GiB of KV cache per GPU on a 1-GPU A10 node.
    let err = plan::plan(PlanInput {
        max_model_len: Some(131_072),
        ..PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_NV36ads_A10_v5"))
    })
    .expect_err("KV cache too large");
    let message = err.to_string();
    assert!(matches!(err, PlanError::KvCacheExceedsGpu { .. }), "{message}");
    assert!(message.contains("lower vllm.max-model-len or use Standard_"), "{message}");
}

#[test]
fn recommend_picks_the_smallest_single_node_sku() {
    // phi-4-mini fits the 24 GiB A10 node, the smallest NVIDIA SKU on Azure.
    let p = plan::recommend(preset("phi-4-mini-instruct"), Cloud::Azure, None).expect("fits");
    assert_eq!((p.sku.as_str(), p.nodes), ("Standard_NV36ads_A10_v5", 1));
    // llama-3.3-70b: NC80adis_H100 (2 × 94 = 188 GiB) fits on one node: usable (78.96 − 2.6125) / 1.05
    // = 72.71 GiB per GPU, 134.05 / 72.71 = 1.84 → 2 GPUs; smaller single-node SKUs do not.
    let p = plan::recommend(preset("llama-3.3-70b-instruct"), Cloud::Azure, None).expect("fits");
    assert_eq!((p.sku.as_str(), p.nodes, p.tensor_parallel), ("Standard_NC80adis_H100_v5", 1, 2));
    // On AWS the same model needs 4 × 24 GiB L4/A10G at least: g6.48xlarge/g5.48xlarge (192 GiB) or p4d.
    let p = plan::recommend(preset("llama-3.3-70b-instruct"), Cloud::Aws, None).expect("fits");
    assert_eq!(p.nodes, 1);
    assert_eq!(p.sku, "g5.48xlarge"); // 192 GiB ties with g6.48xlarge; name breaks the tie
    // DeepSeek-R1 needs an H200 node on Azure.
    let p = plan::recommend(preset("deepseek-r1-0528"), Cloud::Azure, None).expect("fits");
    assert_eq!((p.sku.as_str(), p.nodes), ("Standard_ND96isr_H200_v5", 1));
    // Arc's 32 GiB nodes need many of them for a 70B model; fewest nodes then least memory wins.
    let p = plan::recommend(preset("llama-3.3-70b-instruct"), Cloud::Arc, None).expect("fits over nodes");
    assert!(p.nodes > 1);
    // Never a legacy or non-NVIDIA SKU.
    for preset in catalog::all() {
        for cloud in Cloud::ALL {
            if let Ok(p) = plan::recommend(preset, cloud, None) {
                let chosen = sku::lookup(cloud, &p.sku).expect("from the catalog");
                assert!(!chosen.legacy && chosen.vendor == GpuVendor::Nvidia, "{} {}", preset.name, p.sku);
            }
        }
    }
}

#[test]
fn node_limit_reports_how_to_fit() {
    let err_plan = plan::plan(PlanInput {
        node_limit: Some(1),
        ..PlanInput::new(preset("llama-3.3-70b-instruct"), gpu(Cloud::Azure, "Standard_NC24ads_A100_v4"))
    })
    .expect("planned");
    assert!(!err_plan.fits);
    let reason = err_plan.reason.expect("reason");
    assert!(reason.starts_with("llama-3.3-70b-instruct needs "), "{reason}");
    assert!(reason.contains("3 nodes of Standard_NC24ads_A100_v4 (80 GiB each) but only 1 available"), "{reason}");
    assert!(reason.contains("add 2 node(s) or use Standard_NC80adis_H100_v5"), "{reason}");
}

#[test]
fn mig_slices_and_single_node_models_cannot_span_nodes() {
    let a100 = gpu(Cloud::Azure, "Standard_NC24ads_A100_v4");
    let slice = a100.with_mig_profile("3g.40gb").expect("valid profile");
    let err = plan::plan(PlanInput::new(preset("qwen2.5-coder-32b-instruct"), &slice)).expect_err("61 GiB > 40 GiB");
    assert!(matches!(err, PlanError::CannotSpanNodes { .. }), "{err}");
    assert!(err.to_string().contains("MIG"), "{err}");
    let p = plan::plan(PlanInput::new(preset("phi-4-mini-instruct"), &slice)).expect("fits a slice");
    assert!(p.mig && p.nodes == 1);

    let mut single = preset("llama-3.3-70b-instruct").clone();
    single.distributed_inference = false;
    let err = plan::plan(PlanInput::new(&single, a100)).expect_err("needs 3 nodes");
    let message = err.to_string();
    assert!(message.starts_with("llama-3.3-70b-instruct needs "), "{message}");
    assert!(message.contains("Standard_NC24ads_A100_v4 has 80 GiB per node"), "{message}");
    assert!(message.contains("use Standard_NC80adis_H100_v5"), "{message}");
}

#[test]
fn transformers_uses_the_count_and_reports_memory() {
    let phi4 = preset("phi-4");
    let a100 = gpu(Cloud::Azure, "Standard_NC24ads_A100_v4");
    let p = plan::plan(PlanInput {
        runtime: Runtime::Transformers,
        requested_count: Some(2),
        ..PlanInput::new(phi4, a100)
    })
    .expect("planned");
    assert_eq!((p.nodes, p.data_parallel, p.runtime), (2, 2, Runtime::Transformers));
    assert!(p.fits);

    let llama = preset("llama-3.3-70b-instruct");
    let p = plan::plan(PlanInput { runtime: Runtime::Transformers, ..PlanInput::new(llama, a100) }).expect("planned");
    assert!(!p.fits);
    let reason = p.reason.expect("reason");
    assert!(reason.starts_with("Insufficient total GPU memory"), "{reason}");
    let p = plan::plan(PlanInput {
        runtime: Runtime::Transformers,
        requested_count: Some(2),
        ..PlanInput::new(llama, a100)
    })
    .expect("planned");
    let reason = p.reason.expect("reason");
    assert!(
        reason.starts_with("Multi-node distributed inference is not supported with Huggingface Transformers runtime"),
        "{reason}"
    );
    // The smallest single node holding 131.42 GiB: 2 × 80 GiB.
    assert!(reason.contains("use Standard_NC48ads_A100_v4"), "{reason}");

    let err =
        plan::plan(PlanInput { runtime: Runtime::Transformers, ..PlanInput::new(preset("phi-4-mini-instruct"), a100) })
            .expect_err("no transformers command");
    assert!(matches!(err, PlanError::RuntimeUnsupported { .. }));
}

#[test]
fn plan_round_trips_through_camel_case_json() {
    let p = plan::plan(PlanInput::new(preset("phi-4"), gpu(Cloud::Azure, "Standard_NC48ads_A100_v4"))).expect("fits");
    let json = serde_json::to_value(&p).expect("serializes");
    assert_eq!(json["gpusPerNode"], 2);
    assert_eq!(json["dataParallel"], 2);
    assert_eq!(json["maxModelLen"], "auto");
    assert_eq!(json["runtime"], "vllm");
    let back: kaito_core::Plan = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, p);
}

fn synthetic_preset(weight_bytes: u64, bytes_per_token: u64, distributed: bool) -> Preset {
    let mut preset = preset("phi-4").clone();
    preset.weight_bytes = weight_bytes;
    preset.kv_cache = KvCacheLayout::Stated { bytes_per_token };
    preset.model_token_limit = 1 << 20;
    preset.distributed_inference = distributed;
    preset
}

fn synthetic_gpu(gpu_count: u32, per_gpu_bytes: u64) -> GpuConfig {
    GpuConfig {
        gpu_count,
        gpu_memory_per_gpu_bytes: per_gpu_bytes,
        total_gpu_memory_bytes: per_gpu_bytes * u64::from(gpu_count),
        cloud: None,
        ..gpu(Cloud::Azure, "Standard_NC24ads_A100_v4").clone()
    }
}

proptest! {
    #[test]
    fn more_memory_per_gpu_never_needs_more_nodes(
        weights_gib in 1u64..1500,
        bytes_per_token in 1_000u64..2_000_000,
        gpus in 1u32..=16,
        small_gib in 8u64..200,
        extra_gib in 0u64..200,
        max_model_len in 1u32..200_000,
    ) {
        let preset = synthetic_preset(weights_gib * GIB, bytes_per_token, true);
        let small = synthetic_gpu(gpus, small_gib * GIB);
        let large = synthetic_gpu(gpus, (small_gib + extra_gib) * GIB);
        let input = |gpu| PlanInput { max_model_len: Some(max_model_len), ..PlanInput::new(&preset, gpu) };
        if let Ok(small_plan) = plan::plan(input(&small)) {
            let large_plan = plan::plan(input(&large));
            prop_assert!(large_plan.is_ok(), "{:?}", large_plan);
            if let Ok(large_plan) = large_plan {
                prop_assert!(large_plan.nodes <= small_plan.nodes);
            }
        }
    }

    #[test]
    fn a_plan_never_exceeds_the_memory_it_was_given(
        weights_gib in 1u64..1500,
        bytes_per_token in 1_000u64..2_000_000,
        gpus in 1u32..=16,
        per_gpu_gib in 8u64..200,
        max_model_len in 1u32..200_000,
    ) {
        let preset = synthetic_preset(weights_gib * GIB, bytes_per_token, true);
        let gpu = synthetic_gpu(gpus, per_gpu_gib * GIB);
        let input = PlanInput { max_model_len: Some(max_model_len), ..PlanInput::new(&preset, &gpu) };
        if let Ok(p) = plan::plan(input) {
            let total_gpus = f64::from(p.total_gpus);
            let avail = per_gpu_gib as f64 * GIB as f64 * 0.84;
            let fixed = 2.3 * GIB as f64 + f64::from(max_model_len) * bytes_per_token as f64 / f64::from(gpus);
            let need = weights_gib as f64 * GIB as f64 * 1.02;
            prop_assert!(p.fits);
            let slack = 1e-9 * total_gpus * avail;
            prop_assert!(need + fixed <= total_gpus * avail + slack);
            // Stronger: the weights with activation room plus every GPU's fixed share fit.
            prop_assert!(need * 1.05 + total_gpus * fixed <= total_gpus * avail + slack);
            prop_assert!(p.headroom_bytes >= 0);
            // And one node fewer would not have been enough (the estimate is tight at node granularity).
            if p.nodes > 1 {
                let fewer = f64::from((p.nodes - 1) * gpus);
                prop_assert!(need * 1.05 + fewer * fixed >= fewer * avail - slack);
            }
        }
    }

    #[test]
    fn parallel_degrees_multiply_to_the_gpu_count(
        weights_gib in 1u64..1500,
        bytes_per_token in 1_000u64..500_000,
        gpus in 1u32..=16,
        per_gpu_gib in 8u64..200,
        count in 1u32..4,
        transformers in any::<bool>(),
    ) {
        let mut preset = synthetic_preset(weights_gib * GIB, bytes_per_token, true);
        preset.runtimes = vec![Runtime::Vllm, Runtime::Transformers];
        let gpu = synthetic_gpu(gpus, per_gpu_gib * GIB);
        let runtime = if transformers { Runtime::Transformers } else { Runtime::Vllm };
        let input = PlanInput { runtime, requested_count: Some(count), ..PlanInput::new(&preset, &gpu) };
        if let Ok(p) = plan::plan(input) {
            prop_assert_eq!(p.total_gpus, p.nodes * p.gpus_per_node);
            prop_assert_eq!(p.tensor_parallel * p.pipeline_parallel * p.data_parallel, p.total_gpus);
            if runtime == Runtime::Vllm {
                prop_assert_eq!(p.pipeline_parallel, p.nodes);
                prop_assert!(p.tensor_parallel == 1 || p.data_parallel == 1);
            } else {
                prop_assert_eq!(p.nodes, count);
            }
        }
    }
}
