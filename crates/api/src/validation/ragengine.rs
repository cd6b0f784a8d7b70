//! RAGEngine admission rules (the same on create and update, plus immutable compute on update).

use super::common::{check_instance_type, check_service_url, parse_image_reference, selector_as_map};
use super::{Outcome, ValidationContext};
use crate::v1alpha1;
use crate::v1beta1::{InferenceServiceSpec, PersistentVolumeSpec, RAGEngine, RAGEngineSpec, ResourceSpec, StorageSpec};

/// Key of the guardrails ConfigMap that holds the policy.
pub const GUARDRAILS_KEY: &str = "guardrails.yaml";
/// ConfigMap in the operator's namespace with the default guardrails policy.
pub const DEFAULT_GUARDRAILS_CONFIG_MAP: &str = "ragengine-guardrails-policy-template";

/// Converts a deprecated `kaito.sh/v1alpha1` RAGEngine to v1beta1: flat storage becomes
/// `storage.persistentVolume`, the never-honoured service names are dropped.
pub fn ragengine_from_v1alpha1(rag: &v1alpha1::RAGEngine) -> RAGEngine {
    let spec = &rag.spec;
    let compute = spec.compute.as_ref().map(|c| ResourceSpec {
        count: c.count,
        instance_type: c.instance_type.clone(),
        label_selector: c.label_selector.clone(),
        preferred_nodes: c.preferred_nodes.clone(),
        partition: None,
    });
    let storage = spec.storage.as_ref().map(|s| StorageSpec {
        persistent_volume: s.persistent_volume_claim.as_ref().map(|claim| PersistentVolumeSpec {
            persistent_volume_claim: claim.clone(),
            mount_path: s.mount_path.clone(),
        }),
        vector_db: None,
    });
    let service = &spec.inference_service;
    RAGEngine {
        metadata: rag.metadata.clone(),
        spec: RAGEngineSpec {
            compute,
            storage,
            embedding: spec.embedding.clone(),
            inference_service: Some(InferenceServiceSpec {
                url: Some(service.url.clone()),
                access_secret: service.access_secret.clone(),
                context_window_size: service.context_window_size,
            }),
            guardrails: None,
        },
        status: rag.status.clone(),
    }
}

/// Validates a RAGEngine being created.
pub fn validate_ragengine_create(rag: &RAGEngine, ctx: &ValidationContext) -> Outcome {
    let mut out = Outcome::default();
    check_spec(&rag.spec, ctx, &mut out);
    out
}

/// Validates an update of a RAGEngine: the create rules, and `compute` (added, removed, instance type,
/// label selector, count) is immutable. An object being deleted is always admitted.
pub fn validate_ragengine_update(old: &RAGEngine, new: &RAGEngine, ctx: &ValidationContext) -> Outcome {
    let mut out = Outcome::default();
    if new.metadata.deletion_timestamp.is_some() {
        return out;
    }
    check_spec(&new.spec, ctx, &mut out);
    match (&old.spec.compute, &new.spec.compute) {
        (Some(_), None) | (None, Some(_)) => {
            out.violation("spec.compute", "cannot be added or removed: create a new RAGEngine to change where it runs")
        }
        (Some(o), Some(n)) => {
            if o.instance_type != n.instance_type {
                out.violation(
                    "spec.compute.instanceType",
                    "is immutable: create a new RAGEngine for another instance type",
                );
            }
            let same_selector = match (selector_as_map(&o.label_selector), selector_as_map(&n.label_selector)) {
                (Ok(a), Ok(b)) => a == b,
                _ => o.label_selector == n.label_selector,
            };
            if !same_selector {
                out.violation(
                    "spec.compute.labelSelector",
                    "is immutable: create a new RAGEngine to select other nodes",
                );
            }
            if o.count != n.count {
                out.violation("spec.compute.count", "is immutable: create a new RAGEngine to change the node count");
            }
        }
        (None, None) => {}
    }
    out
}

fn check_spec(spec: &RAGEngineSpec, ctx: &ValidationContext, out: &mut Outcome) {
    let embedding = &spec.embedding;
    match (&embedding.local, &embedding.remote) {
        (Some(_), Some(_)) => out.violation(
            "spec.embedding",
            "local and remote are both set: run the embedding model in the service (local) or call an endpoint (remote), not both",
        ),
        (None, None) => out.violation(
            "spec.embedding",
            "set local (e.g. modelID: BAAI/bge-small-en-v1.5) or remote (url of an embeddings endpoint)",
        ),
        _ => {}
    }
    if let Some(local) = &embedding.local {
        let image = local.image.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let model = local.model_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match (image, model) {
            (Some(_), Some(_)) => out.violation(
                "spec.embedding.local",
                "image and modelID are both set: give the model as a Hugging Face modelID or as an image, not both",
            ),
            (None, None) => out.violation(
                "spec.embedding.local",
                "set modelID (a Hugging Face id such as BAAI/bge-small-en-v1.5) or image",
            ),
            _ => {}
        }
        if let Some(image) = image {
            match parse_image_reference(image) {
                Ok((true, true)) if !image.contains('@') => {}
                _ => out.violation(
                    "spec.embedding.local.image",
                    format!("\"{image}\" must be a full image reference <repository>/<name>:<tag>, e.g. myregistry.azurecr.io/bge-small:1.0"),
                ),
            }
        }
        if let Some(model) = model
            && let Err(error) = kaito_core::catalog::validate_hf_id(model)
        {
            out.violation("spec.embedding.local.modelID", error.to_string());
        }
    }
    if let Some(remote) = &embedding.remote
        && let Err(why) = check_service_url(&remote.url)
    {
        out.violation("spec.embedding.remote.url", format!("{why}: use the embeddings endpoint's http(s) URL"));
    }
    if let Some(service) = &spec.inference_service {
        if let Some(url) = service.url.as_deref().filter(|u| !u.trim().is_empty())
            && let Err(why) = check_service_url(url)
        {
            out.violation(
                "spec.inferenceService.url",
                format!("{why}: use the LLM's chat completions URL, e.g. http://workspace-phi-4/v1/chat/completions"),
            );
        }
        if service.context_window_size <= 0 {
            out.violation(
                "spec.inferenceService.contextWindowSize",
                format!(
                    "{} is not a token count: set the LLM's context window, e.g. 8192",
                    service.context_window_size
                ),
            );
        }
    }
    if let Some(url) = spec.storage.as_ref().and_then(|s| s.vector_db.as_ref()).and_then(|v| v.url.as_deref())
        && let Err(why) = check_service_url(url)
    {
        out.violation("spec.storage.vectorDb.url", format!("{why}: use the database's URL, e.g. http://qdrant:6333"));
    }
    if let Some(it) = spec.compute.as_ref().and_then(|c| c.instance_type.as_deref()).filter(|s| !s.trim().is_empty()) {
        check_instance_type(it.trim(), ctx.cloud, "spec.compute.instanceType", out);
    }
    if let Some(guardrails) = spec.guardrails.as_ref().filter(|g| g.enabled) {
        let field = "spec.guardrails.configMapRef.name";
        match guardrails.config_map_ref.as_ref().map(|r| r.name.trim()).filter(|n| !n.is_empty()) {
            Some(name) => match ctx.config_map(name) {
                Err(()) => out.violation(
                    field,
                    format!("ConfigMap \"{name}\" does not exist in the RAGEngine's namespace: create it with a key {GUARDRAILS_KEY}"),
                ),
                Ok(Some(data)) if !data.contains_key(GUARDRAILS_KEY) => out.violation(
                    field,
                    format!("ConfigMap \"{name}\" has no key {GUARDRAILS_KEY}: put the guardrails policy under that key"),
                ),
                Ok(_) => {}
            },
            None => {
                if let Some(maps) = &ctx.release_config_maps
                    && !maps.get(DEFAULT_GUARDRAILS_CONFIG_MAP).is_some_and(|d| d.contains_key(GUARDRAILS_KEY))
                {
                    out.violation(
                        field,
                        format!("the default policy ConfigMap \"{DEFAULT_GUARDRAILS_CONFIG_MAP}\" with key {GUARDRAILS_KEY} is missing from the operator's namespace: reinstall the chart, or set configMapRef"),
                    );
                }
            }
        }
    }
}
