//! SKU catalogs against the upstream tables (upstream-kaito.md §4.1–§4.3) and BYO node labels (§4.4).

use std::collections::BTreeMap;

use kaito_core::GIB;
use kaito_core::sku::{self, Cloud, GpuVendor, SkuError};

#[test]
fn sku_counts_match_the_upstream_tables() {
    // §4.1: 14 current Azure SKUs + 15 removed after v0.6.x.
    let azure = sku::all(Cloud::Azure);
    assert_eq!(azure.len(), 29);
    assert_eq!(azure.iter().filter(|s| s.legacy).count(), 15);
    // §4.2: every SKU name of the AWS table expanded (p5e/p5en, g6.xlarge … g6.16xlarge, gr6, …).
    assert_eq!(sku::all(Cloud::Aws).len(), 35);
    // §4.3: A2 and A16 SKUs in four sizes each.
    assert_eq!(sku::all(Cloud::Arc).len(), 8);
    assert!(sku::all(Cloud::Aws).iter().chain(sku::all(Cloud::Arc)).all(|s| !s.legacy));
}

#[test]
fn selected_skus_match_the_tables() {
    let h200 = sku::lookup(Cloud::Azure, "Standard_ND96isr_H200_v5").expect("in catalog");
    assert_eq!(h200.gpu_count, 8);
    assert_eq!(h200.total_gpu_memory_bytes, 1128 * GIB);
    assert_eq!(h200.gpu_memory_per_gpu_bytes, 141 * GIB);
    assert_eq!(h200.compute_capability, Some((9, 0)));
    assert!(h200.nvme);

    let asr = sku::lookup(Cloud::Azure, "Standard_ND96asr_A100_v4").expect("in catalog");
    assert_eq!(asr.gpu_memory_per_gpu_bytes, 40 * GIB);
    assert!(!asr.nvme);

    let v620 = sku::lookup(Cloud::Azure, "Standard_NG32ads_V620_v1").expect("in catalog");
    assert_eq!(v620.vendor, GpuVendor::Amd);
    assert_eq!(v620.compute_capability, None);

    let t4 = sku::lookup(Cloud::Azure, "Standard_NC64as_T4_v3").expect("legacy SKU kept");
    assert!(t4.legacy);
    assert_eq!((t4.gpu_count, t4.total_gpu_memory_bytes), (4, 64 * GIB));

    let p5en = sku::lookup(Cloud::Aws, "p5en.48xlarge").expect("in catalog");
    assert_eq!((p5en.gpu_count, p5en.total_gpu_memory_bytes), (8, 1128 * GIB));
    let gr6 = sku::lookup(Cloud::Aws, "gr6.8xlarge").expect("in catalog");
    assert_eq!((gr6.gpu_count, gr6.gpu_model.as_str()), (1, "L4"));
    let inf2 = sku::lookup(Cloud::Aws, "inf2.48xlarge").expect("in catalog");
    assert_eq!((inf2.gpu_count, inf2.vendor), (12, GpuVendor::AwsNeuron));

    let a16 = sku::lookup(Cloud::Arc, "Standard_NC32_A16").expect("in catalog");
    assert_eq!((a16.gpu_count, a16.total_gpu_memory_bytes), (2, 32 * GIB));
    assert_eq!(a16.compute_capability, Some((8, 6)));
}

#[test]
fn azure_per_gpu_memory_matches_the_per_gpu_column() {
    let per_gpu_gib = [
        ("Standard_NV36ads_A10_v5", 24),
        ("Standard_NV72ads_A10_v5", 24),
        ("Standard_NC24ads_A100_v4", 80),
        ("Standard_NC48ads_A100_v4", 80),
        ("Standard_NC96ads_A100_v4", 80),
        ("Standard_ND96asr_A100_v4", 40),
        ("Standard_ND96amsr_A100_v4", 80),
        ("Standard_NC40ads_H100_v5", 94),
        ("Standard_NC80adis_H100_v5", 94),
        ("Standard_ND96isr_H100_v5", 80),
        ("Standard_NCC40ads_H100_v5", 94),
        ("Standard_ND96isr_H200_v5", 141),
        ("Standard_NG32ads_V620_v1", 32),
        ("Standard_NG32adms_V620_v1", 32),
    ];
    for (name, gib) in per_gpu_gib {
        let config = sku::lookup(Cloud::Azure, name).expect(name);
        assert_eq!(config.gpu_memory_per_gpu_bytes, gib * GIB, "{name}");
        assert!(!config.legacy, "{name}");
        assert_eq!(config.cloud, Some(Cloud::Azure));
    }
}

#[test]
fn lookup_is_exact_with_a_did_you_mean() {
    assert!(sku::lookup(Cloud::Azure, "standard_nc24ads_a100_v4").is_none());
    assert_eq!(sku::suggest(Cloud::Azure, "standard_nc24ads_a100_v4"), Some("Standard_NC24ads_A100_v4"));
    assert_eq!(sku::suggest(Cloud::Azure, "Standard_NC24ads_A100_v4"), None);
    assert_eq!(sku::suggest(Cloud::Aws, "Standard_NC24ads_A100_v4"), None);
    assert!(sku::lookup(Cloud::Aws, "Standard_NC24ads_A100_v4").is_none());
    assert_eq!(sku::lookup_any("p4d.24xlarge").and_then(|s| s.cloud), Some(Cloud::Aws));
}

#[test]
fn azure_admits_unknown_n_and_d_series() {
    assert!(sku::azure_accepts_unknown("Standard_NC4as_T4_v9"));
    assert!(sku::azure_accepts_unknown("Standard_D4s_v5"));
    assert!(!sku::azure_accepts_unknown("Standard_E4s_v5"));
    assert!(!sku::azure_accepts_unknown("standard_nc24ads_a100_v4"));
}

#[test]
fn cloud_names_parse_and_print_lowercase() {
    assert_eq!("AWS".parse::<Cloud>(), Ok(Cloud::Aws));
    assert_eq!(" azure ".parse::<Cloud>(), Ok(Cloud::Azure));
    assert_eq!(Cloud::Arc.to_string(), "arc");
    assert!(matches!("gcp".parse::<Cloud>(), Err(SkuError::UnknownCloud { .. })));
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn byo_shape_comes_from_gpu_feature_discovery_labels() {
    let node = labels(&[
        ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB"),
        ("nvidia.com/gpu.count", "8"),
        ("nvidia.com/gpu.memory", "81920"),
        ("nvidia.com/cuda.compute.major", "8"),
        ("nvidia.com/cuda.compute.minor", "0"),
        ("node.kubernetes.io/instance-type", "dgx-a100"),
    ]);
    let gpu = sku::from_node_labels(&node).expect("complete labels");
    assert_eq!(gpu.sku, "dgx-a100");
    assert_eq!(gpu.gpu_model, "NVIDIA-A100-SXM4-80GB");
    assert_eq!(gpu.gpu_count, 8);
    assert_eq!(gpu.gpu_memory_per_gpu_bytes, 80 * GIB);
    assert_eq!(gpu.total_gpu_memory_bytes, 640 * GIB);
    assert_eq!(gpu.compute_capability, Some((8, 0)));
    assert_eq!(gpu.cloud, None);
    assert!(!gpu.mig);
}

#[test]
fn byo_memory_rounds_to_whole_gib() {
    // A10 reports 23028 MiB = 22.49 GiB → 22; A6000-class 46068 MiB = 44.99 GiB → 45.
    for (mib, gib) in [("23028", 22), ("46068", 45), ("512", 1), ("511", 0)] {
        let node =
            labels(&[("nvidia.com/gpu.product", "X"), ("nvidia.com/gpu.count", "2"), ("nvidia.com/gpu.memory", mib)]);
        let gpu = sku::from_node_labels(&node).expect("complete labels");
        assert_eq!(gpu.gpu_memory_per_gpu_bytes, gib * GIB, "{mib}");
        assert_eq!(gpu.total_gpu_memory_bytes, 2 * gib * GIB, "{mib}");
        assert_eq!(gpu.sku, "X");
    }
}

#[test]
fn byo_mig_needs_a_successfully_applied_config() {
    let base = [
        ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"),
        ("nvidia.com/gpu.count", "1"),
        ("nvidia.com/gpu.memory", "40960"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        sku::from_node_labels(&labels(&all)).expect("complete labels").mig
    };
    assert!(with(&[("nvidia.com/mig.config", "all-1g.5gb"), ("nvidia.com/mig.config.state", "success")]));
    assert!(!with(&[("nvidia.com/mig.config", "all-1g.5gb"), ("nvidia.com/mig.config.state", "pending")]));
    assert!(!with(&[("nvidia.com/mig.config", "all-disabled"), ("nvidia.com/mig.config.state", "success")]));
    assert!(!with(&[]));
}

#[test]
fn byo_missing_or_bad_labels_say_what_to_install() {
    let missing = sku::from_node_labels(&labels(&[("nvidia.com/gpu.count", "1")])).expect_err("missing");
    assert_eq!(missing, SkuError::MissingLabel { label: "nvidia.com/gpu.product".to_string() });
    assert!(missing.to_string().contains("GPU Feature Discovery"));
    let bad = sku::from_node_labels(&labels(&[
        ("nvidia.com/gpu.product", "X"),
        ("nvidia.com/gpu.count", "two"),
        ("nvidia.com/gpu.memory", "1024"),
    ]))
    .expect_err("bad count");
    assert!(matches!(bad, SkuError::InvalidLabel { ref label, .. } if label == "nvidia.com/gpu.count"));
    let zero = sku::from_node_labels(&labels(&[
        ("nvidia.com/gpu.product", "X"),
        ("nvidia.com/gpu.count", "0"),
        ("nvidia.com/gpu.memory", "1024"),
    ]));
    assert!(zero.is_err());
}
