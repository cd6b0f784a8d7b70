//! Schema helpers for fields whose OpenAPI schema is not the one their Rust type would derive.

use schemars::{Schema, SchemaGenerator, json_schema};

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
