//! `kaito validate`: runs the admission rules on manifests, offline.
//!
//! ConfigMaps found in the given files are used for the content checks of the ConfigMaps a Workspace or
//! RAGEngine references; a referenced ConfigMap that is not among them is assumed to exist in the cluster.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kaito_api::validation::{
    Outcome, ValidationContext, ragengine_from_v1alpha1, validate_inferenceset_create, validate_ragengine_create,
    validate_workspace_create, validate_workspace_v1alpha1_create,
};
use kaito_api::{v1alpha1, v1beta1};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::ValidateArgs;
use crate::error::CliError;

/// One KAITO object found in a file.
struct Document {
    label: String,
    outcome: Outcome,
}

fn read(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|source| CliError::Read { path: path.to_path_buf(), source })?;
    Ok(text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<Value>, CliError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| CliError::Parse { path: path.to_path_buf(), message: format!("not valid YAML: {e}") })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn typed<T: DeserializeOwned>(path: &Path, doc: &Value, what: &str) -> Result<T, CliError> {
    serde_json::from_value(doc.clone()).map_err(|e| CliError::Parse {
        path: path.to_path_buf(),
        message: format!("{what} does not match the kaito.sh schema: {e}"),
    })
}

fn str_field<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn config_maps(docs: &[Value]) -> BTreeMap<String, BTreeMap<String, String>> {
    docs.iter()
        .filter(|d| str_field(d, "apiVersion") == "v1" && str_field(d, "kind") == "ConfigMap")
        .filter_map(|d| {
            let name = d.get("metadata")?.get("name")?.as_str()?.to_string();
            let data = d
                .get("data")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            Some((name, data))
        })
        .collect()
}

/// Validates the KAITO documents of one file.
fn validate_docs(path: &Path, docs: &[Value], ctx: &ValidationContext) -> Result<Vec<Document>, CliError> {
    let mut found = Vec::new();
    for doc in docs {
        let (api_version, kind) = (str_field(doc, "apiVersion"), str_field(doc, "kind"));
        if !api_version.starts_with("kaito.sh/") {
            continue;
        }
        let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("<unnamed>");
        let label = format!("{kind}/{name}");
        let outcome = match (api_version, kind) {
            ("kaito.sh/v1beta1", "Workspace") => {
                validate_workspace_create(&typed::<v1beta1::Workspace>(path, doc, &label)?, ctx)
            }
            ("kaito.sh/v1alpha1", "Workspace") => {
                validate_workspace_v1alpha1_create(&typed::<v1alpha1::Workspace>(path, doc, &label)?, ctx)
            }
            ("kaito.sh/v1beta1", "RAGEngine") => {
                validate_ragengine_create(&typed::<v1beta1::RAGEngine>(path, doc, &label)?, ctx)
            }
            ("kaito.sh/v1alpha1", "RAGEngine") => {
                let old: v1alpha1::RAGEngine = typed(path, doc, &label)?;
                let mut outcome = validate_ragengine_create(&ragengine_from_v1alpha1(&old), ctx);
                outcome.warn("kaito.sh/v1alpha1 RAGEngine is deprecated: use kaito.sh/v1beta1");
                outcome
            }
            ("kaito.sh/v1beta1", "InferenceSet") => {
                validate_inferenceset_create(&typed::<v1beta1::InferenceSet>(path, doc, &label)?, ctx)
            }
            _ => {
                return Err(CliError::Parse {
                    path: path.to_path_buf(),
                    message: format!(
                        "{api_version} {kind} is not something KAITO serves: use kaito.sh/v1beta1 Workspace, RAGEngine or InferenceSet"
                    ),
                });
            }
        };
        found.push(Document { label, outcome });
    }
    Ok(found)
}

/// Validates every file; prints `FILE: ok` on `out` for clean files and `FILE: field: message` on `err` for
/// each violation. Returns the exit code: 0 all valid, 1 some violation, 2 some file unreadable or
/// unparseable (reported on `err`, the other files are still checked).
pub fn run<O: Write, E: Write>(out: &mut O, err: &mut E, args: &ValidateArgs) -> Result<u8, CliError> {
    let mut code = 0u8;
    let mut files: Vec<(PathBuf, Vec<Value>)> = Vec::new();
    for path in &args.files {
        match read(path).and_then(|text| parse(path, &text)) {
            Ok(docs) => files.push((path.clone(), docs)),
            Err(error) => {
                writeln!(err, "error: {error}")?;
                code = 2;
            }
        }
    }
    let all_docs: Vec<Value> = files.iter().flat_map(|(_, docs)| docs.iter().cloned()).collect();
    let ctx = ValidationContext {
        config_maps: Some(config_maps(&all_docs)),
        config_maps_complete: false,
        ..ValidationContext::offline(args.provisioner.into(), args.cloud.into())
    };
    for (path, docs) in &files {
        let shown = path.display();
        let documents = match validate_docs(path, docs, &ctx) {
            Ok(documents) => documents,
            Err(error) => {
                writeln!(err, "error: {error}")?;
                code = 2;
                continue;
            }
        };
        let several = documents.len() > 1;
        let mut clean = true;
        for document in &documents {
            let prefix = if several { format!("{}: ", document.label) } else { String::new() };
            for warning in &document.outcome.warnings {
                writeln!(err, "{shown}: {prefix}warning: {warning}")?;
            }
            for violation in &document.outcome.violations {
                writeln!(err, "{shown}: {prefix}{violation}")?;
                clean = false;
            }
        }
        if clean {
            writeln!(out, "{shown}: ok")?;
        } else if code == 0 {
            code = 1;
        }
    }
    Ok(code)
}
