//! Process tests of the `kaito` binary: output snapshots, exit codes, and every example manifest.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn kaito() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaito"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn stdout_of(args: &[&str]) -> String {
    let output = kaito().args(args).output().expect("kaito runs");
    assert!(output.status.success(), "kaito {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn plan_phi_4_mini_on_azure() {
    insta::assert_snapshot!(stdout_of(&["plan", "phi-4-mini-instruct", "--cloud", "azure"]));
}

#[test]
fn plan_defaults_to_azure() {
    assert_eq!(
        stdout_of(&["plan", "phi-4-mini-instruct"]),
        stdout_of(&["plan", "phi-4-mini-instruct", "--cloud", "azure"])
    );
}

#[test]
fn plan_json() {
    insta::assert_snapshot!(stdout_of(&["plan", "phi-4-mini-instruct", "--cloud", "azure", "-o", "json"]));
}

#[test]
fn plan_multi_node_on_an_instance_type() {
    let text =
        stdout_of(&["plan", "llama-3.3-70b-instruct", "--instance-type", "Standard_NC24ads_A100_v4", "-o", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(plan["sku"], "Standard_NC24ads_A100_v4");
    assert!(plan["nodes"].as_u64().is_some_and(|n| n > 1), "{plan}");
    assert_eq!(plan["pipelineParallel"], plan["nodes"]);
}

#[test]
fn plan_yaml_and_errors() {
    let yaml = stdout_of(&["plan", "phi-4", "--cloud", "aws", "-o", "yaml"]);
    assert!(yaml.contains("model: phi-4"), "{yaml}");
    kaito().args(["plan", "gpt-5"]).assert().code(2).stderr(predicate::str::contains("unknown model preset \"gpt-5\""));
    kaito()
        .args(["plan", "phi-4", "--instance-type", "standard_nc24ads_a100_v4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean Standard_NC24ads_A100_v4"));
    kaito()
        .args(["plan", "phi-4", "--max-model-len", "100000"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("set vllm.max-model-len to at most 16384"));
}

#[test]
fn models_show_phi_4() {
    insta::assert_snapshot!(stdout_of(&["models", "show", "phi-4"]));
}

#[test]
fn models_show_phi_4_json() {
    insta::assert_snapshot!(stdout_of(&["models", "show", "phi-4", "-o", "json"]));
}

#[test]
fn models_list_filters_by_runtime() {
    let all = stdout_of(&["models", "list"]);
    let transformers = stdout_of(&["models", "list", "--runtime", "transformers"]);
    assert!(all.starts_with("NAME"), "{all}");
    assert!(all.contains("phi-4-mini-instruct") && !transformers.contains("phi-4-mini-instruct"));
    assert!(transformers.contains("phi-4 "));
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&stdout_of(&["models", "list", "-o", "json"])).expect("json list");
    assert!(json.len() > 40, "{}", json.len());
}

#[test]
fn kubectl_plugin_binary_is_the_same_program() {
    Command::new(env!("CARGO_BIN_EXE_kubectl-kaito"))
        .args(["models", "show", "phi-4"])
        .assert()
        .success()
        .stdout(predicate::str::contains("microsoft/phi-4"));
}

#[test]
fn validate_exit_codes() {
    let root = repo_root();
    let valid = root.join("examples/inference/kaito_workspace_phi_4_mini.yaml");
    let invalid = root.join("examples/invalid/workspace-unknown-preset.yaml");
    kaito().arg("validate").arg("-f").arg(&valid).assert().code(0).stdout(predicate::str::ends_with(": ok\n"));
    kaito()
        .arg("validate")
        .arg("-f")
        .arg(&valid)
        .arg("-f")
        .arg(&invalid)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("inference.preset.name: unknown model preset \"gpt-5\""));
    kaito()
        .args(["validate", "-f", "/nonexistent/workspace.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read /nonexistent/workspace.yaml"));
    kaito()
        .args(["validate", "-f", "-"])
        .write_stdin("kind: [unclosed\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not valid YAML"));
    kaito()
        .args(["validate", "-f", "-"])
        .write_stdin("apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: x}\nresource: {}\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not match the kaito.sh schema"));
    kaito()
        .args(["validate", "-f", "-"])
        .write_stdin("apiVersion: kaito.sh/v1beta2\nkind: Workspace\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not something KAITO serves"));
    // Unreadable input wins over violations.
    kaito().arg("validate").arg("-f").arg(&invalid).args(["-f", "/nonexistent.yaml"]).assert().code(2);
    kaito().arg("validate").assert().code(2);
}

#[test]
fn validate_provisioner_flag() {
    let byo = "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: byo}\nresource:\n  labelSelector: {matchLabels: {apps: byo}}\ninference: {preset: {name: phi-4-mini-instruct}}\n";
    kaito().args(["validate", "-f", "-"]).write_stdin(byo).assert().code(1);
    kaito().args(["validate", "--provisioner", "byo", "-f", "-"]).write_stdin(byo).assert().code(0);
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("examples dir").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every example validates offline; a file whose comments mention `node-provisioner=byo` (or
/// `provisioner: byo`) is checked with `--provisioner byo`.
#[test]
fn every_example_is_valid() {
    let mut files = Vec::new();
    yaml_files(&repo_root().join("examples"), &mut files);
    let files: Vec<_> = files.into_iter().filter(|p| !p.components().any(|c| c.as_os_str() == "invalid")).collect();
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let byo = text
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .any(|l| l.contains("node-provisioner=byo") || l.contains("provisioner: byo"));
        let provisioner = if byo { "byo" } else { "azure-gpu-provisioner" };
        let output =
            kaito().arg("validate").args(["--provisioner", provisioner, "-f"]).arg(&file).output().expect("kaito runs");
        assert!(
            output.status.success(),
            "{} should be valid:\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Every file in examples/invalid fails with the field and phrase of its `# expect: <field>: <phrase>` line.
#[test]
fn every_invalid_example_fails_as_expected() {
    let mut files = Vec::new();
    yaml_files(&repo_root().join("examples/invalid"), &mut files);
    assert!(files.len() >= 30, "{}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let (field, phrase) =
            expect.split_once(": ").unwrap_or_else(|| panic!("{}: `# expect: <field>: <phrase>`", file.display()));
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.starts_with("workspace-") || name.starts_with("ragengine-") || name.starts_with("inferenceset-"),
            "{name} must be named <kind>-<rule>.yaml"
        );
        let output = kaito().arg("validate").arg("-f").arg(&file).output().expect("kaito runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{}: expected exit 1, stderr:\n{stderr}", file.display());
        let wanted = format!("{}: {field}: ", file.display());
        assert!(
            stderr.lines().any(|l| l.starts_with(&wanted) && l.contains(phrase)),
            "{}: expected `{field}: …{phrase}…`, got:\n{stderr}",
            file.display()
        );
    }
}
