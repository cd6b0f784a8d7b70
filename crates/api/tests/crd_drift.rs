//! The checked-in CRDs under config/crd must be exactly what the Rust types generate.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/crd");
    let mut stale = Vec::new();
    for generated in kaito_api::crd::all().expect("CRDs generate") {
        let expected = kaito_api::crd::to_yaml(&generated.crd).expect("CRD serializes");
        let path = dir.join(&generated.file_name);
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        if actual != expected {
            stale.push(generated.file_name);
        }
    }
    assert!(
        stale.is_empty(),
        "config/crd is stale for {stale:?}: run `cargo run -p kaito-api --bin crdgen` and commit the result"
    );
}

#[test]
fn workspace_crd_serves_both_versions_with_v1beta1_stored() {
    let all = kaito_api::crd::all().unwrap();
    let ws = &all.iter().find(|g| g.crd.spec.names.kind == "Workspace").unwrap().crd;
    let mut versions: Vec<(&str, bool, bool)> =
        ws.spec.versions.iter().map(|v| (v.name.as_str(), v.served, v.storage)).collect();
    versions.sort();
    assert_eq!(versions, vec![("v1alpha1", true, false), ("v1beta1", true, true)]);
    assert_eq!(ws.spec.names.short_names.as_deref(), Some(&["wk".to_string(), "wks".to_string()][..]));
}

#[test]
fn workspace_schema_has_no_spec_and_top_level_fields() {
    let all = kaito_api::crd::all().unwrap();
    let ws = &all.iter().find(|g| g.crd.spec.names.kind == "Workspace").unwrap().crd;
    for version in &ws.spec.versions {
        let schema = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        let props = schema.properties.as_ref().unwrap();
        assert!(!props.contains_key("spec"), "{} must not have spec", version.name);
        for field in ["resource", "inference", "tuning", "status"] {
            assert!(props.contains_key(field), "{} lacks top-level {field}", version.name);
        }
    }
}

#[test]
fn inferenceset_has_the_scale_subresource() {
    let all = kaito_api::crd::all().unwrap();
    let is = &all.iter().find(|g| g.crd.spec.names.kind == "InferenceSet").unwrap().crd;
    let scale = is.spec.versions[0].subresources.as_ref().unwrap().scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
}
