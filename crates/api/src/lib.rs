//! KAITO's custom resource types and their CustomResourceDefinitions.
//!
//! - [`v1beta1`]: `Workspace`, `RAGEngine`, `InferenceSet` (storage version).
//! - [`v1alpha1`]: `Workspace`, `RAGEngine` as the older version serves them.
//! - [`validation`]: the admission rules of every kind, as pure functions.
//! - [`crd`]: the merged multi-version CRDs written to `config/crd/` by the `crdgen` binary.
//!
//! Doc comments on fields become `kubectl explain` text, so they are written for users.
#![forbid(unsafe_code)]
// kube-derive's repeated `printcolumn(..., type_ = ...)` attributes trip this lint; they are not duplicates.
#![allow(clippy::duplicated_attributes)]

pub mod crd;
pub mod karpenter;
pub mod labels;
pub mod latest;
pub mod schema;
pub mod status_writes;
pub mod v1alpha1;
pub mod v1beta1;
pub mod validation;
