//! KAITO domain logic: model presets, GPU SKU catalogs and sizing plans.
//!
//! Everything here is a pure function over plain data: no Kubernetes client, no async runtime, no I/O.
//! The catalogs are data files compiled into the crate (`data/*.yaml`) and parsed once on first use.
//!
//! - [`catalog`]: model presets (curated catalog, legacy aliases, deprecated names) and offline resolution
//!   of other Hugging Face models from their `config.json` and safetensors metadata.
//! - [`sku`]: GPU SKU catalogs per cloud and GPU shape from node labels (bring-your-own nodes).
//! - [`plan`]: how many nodes and GPUs a model needs on a SKU, and how it is split across them.
//! - [`args`]: the container command lines of the vLLM and transformers inference servers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod args;
pub mod catalog;
pub mod plan;
pub mod sku;

pub use catalog::{CatalogError, Preset, Runtime};
pub use plan::{MaxModelLen, Plan, PlanError, PlanInput};
pub use sku::{Cloud, GpuConfig, SkuError};

/// Bytes in one gibibyte (2^30); catalog sizes are given in GiB.
pub const GIB: u64 = 1 << 30;

/// Converts a size in GiB (as written in the catalogs, possibly fractional) to bytes.
///
/// Rounds up, like a Kubernetes quantity such as `27.31Gi` does when read as an integer byte count.
pub fn gib_to_bytes(gib: f64) -> u64 {
    // The product is far below 2^53 for any realistic size, so the conversion is exact up to the rounding.
    (gib * GIB as f64).ceil() as u64
}

/// Converts bytes to GiB for messages and reports.
pub fn bytes_to_gib(bytes: f64) -> f64 {
    bytes / GIB as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gib_conversion_rounds_up_like_a_quantity() {
        assert_eq!(gib_to_bytes(1.0), GIB);
        // 27.31 GiB = 29_323_889_213.44 bytes; a quantity reads that as the next whole byte.
        assert_eq!(gib_to_bytes(27.31), 29_323_889_214);
        assert!((bytes_to_gib(GIB as f64 * 1.5) - 1.5).abs() < 1e-12);
    }
}
