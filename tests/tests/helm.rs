//! The Helm chart: lint and template pass, its CRDs are config/crd's, it installs into the real control
//! plane, and the controller running with the chart's ServiceAccount credentials (so RBAC is enforced) makes
//! its certificate, publishes the caBundle, takes the leader Lease and drives a Workspace to success.
#![cfg(feature = "cluster")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kaito_api::labels::conditions as cond;
use kaito_api::v1beta1::Workspace;
use kaito_controller::config::Config;
use kaito_controller::leader::Elector;
use kaito_controller::metrics::Metrics;
use kaito_controller::webhook::cert::SelfManaged;
use kaito_provisioner::{ControllerOptions, KwokConfig};
use kaito_tests::{eventually, kubectl, run_kubectl};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the pinned helm with its state in a temporary directory; returns stdout or fails with stderr.
fn helm(home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let bins = std::env::var_os("KAITO_K8S_BINS").context("KAITO_K8S_BINS is not set: source .k8s-run/env")?;
    let out = Command::new(PathBuf::from(bins).join("helm"))
        .args(args)
        .current_dir(repo())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .context("running helm")?;
    if !out.status.success() {
        bail!("helm {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn chart_crds_are_config_crd() -> anyhow::Result<()> {
    for entry in std::fs::read_dir(repo().join("config/crd"))? {
        let path = entry?.path();
        let name = path.file_name().context("file name")?;
        let chart = std::fs::read(repo().join("charts/kaito/crds").join(name))
            .with_context(|| format!("charts/kaito/crds/{name:?} missing: run `make crds`"))?;
        anyhow::ensure!(
            chart == std::fs::read(&path)?,
            "charts/kaito/crds/{name:?} differs from config/crd: run `make crds`"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_renders_installs_and_its_rbac_suffices() -> anyhow::Result<()> {
    let client = kaito_tests::client().await?;
    kaito_tests::install_crds(&client).await?;
    kaito_tests::install_karpenter_crds(&client).await?;
    let ns = kaito_tests::namespace(&client, "helm").await?;
    let home = std::env::temp_dir().join(format!("kaito-helm-{ns}"));
    std::fs::create_dir_all(&home)?;

    helm(&home, &["lint", "charts/kaito"])?;
    let rendered = helm(&home, &["template", "kaito", "charts/kaito", "-n", "kaito-system"])?;
    for needle in [
        "name: validation.workspace.kaito.sh",
        "name: validation.ragengine.kaito.sh",
        "name: validation.inferenceset.kaito.sh",
        "path: /validate/workspace.kaito.sh",
        "failurePolicy: Fail",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "name: inference-params-template",
        "name: lora-params-template",
        "name: qlora-params-template",
        "- --leader-elect",
    ] {
        anyhow::ensure!(rendered.contains(needle), "helm template output lacks {needle:?}");
    }
    let cert_manager =
        helm(&home, &["template", "kaito", "charts/kaito", "--set", "webhook.certManager.enabled=true"])?;
    anyhow::ensure!(
        cert_manager.contains("cert-manager.io/inject-ca-from") && cert_manager.contains("--webhook-cert-dir")
    );

    // Install for real. The webhook configurations are cluster-wide and the chart's webhook pods cannot run
    // here, so they are scoped to a label no namespace carries: parallel tests are not affected.
    let release = "kaito-test";
    let result = install_and_run(&client, &home, &ns, release).await;
    let _ = helm(&home, &["uninstall", release, "-n", &ns]);
    let _ = std::fs::remove_dir_all(&home);
    kaito_tests::delete_namespace(&client, &ns).await;
    result
}

async fn install_and_run(client: &kube::Client, home: &Path, ns: &str, release: &str) -> anyhow::Result<()> {
    helm(
        home,
        &[
            "install",
            release,
            "charts/kaito",
            "-n",
            ns,
            "--set",
            "webhook.namespaceSelector.matchLabels.kaito\\.sh/helm-test-never=yes",
            "--set",
            "controller.replicas=1",
        ],
    )?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for name in [format!("{release}-controller"), format!("{release}-provisioner")] {
        let deployment = deployments.get(&name).await?;
        let pod = deployment.spec.and_then(|s| s.template.spec).context("pod spec")?;
        anyhow::ensure!(pod.security_context.and_then(|s| s.run_as_non_root) == Some(true), "{name}: runAsNonRoot");
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["inference-params-template", "lora-params-template", "qlora-params-template"] {
        config_maps.get(name).await.with_context(|| format!("ConfigMap {name}"))?;
    }

    // The controller with the chart's ServiceAccount token: RBAC is enforced by the API server.
    let sa = format!("{release}-controller");
    let token = run_kubectl(&["create", "token", &sa, "-n", ns, "--duration=1h"])?;
    let kubeconfig = home.join("sa.kubeconfig");
    std::fs::copy(std::env::var("KUBECONFIG")?, &kubeconfig)?;
    let path = kubeconfig.to_str().context("path")?;
    run_kubectl(&["config", "set-credentials", "sa", "--token", token.trim(), "--kubeconfig", path])?;
    run_kubectl(&["config", "set-context", "--current", "--user", "sa", "--kubeconfig", path])?;
    let config =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig)?, &KubeConfigOptions::default())
            .await?;
    let sa_client = kube::Client::try_from(config)?;

    // What the chart forbids stays forbidden.
    let who = format!("system:serviceaccount:{ns}:{sa}");
    for forbidden in [["delete", "secrets"], ["list", "secrets"], ["create", "clusterroles"]] {
        let out = Command::new(kubectl())
            .args(["auth", "can-i", forbidden[0], forbidden[1], "-n", "default", "--as", &who])
            .output()?;
        anyhow::ensure!(
            String::from_utf8_lossy(&out.stdout).trim() == "no",
            "{sa} may {} {}",
            forbidden[0],
            forbidden[1]
        );
    }

    // Certificate: Secret in the release namespace, caBundle on the chart's webhook configurations.
    let managed = SelfManaged {
        client: sa_client.clone(),
        namespace: ns.to_string(),
        secret: format!("{release}-webhook-cert"),
        service: format!("{release}-webhook"),
        webhook_configurations: kaito_controller::webhook::HOOKS.iter().map(|h| h.name.to_string()).collect(),
    };
    let serving = managed.ensure().await?;
    anyhow::ensure!(managed.ensure().await? == serving, "a second replica must reuse the stored certificate");
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for hook in kaito_controller::webhook::HOOKS {
        let config = configs.get(hook.name).await?;
        for webhook in config.webhooks.iter().flatten() {
            let bundle = webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
            anyhow::ensure!(bundle == Some(serving.ca_pem.as_bytes()), "{}: caBundle not set", hook.name);
        }
    }

    // Leader election and a full reconcile under the ServiceAccount.
    let options = ControllerOptions {
        claim_selector: Some(format!("kaito.sh/workspacenamespace={ns}")),
        gc_interval: None,
        ..ControllerOptions::default()
    };
    let provisioner = tokio::spawn(kaito_provisioner::run_kwok(
        client.clone(),
        KwokConfig::default(),
        options,
        futures::future::pending(),
    ));
    let elector = Elector::new(sa_client.clone(), ns, kaito_controller::leader::LEASE_NAME, "helm-test");
    let config = Config { namespace: Some(ns.to_string()), ..Config::default() };
    let metrics = std::sync::Arc::new(Metrics::default());
    let (controller, stop) = kaito_controller::start_elected(sa_client.clone(), config, metrics.clone(), elector);
    let ws: Workspace = serde_saphyr::from_str(&std::fs::read_to_string(
        repo().join("examples/inference/kaito_workspace_phi_4_mini.yaml"),
    )?)?;
    let api: Api<Workspace> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &ws).await?;
    let outcome = eventually("WorkspaceSucceeded under the chart's RBAC", Duration::from_secs(90), || async {
        let ws = api.get("workspace-phi-4-mini").await?;
        Ok(ws.condition(cond::WORKSPACE_SUCCEEDED).is_some_and(|c| c.status == "True").then_some(()))
    })
    .await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    provisioner.abort();
    let rendered = metrics.render();
    if outcome.is_err() {
        let status = api.get("workspace-phi-4-mini").await?.status;
        outcome.with_context(|| format!("status: {status:?}\ncontroller metrics:\n{rendered}"))?;
    }
    let _ = api.delete("workspace-phi-4-mini", &Default::default()).await;
    Ok(())
}
