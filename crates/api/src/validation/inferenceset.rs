//! InferenceSet admission rules. Besides its own fields, the Workspace each replica would be is run through
//! the Workspace create rules, and its violations are reported at the InferenceSet's field paths.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::common::{check_cron, check_name_label, parse_duration_seconds};
use super::{Outcome, ValidationContext, Violation, validate_workspace_create};
use crate::labels::LABEL_INFERENCESET_CREATED_BY;
use crate::v1beta1::{InferenceSet, ResourceSpec, Workspace, WorkspaceSpec};

fn string_map(value: Option<&serde_json::Value>, field: &str, out: &mut Outcome) -> Option<BTreeMap<String, String>> {
    let value = value?;
    match serde_json::from_value::<BTreeMap<String, String>>(value.clone()) {
        Ok(map) => Some(map),
        Err(_) => {
            out.violation(field, "must map names to string values: quote numbers and booleans");
            None
        }
    }
}

/// The Workspace an InferenceSet creates for each replica (without its generated name suffix): template
/// labels and annotations, the set's label selector, the template's resource and inference.
///
/// Template metadata whose labels or annotations are not string maps is reported in `out`.
pub fn child_workspace(set: &InferenceSet, out: &mut Outcome) -> Workspace {
    let meta = set.spec.template.metadata.as_ref();
    let mut labels =
        string_map(meta.and_then(|m| m.get("labels")), "spec.template.metadata.labels", out).unwrap_or_default();
    if let Some(name) = &set.metadata.name {
        labels.insert(LABEL_INFERENCESET_CREATED_BY.to_string(), name.clone());
    }
    let annotations = string_map(meta.and_then(|m| m.get("annotations")), "spec.template.metadata.annotations", out);
    Workspace {
        metadata: ObjectMeta {
            name: None,
            generate_name: set.metadata.name.as_ref().map(|n| format!("{n}-")),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations,
            ..ObjectMeta::default()
        },
        spec: WorkspaceSpec {
            resource: ResourceSpec {
                count: None,
                instance_type: set.spec.template.resource.instance_type.clone(),
                label_selector: set.spec.label_selector.clone(),
                preferred_nodes: None,
                partition: set.spec.template.resource.partition.clone(),
            },
            inference: Some(set.spec.template.inference.clone()),
            tuning: None,
        },
        status: None,
    }
}

/// Maps a child Workspace field path to the InferenceSet field it comes from.
fn set_field(workspace_field: &str) -> String {
    if let Some(rest) = workspace_field.strip_prefix("resource.labelSelector") {
        return format!("spec.labelSelector{rest}");
    }
    format!("spec.template.{workspace_field}")
}

/// Validates an InferenceSet being created.
pub fn validate_inferenceset_create(set: &InferenceSet, ctx: &ValidationContext) -> Outcome {
    let mut out = Outcome::default();
    check_name_label(set.metadata.name.as_deref(), &mut out);
    if let Some(replicas) = set.spec.replicas
        && replicas < 0
    {
        out.violation("spec.replicas", format!("{replicas} is negative: set 0 or more replicas"));
    }
    if let Some(limit) = set.spec.node_count_limit
        && limit < 0
    {
        out.violation("spec.nodeCountLimit", format!("{limit} is negative: set a node count, or remove the limit"));
    }
    if let Some(window) = set.spec.auto_upgrade.as_ref().and_then(|a| a.maintenance_window.as_ref()) {
        if let Err(why) = check_cron(&window.schedule) {
            out.violation(
                "spec.autoUpgrade.maintenanceWindow.schedule",
                format!(
                    "\"{}\" is not a cron schedule: {why}; e.g. \"0 2 * * 6\" (Saturdays 02:00 UTC)",
                    window.schedule
                ),
            );
        }
        if let Some(duration) = &window.duration {
            match parse_duration_seconds(duration) {
                Ok(seconds) if seconds > 0.0 => {}
                Ok(_) => out.violation(
                    "spec.autoUpgrade.maintenanceWindow.duration",
                    format!("\"{duration}\" must be longer than zero: use e.g. 4h"),
                ),
                Err(why) => out.violation("spec.autoUpgrade.maintenanceWindow.duration", why),
            }
        }
    }
    let child = child_workspace(set, &mut out);
    let child_outcome = validate_workspace_create(&child, ctx);
    out.violations.extend(
        child_outcome.violations.into_iter().map(|v| Violation { field: set_field(&v.field), message: v.message }),
    );
    out.warnings.extend(child_outcome.warnings);
    out
}

/// Validates an update of an InferenceSet: the create rules, and the template's partition is immutable.
/// An object being deleted is always admitted.
pub fn validate_inferenceset_update(old: &InferenceSet, new: &InferenceSet, ctx: &ValidationContext) -> Outcome {
    if new.metadata.deletion_timestamp.is_some() {
        return Outcome::default();
    }
    let mut out = validate_inferenceset_create(new, ctx);
    if old.spec.template.resource.partition != new.spec.template.resource.partition {
        out.violation(
            "spec.template.resource.partition",
            "is immutable: create a new InferenceSet to change GPU partitioning",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::set_field;

    #[test]
    fn child_fields_map_to_set_fields() {
        assert_eq!(set_field("resource.labelSelector.matchLabels"), "spec.labelSelector.matchLabels");
        assert_eq!(set_field("resource.instanceType"), "spec.template.resource.instanceType");
        assert_eq!(set_field("inference.preset.name"), "spec.template.inference.preset.name");
        assert_eq!(
            set_field("metadata.annotations[kaito.sh/runtime]"),
            "spec.template.metadata.annotations[kaito.sh/runtime]"
        );
    }
}
