//! `kaito.sh/v1alpha1`: the older API version, still served so existing manifests keep working.
//!
//! The apiserver converts between versions without a webhook (strategy None), so each v1alpha1 type is
//! field-compatible with its v1beta1 counterpart and simply lacks the fields v1beta1 added.

mod ragengine;
mod workspace;

pub use ragengine::*;
pub use workspace::*;
