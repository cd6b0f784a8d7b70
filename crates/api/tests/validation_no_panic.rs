//! The admission rules never panic, whatever strings a user writes.

use kaito_api::v1beta1::{InferenceSet, RAGEngine, Workspace};
use kaito_api::validation::{
    NodeProvisioner, ValidationContext, validate_inferenceset_create, validate_ragengine_create,
    validate_workspace_create,
};
use proptest::prelude::*;
use serde_json::json;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-z0-9./:@_-]{0,40}",
        Just("http://[::1]:80/".to_string()),
        Just("µs".to_string()),
        Just("[".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rules_never_panic(
        name in text(), preset in text(), it in text(), image in text(), url in text(),
        cron in text(), duration in text(), strength in text(), annotation in text(), byo in any::<bool>(),
    ) {
        let ctx = ValidationContext {
            provisioner: if byo { NodeProvisioner::Byo } else { NodeProvisioner::AzureGpuProvisioner },
            ..ValidationContext::default()
        };
        let ws: Workspace = serde_json::from_value(json!({
            "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": name, "annotations": {
                "kaito.sh/runtime": annotation, "kaito.sh/performance-mode": annotation,
                "kaito.sh/node-image-family": annotation}},
            "resource": {"instanceType": it, "labelSelector": {"matchLabels": {"apps": name}},
                         "partition": {"mode": "mig", "profile": preset}},
            "inference": {"preset": {"name": preset}, "adapters": [
                {"source": {"name": name, "image": image, "urls": [url]}, "strength": strength}]},
            "tuning": {"preset": {"name": preset}, "method": "lora",
                       "input": {"name": name, "urls": [url]}, "output": {"image": image}}
        })).expect("workspace");
        let _ = validate_workspace_create(&ws, &ctx);

        let rag: RAGEngine = serde_json::from_value(json!({
            "apiVersion": "kaito.sh/v1beta1", "kind": "RAGEngine", "metadata": {"name": name},
            "spec": {"compute": {"instanceType": it, "labelSelector": {}},
                     "embedding": {"local": {"image": image, "modelID": preset}, "remote": {"url": url}},
                     "inferenceService": {"url": url, "contextWindowSize": 1}}
        })).expect("ragengine");
        let _ = validate_ragengine_create(&rag, &ctx);

        let set: InferenceSet = serde_json::from_value(json!({
            "apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet", "metadata": {"name": name},
            "spec": {"labelSelector": {"matchLabels": {"apps": "x"}},
                     "template": {"resource": {"instanceType": it}, "inference": {"preset": {"name": preset}}},
                     "autoUpgrade": {"maintenanceWindow": {"schedule": cron, "duration": duration}}}
        })).expect("inferenceset");
        let _ = validate_inferenceset_create(&set, &ctx);
    }
}
