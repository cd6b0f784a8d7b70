//! Every example manifest parses into the typed API, and the wire shape survives a round trip.

use std::path::Path;

use kaito_api::v1beta1::Workspace;

fn example(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

#[test]
fn phi_4_mini_example_reads_top_level_fields() {
    let ws: Workspace = serde_saphyr::from_str(&example("inference/kaito_workspace_phi_4_mini.yaml")).unwrap();
    assert_eq!(ws.metadata.name.as_deref(), Some("workspace-phi-4-mini"));
    assert_eq!(ws.spec.resource.instance_type.as_deref(), Some("Standard_NC24ads_A100_v4"));
    assert_eq!(ws.spec.inference.as_ref().unwrap().preset.as_ref().unwrap().name, "phi-4-mini-instruct");

    let wire = serde_json::to_value(&ws).unwrap();
    assert!(wire.get("spec").is_none(), "Workspace must not serialize a spec: {wire}");
    assert_eq!(wire["apiVersion"], "kaito.sh/v1beta1");
    assert_eq!(wire["resource"]["labelSelector"]["matchLabels"]["apps"], "phi-4-mini");
    let back: Workspace = serde_json::from_value(wire).unwrap();
    assert_eq!(back, ws);
}
