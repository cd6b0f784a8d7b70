//! GPU SKU catalogs per cloud, and the GPU shape of bring-your-own nodes from their labels.
//!
//! The catalogs are the data file `data/skus.yaml`, compiled in and parsed once. SKU names are matched
//! exactly, as upstream does; [`suggest`] offers the correctly-cased name for a near miss.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::GIB;

const SKUS_YAML: &str = include_str!("../data/skus.yaml");

/// GPU Feature Discovery label: GPU product name (e.g. `NVIDIA-A100-SXM4-80GB`).
pub const LABEL_GPU_PRODUCT: &str = "nvidia.com/gpu.product";
/// GPU Feature Discovery label: number of GPUs on the node.
pub const LABEL_GPU_COUNT: &str = "nvidia.com/gpu.count";
/// GPU Feature Discovery label: memory of one GPU in MiB.
pub const LABEL_GPU_MEMORY_MIB: &str = "nvidia.com/gpu.memory";
/// GPU Feature Discovery label: CUDA compute capability, major part.
pub const LABEL_CUDA_MAJOR: &str = "nvidia.com/cuda.compute.major";
/// GPU Feature Discovery label: CUDA compute capability, minor part.
pub const LABEL_CUDA_MINOR: &str = "nvidia.com/cuda.compute.minor";
/// MIG manager label: the MIG configuration applied to the node.
pub const LABEL_MIG_CONFIG: &str = "nvidia.com/mig.config";
/// MIG manager label: state of the last MIG reconfiguration.
pub const LABEL_MIG_CONFIG_STATE: &str = "nvidia.com/mig.config.state";
/// Well-known label with the node's instance type.
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";

/// A cloud whose GPU SKU catalog KAITO knows (`CLOUD_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Microsoft Azure.
    Azure,
    /// Amazon Web Services.
    Aws,
    /// Azure Arc (on-premises clusters).
    Arc,
}

impl Cloud {
    /// Every cloud, in catalog order.
    pub const ALL: [Cloud; 3] = [Cloud::Azure, Cloud::Aws, Cloud::Arc];

    /// The lowercase name (`azure`, `aws`, `arc`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Azure => "azure",
            Cloud::Aws => "aws",
            Cloud::Arc => "arc",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cloud {
    type Err = SkuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "azure" => Ok(Cloud::Azure),
            "aws" => Ok(Cloud::Aws),
            "arc" => Ok(Cloud::Arc),
            _ => Err(SkuError::UnknownCloud { cloud: s.to_string() }),
        }
    }
}

/// Who makes the accelerator; the planner only recommends NVIDIA GPUs (vLLM's CUDA image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuVendor {
    /// NVIDIA GPUs.
    Nvidia,
    /// AMD GPUs.
    Amd,
    /// AWS Trainium / Inferentia (Neuron) accelerators.
    AwsNeuron,
}

/// The GPU shape of one node: a catalog SKU, or a bring-your-own node described by its labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuConfig {
    /// SKU / instance type name (for BYO nodes: the instance-type label, else the GPU product).
    pub sku: String,
    /// The cloud whose catalog the SKU comes from; `None` for BYO nodes.
    pub cloud: Option<Cloud>,
    /// GPUs per node.
    pub gpu_count: u32,
    /// Memory of one GPU in bytes.
    pub gpu_memory_per_gpu_bytes: u64,
    /// GPU memory of the whole node in bytes (upstream `GPUMem`).
    pub total_gpu_memory_bytes: u64,
    /// GPU model (e.g. `NVIDIA A100`).
    pub gpu_model: String,
    /// Accelerator vendor.
    pub vendor: GpuVendor,
    /// Whether the node has local NVMe disks for the weights cache.
    pub nvme: bool,
    /// CUDA compute capability (major, minor), for NVIDIA GPUs.
    pub compute_capability: Option<(u32, u32)>,
    /// A SKU upstream dropped after v0.6.x; still accepted, never recommended.
    pub legacy: bool,
    /// The node's GPUs are partitioned with MIG (one slice per pod, no multi-node serving).
    pub mig: bool,
}

impl GpuConfig {
    /// Memory of one GPU in GiB.
    pub fn gpu_memory_per_gpu_gib(&self) -> f64 {
        crate::bytes_to_gib(self.gpu_memory_per_gpu_bytes as f64)
    }

    /// GPU memory of the whole node in GiB.
    pub fn total_gpu_memory_gib(&self) -> f64 {
        crate::bytes_to_gib(self.total_gpu_memory_bytes as f64)
    }

    /// Whether the GPU is an NVIDIA A10 (not A100 / A10G), where vLLM gets a lower memory share.
    pub fn is_a10(&self) -> bool {
        let normalised: String = self
            .gpu_model
            .to_ascii_uppercase()
            .replace("NVIDIA", "")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        normalised == "A10"
    }

    /// The shape of one MIG slice of this node's GPUs, for a profile such as `1g.10gb` or `3g.40gb`.
    ///
    /// A pod gets one slice: one "GPU" whose memory is the profile's.
    pub fn with_mig_profile(&self, profile: &str) -> Result<GpuConfig, SkuError> {
        let invalid = || SkuError::InvalidMigProfile { profile: profile.to_string() };
        // Profiles look like `<compute>g.<memory>gb`, optionally with a media-engine suffix (`+me`).
        let base = profile.split('+').next().unwrap_or(profile);
        let (compute, memory) = base.split_once('.').ok_or_else(invalid)?;
        let compute: u32 = compute.strip_suffix('g').and_then(|c| c.parse().ok()).ok_or_else(invalid)?;
        let memory_gib: u64 = memory.strip_suffix("gb").and_then(|m| m.parse().ok()).ok_or_else(invalid)?;
        let per_gpu_gib = self.gpu_memory_per_gpu_bytes.div_ceil(GIB);
        if !(1..=7).contains(&compute) || memory_gib == 0 || memory_gib > per_gpu_gib {
            return Err(invalid());
        }
        Ok(GpuConfig {
            gpu_count: 1,
            gpu_memory_per_gpu_bytes: memory_gib * GIB,
            total_gpu_memory_bytes: memory_gib * GIB,
            mig: true,
            ..self.clone()
        })
    }
}

/// Errors about clouds, SKUs and node labels. Each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkuError {
    /// A cloud name other than azure, aws or arc.
    #[error("unknown cloud \"{cloud}\": use azure, aws or arc")]
    UnknownCloud {
        /// The name as given.
        cloud: String,
    },
    /// A GPU Feature Discovery label is missing from a node.
    #[error(
        "node has no {label} label: install the NVIDIA GPU Feature Discovery (GPU operator) on bring-your-own GPU nodes"
    )]
    MissingLabel {
        /// The missing label key.
        label: String,
    },
    /// A label has a value that cannot be used.
    #[error("node label {label}=\"{value}\" is not valid: expected {expected}")]
    InvalidLabel {
        /// The label key.
        label: String,
        /// The value found.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A MIG profile that is not of the form `<n>g.<m>gb` or does not fit the GPU.
    #[error("invalid MIG profile \"{profile}\": use a profile such as 1g.10gb whose memory fits one GPU of the node")]
    InvalidMigProfile {
        /// The profile as given.
        profile: String,
    },
}

/// One SKU as written in `data/skus.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuRow {
    sku: String,
    gpus: u32,
    gpu_memory_gib: u64,
    gpu_model: String,
    vendor: GpuVendor,
    nvme: bool,
    compute_capability: Option<String>,
    #[serde(default)]
    legacy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkusFile {
    skus: BTreeMap<Cloud, Vec<SkuRow>>,
}

type SkuTables = BTreeMap<Cloud, Vec<GpuConfig>>;

fn parse_compute_capability(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn parse_skus(yaml: &str) -> Result<SkuTables, String> {
    let file: SkusFile = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let mut tables = BTreeMap::new();
    for (cloud, rows) in file.skus {
        let mut configs: Vec<GpuConfig> = Vec::with_capacity(rows.len());
        for row in rows {
            if row.gpus == 0 || row.gpu_memory_gib == 0 {
                return Err(format!("{}: gpus and gpu_memory_gib must be positive", row.sku));
            }
            if configs.iter().any(|c| c.sku == row.sku) {
                return Err(format!("duplicate SKU {} in {cloud}", row.sku));
            }
            let compute_capability = match &row.compute_capability {
                None => None,
                Some(text) => Some(
                    parse_compute_capability(text)
                        .ok_or_else(|| format!("{}: bad compute capability {text}", row.sku))?,
                ),
            };
            let total = row.gpu_memory_gib * GIB;
            configs.push(GpuConfig {
                sku: row.sku,
                cloud: Some(cloud),
                gpu_count: row.gpus,
                gpu_memory_per_gpu_bytes: total / u64::from(row.gpus),
                total_gpu_memory_bytes: total,
                gpu_model: row.gpu_model,
                vendor: row.vendor,
                nvme: row.nvme,
                compute_capability,
                legacy: row.legacy,
                mig: false,
            });
        }
        tables.insert(cloud, configs);
    }
    Ok(tables)
}

fn tables() -> &'static SkuTables {
    static TABLES: OnceLock<SkuTables> = OnceLock::new();
    TABLES
        .get_or_init(|| parse_skus(SKUS_YAML).unwrap_or_else(|e| panic!("compiled-in data/skus.yaml is invalid: {e}")))
}

/// Every SKU of a cloud's catalog (including legacy ones), in catalog order.
pub fn all(cloud: Cloud) -> &'static [GpuConfig] {
    tables().get(&cloud).map(Vec::as_slice).unwrap_or(&[])
}

/// The SKU named exactly `sku` in the cloud's catalog.
pub fn lookup(cloud: Cloud, sku: &str) -> Option<&'static GpuConfig> {
    all(cloud).iter().find(|c| c.sku == sku)
}

/// The SKU named exactly `sku` in any cloud's catalog (names are unique across clouds; a test checks it).
pub fn lookup_any(sku: &str) -> Option<&'static GpuConfig> {
    Cloud::ALL.into_iter().find_map(|cloud| lookup(cloud, sku))
}

/// The correctly-cased catalog name when `sku` matches one only case-insensitively ("did you mean").
pub fn suggest(cloud: Cloud, sku: &str) -> Option<&'static str> {
    let wanted = sku.trim();
    all(cloud).iter().find(|c| c.sku != wanted && c.sku.eq_ignore_ascii_case(wanted)).map(|c| c.sku.as_str())
}

/// Whether Azure admits an SKU that is not in the catalog: names starting with `Standard_N` or
/// `Standard_D` are accepted (without a GPU config: no fit check, no estimation).
pub fn azure_accepts_unknown(sku: &str) -> bool {
    sku.starts_with("Standard_N") || sku.starts_with("Standard_D")
}

fn required_label<'a>(labels: &'a BTreeMap<String, String>, label: &str) -> Result<&'a str, SkuError> {
    labels
        .get(label)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SkuError::MissingLabel { label: label.to_string() })
}

fn positive_number(label: &str, value: &str) -> Result<u64, SkuError> {
    value.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| SkuError::InvalidLabel {
        label: label.to_string(),
        value: value.to_string(),
        expected: "a positive integer".to_string(),
    })
}

/// The GPU shape of a bring-your-own node from its GPU Feature Discovery labels.
///
/// Needs `nvidia.com/gpu.product`, `nvidia.com/gpu.count` and `nvidia.com/gpu.memory` (MiB per GPU).
/// Per-GPU memory is rounded to whole GiB (round(MiB / 1024)) and node memory is that × count. Compute
/// capability comes from `nvidia.com/cuda.compute.major/minor` when present. MIG is reported when
/// `nvidia.com/mig.config` is set to something other than `all-disabled` and
/// `nvidia.com/mig.config.state` is `success`.
pub fn from_node_labels(labels: &BTreeMap<String, String>) -> Result<GpuConfig, SkuError> {
    let product = required_label(labels, LABEL_GPU_PRODUCT)?;
    let count_text = required_label(labels, LABEL_GPU_COUNT)?;
    let memory_text = required_label(labels, LABEL_GPU_MEMORY_MIB)?;
    let count = u32::try_from(positive_number(LABEL_GPU_COUNT, count_text)?).map_err(|_| SkuError::InvalidLabel {
        label: LABEL_GPU_COUNT.to_string(),
        value: count_text.to_string(),
        expected: "a GPU count that fits in 32 bits".to_string(),
    })?;
    let memory_mib = positive_number(LABEL_GPU_MEMORY_MIB, memory_text)?;
    // Round half up to whole GiB: 81920 MiB → 80 GiB, 23028 MiB (A10) → 22 GiB, 46068 MiB → 45 GiB.
    let per_gpu_gib = (memory_mib + 512) / 1024;
    let per_gpu_bytes = per_gpu_gib * GIB;
    let compute_capability = match (
        labels.get(LABEL_CUDA_MAJOR).and_then(|v| v.trim().parse().ok()),
        labels.get(LABEL_CUDA_MINOR).and_then(|v| v.trim().parse().ok()),
    ) {
        (Some(major), Some(minor)) => Some((major, minor)),
        _ => None,
    };
    let mig_configured =
        labels.get(LABEL_MIG_CONFIG).is_some_and(|v| !v.trim().is_empty() && v.trim() != "all-disabled");
    let mig_applied = labels.get(LABEL_MIG_CONFIG_STATE).is_some_and(|v| v.trim() == "success");
    let sku = labels.get(LABEL_INSTANCE_TYPE).map(|v| v.trim()).filter(|v| !v.is_empty()).unwrap_or(product);
    Ok(GpuConfig {
        sku: sku.to_string(),
        cloud: None,
        gpu_count: count,
        gpu_memory_per_gpu_bytes: per_gpu_bytes,
        total_gpu_memory_bytes: per_gpu_bytes * u64::from(count),
        gpu_model: product.to_string(),
        vendor: GpuVendor::Nvidia,
        nvme: false,
        compute_capability,
        legacy: false,
        mig: mig_configured && mig_applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_sku_catalog_parses() {
        let parsed = parse_skus(SKUS_YAML).expect("data/skus.yaml parses");
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn duplicate_skus_are_rejected() {
        let row = "{sku: X, gpus: 1, gpu_memory_gib: 8, gpu_model: G, vendor: nvidia, nvme: false, compute_capability: \"8.0\"}";
        let yaml = format!("skus:\n  aws:\n    - {row}\n    - {row}\n");
        assert!(parse_skus(&yaml).is_err_and(|e| e.contains("duplicate SKU X")));
    }

    #[test]
    fn a10_detection_does_not_match_a100_or_a10g() {
        let a10 = lookup(Cloud::Azure, "Standard_NV36ads_A10_v5").expect("in catalog");
        assert!(a10.is_a10());
        let a100 = lookup(Cloud::Azure, "Standard_NC24ads_A100_v4").expect("in catalog");
        assert!(!a100.is_a10());
        let a10g = lookup(Cloud::Aws, "g5.xlarge").expect("in catalog");
        assert!(!a10g.is_a10());
        let byo = GpuConfig { gpu_model: "NVIDIA-A10".to_string(), ..a100.clone() };
        assert!(byo.is_a10());
    }

    #[test]
    fn mig_profiles_become_one_small_gpu() {
        let a100 = lookup(Cloud::Azure, "Standard_NC24ads_A100_v4").expect("in catalog");
        let slice = a100.with_mig_profile("3g.40gb").expect("valid profile");
        assert_eq!(slice.gpu_count, 1);
        assert_eq!(slice.total_gpu_memory_bytes, 40 * GIB);
        assert!(slice.mig);
        assert!(a100.with_mig_profile("1g.10gb+me").is_ok());
        for bad in ["", "3g", "3g.40", "9g.10gb", "1g.200gb", "xg.10gb", "1g.0gb"] {
            assert!(a100.with_mig_profile(bad).is_err(), "{bad}");
        }
    }
}
