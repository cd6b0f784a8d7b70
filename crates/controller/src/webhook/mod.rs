//! The validating admission webhook for Workspace, RAGEngine and InferenceSet.
//!
//! [`review`] is the whole decision, a pure function from an `AdmissionReview` and a [`ValidationContext`] to
//! an `AdmissionResponse`: it runs the same rules as the controller and `kaito validate`
//! ([`kaito_api::validation`]). [`server`] serves it over HTTPS (what the API server calls), [`cert`] makes
//! and rotates the serving certificate and keeps the `caBundle` of the webhook configurations current.

pub mod cert;
pub mod run;
pub mod server;

use kaito_api::v1alpha1;
use kaito_api::v1beta1::{InferenceSet, RAGEngine, Workspace};
use kaito_api::validation::{self, Outcome, ValidationContext};
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::de::DeserializeOwned;

/// API group of KAITO's kinds.
pub const GROUP: &str = "kaito.sh";

/// One webhook of a ValidatingWebhookConfiguration: upstream's name, its path and what it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// Name of the webhook and of the ValidatingWebhookConfiguration holding it (upstream's names).
    pub name: &'static str,
    /// URL path the API server posts AdmissionReviews to.
    pub path: &'static str,
    /// Plural resource name in `kaito.sh`.
    pub resource: &'static str,
    /// API versions the webhook is registered for.
    pub versions: &'static [&'static str],
}

/// The Workspace webhook (`kaito.sh/v1alpha1` and `v1beta1`).
pub const WORKSPACE_HOOK: Hook = Hook {
    name: "validation.workspace.kaito.sh",
    path: "/validate/workspace.kaito.sh",
    resource: "workspaces",
    versions: &["v1alpha1", "v1beta1"],
};
/// The RAGEngine webhook (`kaito.sh/v1alpha1` and `v1beta1`).
pub const RAGENGINE_HOOK: Hook = Hook {
    name: "validation.ragengine.kaito.sh",
    path: "/validate/ragengine.kaito.sh",
    resource: "ragengines",
    versions: &["v1alpha1", "v1beta1"],
};
/// The InferenceSet webhook (`kaito.sh/v1beta1`).
pub const INFERENCESET_HOOK: Hook = Hook {
    name: "validation.inferenceset.kaito.sh",
    path: "/validate/inferenceset.kaito.sh",
    resource: "inferencesets",
    versions: &["v1beta1"],
};
/// Every webhook the operator serves.
pub const HOOKS: [Hook; 3] = [WORKSPACE_HOOK, RAGENGINE_HOOK, INFERENCESET_HOOK];

/// Why a review could not be decided by the rules; the request is denied with this message.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The review carries no request.
    #[error("the AdmissionReview has no request")]
    NoRequest,
    /// A kind or version this webhook does not validate (a misconfigured webhook configuration).
    #[error("{group}/{version} {kind} is not validated by this webhook")]
    UnsupportedKind {
        /// API group of the object.
        group: String,
        /// API version of the object.
        version: String,
        /// Kind of the object.
        kind: String,
    },
    /// The request has no `object` (or no `oldObject` on update).
    #[error("the admission request has no {0}")]
    MissingObject(&'static str),
    /// The object does not parse as its kind.
    #[error("the {kind} cannot be read: {source}")]
    Decode {
        /// Kind of the object.
        kind: String,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// Decides an AdmissionReview: the response to send back (in the review envelope, see [`review_to_response`]).
///
/// Violations deny the request with their messages joined by `"; "`; warnings are returned as the response's
/// `warnings` (kubectl prints them) and never deny. Operations other than CREATE and UPDATE are admitted,
/// because no rule applies to them.
pub fn review(review: AdmissionReview<DynamicObject>, ctx: &ValidationContext) -> AdmissionResponse {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => return AdmissionResponse::invalid(ReviewError::NoRequest),
    };
    respond(&request, ctx)
}

/// [`review`] for a request already taken out of its review.
pub fn respond(request: &AdmissionRequest<DynamicObject>, ctx: &ValidationContext) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    match outcome(request, ctx) {
        Err(error) => response.deny(error),
        Ok(outcome) => {
            let mut response = if outcome.is_ok() {
                response
            } else {
                let message: Vec<String> = outcome.violations.iter().map(ToString::to_string).collect();
                response.deny(message.join("; "))
            };
            if !outcome.warnings.is_empty() {
                response.warnings = Some(outcome.warnings);
            }
            response
        }
    }
}

/// Wraps a response in the AdmissionReview envelope the API server expects back.
pub fn review_to_response(response: AdmissionResponse) -> AdmissionReview<DynamicObject> {
    response.into_review()
}

/// The rules' outcome for a request.
pub fn outcome(request: &AdmissionRequest<DynamicObject>, ctx: &ValidationContext) -> Result<Outcome, ReviewError> {
    let update = match request.operation {
        Operation::Create => false,
        Operation::Update => true,
        Operation::Delete | Operation::Connect => return Ok(Outcome::default()),
    };
    let gvk = &request.kind;
    let unsupported = || ReviewError::UnsupportedKind {
        group: gvk.group.clone(),
        version: gvk.version.clone(),
        kind: gvk.kind.clone(),
    };
    if gvk.group != GROUP {
        return Err(unsupported());
    }
    let new = request.object.as_ref().ok_or(ReviewError::MissingObject("object"))?;
    let old = || request.old_object.as_ref().ok_or(ReviewError::MissingObject("oldObject"));
    Ok(match (gvk.kind.as_str(), gvk.version.as_str()) {
        ("Workspace", "v1beta1") => {
            let new: Workspace = decode(new, &gvk.kind)?;
            if update {
                validation::validate_workspace_update(&decode(old()?, &gvk.kind)?, &new, ctx)
            } else {
                validation::validate_workspace_create(&new, ctx)
            }
        }
        ("Workspace", "v1alpha1") => {
            let new: v1alpha1::Workspace = decode(new, &gvk.kind)?;
            if update {
                // Updates compare v1beta1 views of both objects: the schemas are field-compatible, and the
                // immutable-field rules are written once, for v1beta1.
                let old: v1alpha1::Workspace = decode(old()?, &gvk.kind)?;
                match (validation::workspace_from_v1alpha1(&old), validation::workspace_from_v1alpha1(&new)) {
                    (Ok(old), Ok(new)) => validation::validate_workspace_update(&old, &new, ctx),
                    _ => validation::validate_workspace_v1alpha1_create(&new, ctx),
                }
            } else {
                validation::validate_workspace_v1alpha1_create(&new, ctx)
            }
        }
        ("RAGEngine", "v1beta1") => {
            let new: RAGEngine = decode(new, &gvk.kind)?;
            if update {
                validation::validate_ragengine_update(&decode(old()?, &gvk.kind)?, &new, ctx)
            } else {
                validation::validate_ragengine_create(&new, ctx)
            }
        }
        ("RAGEngine", "v1alpha1") => {
            let new = validation::ragengine_from_v1alpha1(&decode::<v1alpha1::RAGEngine>(new, &gvk.kind)?);
            if update {
                let old = validation::ragengine_from_v1alpha1(&decode::<v1alpha1::RAGEngine>(old()?, &gvk.kind)?);
                validation::validate_ragengine_update(&old, &new, ctx)
            } else {
                validation::validate_ragengine_create(&new, ctx)
            }
        }
        ("InferenceSet", "v1beta1") => {
            let new: InferenceSet = decode(new, &gvk.kind)?;
            if update {
                validation::validate_inferenceset_update(&decode(old()?, &gvk.kind)?, &new, ctx)
            } else {
                validation::validate_inferenceset_create(&new, ctx)
            }
        }
        _ => return Err(unsupported()),
    })
}

fn decode<T: DeserializeOwned>(object: &DynamicObject, kind: &str) -> Result<T, ReviewError> {
    // The API server has already defaulted and pruned the object against the CRD schema, so a decoding
    // failure here means our types and the installed CRD disagree: deny with serde's message.
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|source| ReviewError::Decode { kind: kind.to_string(), source })
}

#[cfg(test)]
mod tests;
