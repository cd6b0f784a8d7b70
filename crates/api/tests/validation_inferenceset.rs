//! InferenceSet admission rules, including the child Workspace run through the Workspace rules.

use kaito_api::v1beta1::InferenceSet;
use kaito_api::validation::{
    Cloud, NodeProvisioner, ValidationContext, validate_inferenceset_create, validate_inferenceset_update,
};
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

fn set(patch: Value) -> InferenceSet {
    let mut value = json!({
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "InferenceSet",
        "metadata": {"name": "phi", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "labelSelector": {"matchLabels": {"apps": "phi"}},
            "template": {
                "resource": {"instanceType": "Standard_NC24ads_A100_v4"},
                "inference": {"preset": {"name": "phi-4-mini-instruct"}}
            },
            "autoUpgrade": {"enabled": true, "maintenanceWindow": {"schedule": "0 2 * * 6", "duration": "4h"}}
        }
    });
    merge(&mut value, &patch);
    serde_json::from_value(value).expect("test InferenceSet parses")
}

type Case<'a> = (&'a str, Value, Option<(&'a str, &'a str)>);

fn expect(ctx: &ValidationContext, cases: Vec<Case<'_>>) {
    for (name, patch, expected) in cases {
        let outcome = validate_inferenceset_create(&set(patch), ctx);
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
fn own_fields() {
    expect(
        &ValidationContext::default(),
        vec![
            ("valid", json!({}), None),
            ("zero replicas", json!({"spec": {"replicas": 0}}), None),
            ("name", json!({"metadata": {"name": "phi.set"}}), Some(("metadata.name", "not a valid name"))),
            ("negative replicas", json!({"spec": {"replicas": -1}}), Some(("spec.replicas", "negative"))),
            (
                "bad cron",
                json!({"spec": {"autoUpgrade": {"maintenanceWindow": {"schedule": "every night"}}}}),
                Some(("spec.autoUpgrade.maintenanceWindow.schedule", "not a cron schedule")),
            ),
            (
                "zero duration",
                json!({"spec": {"autoUpgrade": {"maintenanceWindow": {"duration": "0s"}}}}),
                Some(("spec.autoUpgrade.maintenanceWindow.duration", "longer than zero")),
            ),
        ],
    );
}

#[test]
fn child_workspace_rules_map_to_set_fields() {
    expect(
        &ValidationContext::default(),
        vec![
            (
                "missing instance type",
                json!({"spec": {"template": {"resource": {"instanceType": null}}}}),
                Some(("spec.template.resource.instanceType", "required")),
            ),
            (
                "unknown preset",
                json!({"spec": {"template": {"inference": {"preset": {"name": "gpt-5"}}}}}),
                Some(("spec.template.inference.preset.name", "unknown model preset")),
            ),
            (
                "reserved selector",
                json!({"spec": {"labelSelector": {"matchLabels": {"apps": null, "kaito.sh/workspace": "x"}}}}),
                Some(("spec.labelSelector.matchLabels", "KAITO-managed")),
            ),
            (
                "annotation",
                json!({"spec": {"template": {"metadata": {"annotations": {"kaito.sh/runtime": "tgi"}}}}}),
                Some(("spec.template.metadata.annotations[kaito.sh/runtime]", "vllm or transformers")),
            ),
            (
                "non-string annotations",
                json!({"spec": {"template": {"metadata": {"annotations": {"a": 1}}}}}),
                Some(("spec.template.metadata.annotations", "string values")),
            ),
        ],
    );
    expect(
        &ValidationContext::offline(NodeProvisioner::Byo, Cloud::Azure),
        vec![
            ("byo with type", json!({}), Some(("spec.template.resource.instanceType", "must be empty"))),
            ("byo without type", json!({"spec": {"template": {"resource": {"instanceType": null}}}}), None),
        ],
    );
}

#[test]
fn update_keeps_partition() {
    let ctx = ValidationContext::offline(NodeProvisioner::Byo, Cloud::Azure);
    let old = set(json!({"spec": {"template": {"resource": {"instanceType": null}}}}));
    let mut new = old.clone();
    new.spec.replicas = Some(5);
    assert!(validate_inferenceset_update(&old, &new, &ctx).is_ok());
    new.spec.template.resource.partition = Some(kaito_api::v1beta1::PartitionSpec {
        mode: kaito_api::v1beta1::PartitionMode::Accelerator,
        profile: None,
        count: Some(1),
    });
    assert!(validate_inferenceset_update(&old, &new, &ctx).has_violation_on("spec.template.resource.partition"));
}
