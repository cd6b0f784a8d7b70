//! RAGEngine admission rules: table tests with valid and invalid cases.

use std::collections::BTreeMap;

use kaito_api::v1beta1::RAGEngine;
use kaito_api::validation::{ValidationContext, validate_ragengine_create, validate_ragengine_update};
use serde_json::{Value, json};

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn rag(patch: Value) -> RAGEngine {
    let mut value = json!({
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "RAGEngine",
        "metadata": {"name": "rag", "namespace": "default"},
        "spec": {
            "embedding": {"local": {"modelID": "BAAI/bge-small-en-v1.5"}},
            "inferenceService": {"url": "http://workspace-phi-4-mini/v1/chat/completions", "contextWindowSize": 8192}
        }
    });
    merge(&mut value, &patch);
    serde_json::from_value(value).expect("test RAGEngine parses")
}

type Case<'a> = (&'a str, Value, Option<(&'a str, &'a str)>);

fn expect(ctx: &ValidationContext, cases: Vec<Case<'_>>) {
    for (name, patch, expected) in cases {
        let outcome = validate_ragengine_create(&rag(patch), ctx);
        match expected {
            None => assert!(outcome.is_ok(), "{name}: {outcome}"),
            Some((field, phrase)) => assert!(
                outcome.violations.iter().any(|v| v.field == field && v.message.contains(phrase)),
                "{name}: expected {field}: …{phrase}…, got:\n{outcome}"
            ),
        }
    }
}

#[test]
fn embedding_rules() {
    expect(
        &ValidationContext::default(),
        vec![
            ("local model", json!({}), None),
            (
                "remote",
                json!({"spec": {"embedding": {"local": null, "remote": {"url": "https://api.example.com/v1/embeddings"}}}}),
                None,
            ),
            (
                "local image",
                json!({"spec": {"embedding": {"local": {"modelID": null, "image": "myregistry.azurecr.io/bge:1.0"}}}}),
                None,
            ),
            (
                "both",
                json!({"spec": {"embedding": {"remote": {"url": "https://api.example.com"}}}}),
                Some(("spec.embedding", "both set")),
            ),
            ("neither", json!({"spec": {"embedding": {"local": null}}}), Some(("spec.embedding", "set local"))),
            (
                "image and model",
                json!({"spec": {"embedding": {"local": {"image": "myregistry.azurecr.io/bge:1.0"}}}}),
                Some(("spec.embedding.local", "both set")),
            ),
            (
                "image without tag",
                json!({"spec": {"embedding": {"local": {"modelID": null, "image": "myregistry.azurecr.io/bge"}}}}),
                Some(("spec.embedding.local.image", "<repository>/<name>:<tag>")),
            ),
            (
                "bad remote url",
                json!({"spec": {"embedding": {"local": null, "remote": {"url": "not a url"}}}}),
                Some(("spec.embedding.remote.url", "not a valid URL")),
            ),
        ],
    );
}

#[test]
fn inference_service_rules() {
    expect(
        &ValidationContext::default(),
        vec![
            ("retrieve only", json!({"spec": {"inferenceService": null}}), None),
            (
                "bad url",
                json!({"spec": {"inferenceService": {"url": "workspace-phi/v1/chat"}}}),
                Some(("spec.inferenceService.url", "not a valid URL")),
            ),
            (
                "zero window",
                json!({"spec": {"inferenceService": {"contextWindowSize": 0}}}),
                Some(("spec.inferenceService.contextWindowSize", "not a token count")),
            ),
        ],
    );
}

#[test]
fn compute_and_guardrails_rules() {
    let compute = |it: &str| json!({"spec": {"compute": {"instanceType": it, "labelSelector": {"matchLabels": {"apps": "rag"}}}}});
    expect(
        &ValidationContext::default(),
        vec![
            ("known sku", compute("Standard_NC24ads_A100_v4"), None),
            (
                "unknown sku",
                compute("Standard_E8s_v5"),
                Some(("spec.compute.instanceType", "not a supported azure GPU")),
            ),
            (
                "guardrails offline",
                json!({"spec": {"guardrails": {"enabled": true, "configMapRef": {"name": "g"}}}}),
                None,
            ),
        ],
    );
    let maps = |key: &str| ValidationContext {
        config_maps: Some(BTreeMap::from([("g".to_string(), BTreeMap::from([(key.to_string(), String::new())]))])),
        ..ValidationContext::default()
    };
    let guard = json!({"spec": {"guardrails": {"enabled": true, "configMapRef": {"name": "g"}}}});
    expect(&maps("guardrails.yaml"), vec![("guardrails present", guard.clone(), None)]);
    expect(
        &maps("policy.yaml"),
        vec![(
            "guardrails key missing",
            guard.clone(),
            Some(("spec.guardrails.configMapRef.name", "has no key guardrails.yaml")),
        )],
    );
    let empty = ValidationContext { config_maps: Some(BTreeMap::new()), ..ValidationContext::default() };
    expect(
        &empty,
        vec![("guardrails map missing", guard, Some(("spec.guardrails.configMapRef.name", "does not exist")))],
    );
}

#[test]
fn update_keeps_compute() {
    let ctx = ValidationContext::default();
    let with_compute = rag(
        json!({"spec": {"compute": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"apps": "rag"}}}}}),
    );
    let without = rag(json!({}));
    assert!(validate_ragengine_update(&with_compute, &with_compute, &ctx).is_ok());
    assert!(validate_ragengine_update(&without, &with_compute, &ctx).has_violation_on("spec.compute"));
    let mut changed = with_compute.clone();
    if let Some(c) = changed.spec.compute.as_mut() {
        c.instance_type = Some("Standard_NC48ads_A100_v4".into());
        c.count = Some(2);
    }
    let outcome = validate_ragengine_update(&with_compute, &changed, &ctx);
    assert!(outcome.has_violation_on("spec.compute.instanceType"), "{outcome}");
    assert!(outcome.has_violation_on("spec.compute.count"), "{outcome}");
    let mut bad = without.clone();
    bad.spec.inference_service = None;
    bad.spec.embedding.local = None;
    assert!(validate_ragengine_update(&without, &bad, &ctx).has_violation_on("spec.embedding"));
}
