//! The admission webhook through the real API server: every invalid example is rejected with its rule's
//! message, every valid example is admitted, immutable fields stay immutable, the bypass annotation works and
//! deprecated fields warn.
//!
//! The webhook runs in-process on 127.0.0.1 and is registered by URL (the API server runs on the same host).
//! Its ValidatingWebhookConfiguration is cluster-wide while other tests run in parallel in the same cluster,
//! so it only applies to namespaces carrying a label that only this test's namespace has.
#![cfg(feature = "cluster")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kaito_api::validation::{NodeProvisioner, ValidationContext};
use kaito_controller::webhook::{self, cert, server};
use kaito_core::Cloud;
use kaito_tests::{FIELD_MANAGER, kubectl};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

const SCOPE_LABEL: &str = "kaito.sh/webhook-test";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Runs kubectl; returns (succeeded, stdout, stderr).
fn kubectl_out(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = Command::new(kubectl()).args(args).output().context("running kubectl")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn configuration(name: &str, port: u16, namespace: &str) -> ValidatingWebhookConfiguration {
    let mut config = ValidatingWebhookConfiguration::default();
    config.metadata.name = Some(name.to_string());
    config.webhooks = Some(
        webhook::HOOKS
            .iter()
            .map(|hook| ValidatingWebhook {
                name: hook.name.to_string(),
                admission_review_versions: vec!["v1".into()],
                client_config: WebhookClientConfig {
                    url: Some(format!("https://127.0.0.1:{port}{}", hook.path)),
                    // Left empty on purpose: cert::patch_ca_bundle fills it in, as the operator does.
                    ca_bundle: None,
                    service: None,
                },
                failure_policy: Some("Fail".into()),
                side_effects: "None".into(),
                timeout_seconds: Some(10),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some([(SCOPE_LABEL.to_string(), namespace.to_string())].into()),
                    match_expressions: None,
                }),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec![webhook::GROUP.into()]),
                    api_versions: Some(hook.versions.iter().map(|v| v.to_string()).collect()),
                    operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                    resources: Some(vec![hook.resource.into()]),
                    scope: Some("Namespaced".into()),
                }]),
                ..ValidatingWebhook::default()
            })
            .collect(),
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_through_the_api_server() -> anyhow::Result<()> {
    let client = kaito_tests::client().await?;
    kaito_tests::install_crds(&client).await?;
    let ns = kaito_tests::namespace(&client, "webhook").await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {SCOPE_LABEL: ns}}
            })),
        )
        .await?;

    let serving = cert::generate("kaito-webhook", &ns, cert::VALIDITY)?;
    let hook = Arc::new(server::Webhook {
        base: ValidationContext::offline(NodeProvisioner::AzureGpuProvisioner, Cloud::Azure),
        client: Some(client.clone()),
        release_namespace: None,
    });
    let tls = cert::server_config(serving.cert_pem.as_bytes(), serving.key_pem.as_bytes())?;
    let (running, task) = server::start("127.0.0.1:0".parse()?, tls, hook).await?;

    let config_name = format!("kaito-test-{ns}");
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    configs.create(&PostParams::default(), &configuration(&config_name, running.addr.port(), &ns)).await?;
    let result = exercise(&client, &ns, &config_name, &serving).await;

    let _ = configs.delete(&config_name, &DeleteParams::default()).await;
    running.handle.graceful_shutdown(Some(Duration::from_secs(2)));
    let _ = task.await;
    kaito_tests::delete_namespace(&client, &ns).await;
    result
}

async fn exercise(
    client: &kube::Client,
    ns: &str,
    config_name: &str,
    serving: &cert::ServingCert,
) -> anyhow::Result<()> {
    cert::patch_ca_bundle(client, config_name, serving.ca_pem.as_bytes()).await?;
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let stored = configs.get(config_name).await?;
    for hook in stored.webhooks.iter().flatten() {
        let bundle = hook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
        anyhow::ensure!(bundle == Some(serving.ca_pem.as_bytes()), "caBundle of {} not set", hook.name);
    }

    // The API server picks up new webhook configurations asynchronously: wait until it calls ours.
    let probe = examples().join("invalid/workspace-unknown-preset.yaml");
    let probe = probe.to_str().context("path")?.to_string();
    kaito_tests::eventually("the webhook configuration to take effect", Duration::from_secs(30), || {
        let probe = probe.clone();
        async move {
            let (ok, _, stderr) = kubectl_out(&["apply", "-n", ns, "-f", &probe])?;
            if ok {
                // Admitted before the webhook was active: remove it and try again.
                let _ = kubectl_out(&["delete", "-n", ns, "-f", &probe, "--wait=false"]);
                return Ok(None);
            }
            Ok(stderr.contains("denied the request").then_some(()))
        }
    })
    .await?;

    // Every invalid example is rejected with its rule's message.
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(examples().join("invalid"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).context("no # expect: line")?;
        let (field, phrase) = expect.split_once(": ").unwrap_or(("", expect));
        let (ok, _, stderr) = kubectl_out(&["apply", "-n", ns, "-f", path.to_str().context("path")?])?;
        let denied = stderr.contains("denied the request");
        if ok || !denied || !stderr.contains(&format!("{field}: ")) || !stderr.contains(phrase) {
            failures.push(format!("{}: admitted={ok} stderr={stderr}", path.display()));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} invalid examples not rejected as expected:\n{}",
            failures.len(),
            files.len(),
            failures.join("\n")
        );
    }

    // Every valid example is admitted. The bring-your-own example is skipped: it is valid only for a controller
    // run with --node-provisioner=byo, and this webhook runs with the default (azure-gpu-provisioner); the
    // unit tests cover it under byo.
    for file in [
        "inference/kaito_workspace_phi_4_mini.yaml",
        "inference/kaito_workspace_llama_3_3_70b_instruct.yaml",
        "inference/kaito_workspace_custom_template.yaml",
        "tuning/kaito_workspace_tuning_qlora_phi_3.yaml",
        "ragengine/kaito_ragengine_phi_4_mini.yaml",
        "inferenceset/kaito_inferenceset_phi_4_mini.yaml",
    ] {
        let path = examples().join(file);
        let (ok, _, stderr) = kubectl_out(&["apply", "-n", ns, "-f", path.to_str().context("path")?])?;
        anyhow::ensure!(ok, "{file} was rejected: {stderr}");
    }

    // An immutable field cannot change.
    let (ok, _, stderr) = kubectl_out(&[
        "patch",
        "-n",
        ns,
        "workspace",
        "workspace-phi-4-mini",
        "--type=merge",
        "-p",
        r#"{"resource":{"instanceType":"Standard_NC48ads_A100_v4"}}"#,
    ])?;
    anyhow::ensure!(!ok && stderr.contains("resource.instanceType: is immutable"), "instanceType change: {stderr}");

    // The bypass annotation lets an over-sized transformers Workspace through.
    let fixture =
        std::fs::read_to_string(examples().join("invalid/workspace-transformers-insufficient-gpu-memory.yaml"))?;
    let bypassed = fixture.replace(
        "    kaito.sh/runtime: \"transformers\"",
        "    kaito.sh/runtime: \"transformers\"\n    kaito.sh/bypass-resource-checks: \"true\"",
    );
    anyhow::ensure!(bypassed != fixture, "the fixture's annotations changed: update this test");
    let dir = std::env::temp_dir().join(format!("kaito-webhook-{ns}"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bypass.yaml");
    std::fs::write(&file, bypassed)?;
    let (ok, _, stderr) = kubectl_out(&["apply", "-n", ns, "-f", file.to_str().context("path")?])?;
    anyhow::ensure!(ok, "bypass annotation: {stderr}");

    // A deprecated field warns but is admitted.
    let phi = std::fs::read_to_string(examples().join("inference/kaito_workspace_phi_4_mini.yaml"))?;
    let deprecated = phi
        .replace("name: workspace-phi-4-mini", "name: deprecated-count")
        .replace("resource:\n", "resource:\n  count: 1\n");
    let file = dir.join("deprecated.yaml");
    std::fs::write(&file, deprecated)?;
    let (ok, _, stderr) = kubectl_out(&["apply", "-n", ns, "-f", file.to_str().context("path")?])?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        ok && stderr.contains("Warning: resource.count is deprecated"),
        "deprecated count: ok={ok} {stderr}"
    );
    Ok(())
}
