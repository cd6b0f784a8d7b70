//! `review` on real AdmissionReview JSON, as the API server sends it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaito_api::validation::{NodeProvisioner, ValidationContext};
use kaito_core::Cloud;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionResponse, AdmissionReview};
use serde_json::{Value, json};

use super::review;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The documents of a YAML file, as JSON.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read example");
    serde_saphyr::from_multiple(&text).expect("parse example")
}

/// The KAITO object of a file, and a context holding the file's ConfigMaps (as the webhook would list them).
fn object_and_context(path: &Path) -> (Value, ValidationContext) {
    let mut ctx = ValidationContext::offline(NodeProvisioner::AzureGpuProvisioner, Cloud::Azure);
    let mut maps = BTreeMap::new();
    let mut object = None;
    for doc in documents(path) {
        if doc["kind"] == "ConfigMap" {
            let data: BTreeMap<String, String> = serde_json::from_value(doc["data"].clone()).unwrap_or_default();
            maps.insert(doc["metadata"]["name"].as_str().expect("name").to_string(), data);
        } else {
            object = Some(doc);
        }
    }
    ctx.config_maps = Some(maps);
    (object.expect("a KAITO object"), ctx)
}

/// An AdmissionReview as the API server posts it.
fn admission_review(operation: &str, object: &Value, old: Option<&Value>) -> AdmissionReview<DynamicObject> {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').expect("group/version");
    let kind = object["kind"].as_str().expect("kind");
    let resource = format!("{}s", kind.to_lowercase());
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    serde_json::from_value(review).expect("a valid AdmissionReview")
}

fn response_json(response: &AdmissionResponse) -> Value {
    serde_json::to_value(response.clone().into_review()).expect("serialize")
}

#[test]
fn every_invalid_example_is_denied_with_its_rule_message() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples().join("invalid")).expect("examples/invalid") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no # expect: line", path.display()));
        let (object, ctx) = object_and_context(&path);
        let response = review(admission_review("CREATE", &object, None), &ctx);
        assert!(!response.allowed, "{} was admitted", path.display());
        // `# expect: <field>: <phrase>`: the denial names the field and the rule's message holds the phrase.
        let (field, phrase) = expect.split_once(": ").unwrap_or(("", expect));
        assert!(
            response.result.message.contains(&format!("{field}: ")) && response.result.message.contains(phrase),
            "{}: {:?} does not contain {expect:?}",
            path.display(),
            response.result.message
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} invalid examples");
}

#[test]
fn valid_examples_are_admitted() {
    for file in [
        "inference/kaito_workspace_phi_4_mini.yaml",
        "inference/kaito_workspace_llama_3_3_70b_instruct.yaml",
        "inference/kaito_workspace_custom_template.yaml",
        "tuning/kaito_workspace_tuning_qlora_phi_3.yaml",
        "ragengine/kaito_ragengine_phi_4_mini.yaml",
        "inferenceset/kaito_inferenceset_phi_4_mini.yaml",
    ] {
        let (object, ctx) = object_and_context(&examples().join(file));
        let response = review(admission_review("CREATE", &object, None), &ctx);
        assert!(response.allowed, "{file}: {}", response.result.message);
    }
    // The bring-your-own example is valid for a controller run with --node-provisioner=byo.
    let (object, mut ctx) = object_and_context(&examples().join("inference/kaito_workspace_byo_nodes.yaml"));
    ctx.provisioner = NodeProvisioner::Byo;
    let response = review(admission_review("CREATE", &object, None), &ctx);
    assert!(response.allowed, "byo: {}", response.result.message);
}

#[test]
fn changing_the_instance_type_is_denied() {
    let (old, ctx) = object_and_context(&examples().join("inference/kaito_workspace_phi_4_mini.yaml"));
    let mut new = old.clone();
    new["resource"]["instanceType"] = json!("Standard_NC48ads_A100_v4");
    let response = review(admission_review("UPDATE", &new, Some(&old)), &ctx);
    insta::assert_json_snapshot!(response_json(&response));
}

#[test]
fn an_unchanged_update_is_admitted() {
    let (old, ctx) = object_and_context(&examples().join("inference/kaito_workspace_phi_4_mini.yaml"));
    let mut new = old.clone();
    new["metadata"]["labels"] = json!({"team": "a"});
    let response = review(admission_review("UPDATE", &new, Some(&old)), &ctx);
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn a_deprecated_field_warns_but_is_admitted() {
    let (mut object, ctx) = object_and_context(&examples().join("inference/kaito_workspace_phi_4_mini.yaml"));
    object["resource"]["count"] = json!(1);
    let response = review(admission_review("CREATE", &object, None), &ctx);
    assert!(response.allowed, "{}", response.result.message);
    let warnings = response.warnings.unwrap_or_default();
    assert!(warnings.iter().any(|w| w.contains("resource.count is deprecated")), "{warnings:?}");
}

#[test]
fn the_bypass_annotation_skips_the_gpu_memory_check() {
    let path = examples().join("invalid/workspace-transformers-insufficient-gpu-memory.yaml");
    let (mut object, ctx) = object_and_context(&path);
    assert!(!review(admission_review("CREATE", &object, None), &ctx).allowed);
    object["metadata"]["annotations"]["kaito.sh/bypass-resource-checks"] = json!("true");
    let response = review(admission_review("CREATE", &object, None), &ctx);
    assert!(response.allowed, "{}", response.result.message);
}

#[test]
fn other_kinds_and_empty_reviews_are_denied_and_deletes_admitted() {
    let ctx = ValidationContext::default();
    let pod = json!({"apiVersion": "v1/v1", "kind": "Pod", "metadata": {"name": "p"}});
    let response = review(admission_review("CREATE", &pod, None), &ctx);
    assert!(!response.allowed);
    assert_eq!(response.result.message, "v1/v1 Pod is not validated by this webhook");

    let (object, _) = object_and_context(&examples().join("invalid/workspace-unknown-preset.yaml"));
    assert!(review(admission_review("DELETE", &object, None), &ctx).allowed);

    let empty: AdmissionReview<DynamicObject> =
        serde_json::from_value(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("parse");
    assert!(!review(empty, &ctx).allowed);
}

#[test]
fn v1alpha1_workspaces_are_validated() {
    let (mut object, ctx) = object_and_context(&examples().join("invalid/workspace-unknown-preset.yaml"));
    object["apiVersion"] = json!("kaito.sh/v1alpha1");
    let response = review(admission_review("CREATE", &object, None), &ctx);
    assert!(!response.allowed);
    assert!(response.result.message.contains("unknown model preset"), "{}", response.result.message);
}
