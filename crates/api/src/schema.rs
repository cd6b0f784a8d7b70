//! Schema helpers for fields whose OpenAPI schema is not the one their Rust type would derive.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// An object the apiserver stores as given (`x-kubernetes-preserve-unknown-fields`), as upstream does
/// for embedded core types (PodTemplateSpec, VolumeSource) to keep the CRD small.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `metav1.LabelSelector` with the documented shape, without k8s-openapi's long descriptions.
pub fn label_selector(generator: &mut SchemaGenerator) -> Schema {
    let _ = generator;
    json_schema!({
        "type": "object",
        "description": "Selects the nodes (and is stamped on the NodeClaims) of this workload. matchLabels \
            are ANDed with matchExpressions; only `In` expressions with one value can be turned into labels.",
        "properties": {
            "matchLabels": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Labels a node must carry, as key: value pairs."
            },
            "matchExpressions": {
                "type": "array",
                "description": "Label requirements; each names a key, an operator (In, NotIn, Exists, DoesNotExist) and values.",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "description": "Label key the requirement applies to."},
                        "operator": {"type": "string", "description": "One of In, NotIn, Exists, DoesNotExist."},
                        "values": {"type": "array", "items": {"type": "string"}, "description": "Values for In and NotIn; empty for Exists and DoesNotExist."}
                    }
                }
            }
        },
        "x-kubernetes-map-type": "atomic",
    })
}

/// Builds the schema of `T` the way kube-derive does for a CRD (inlined, structural, nullable options).
pub fn structural_schema_for<T: JsonSchema>() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube_core::schema::StructuralSchemaRewriter)
        .with_transform(kube_core::schema::OptionalEnum)
        .with_transform(kube_core::schema::OptionalIntOrString)
        .into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default()
}
