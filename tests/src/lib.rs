//! Shared helpers for the cluster tests: a client for the control plane named by `KUBECONFIG`, CRD
//! installation, throwaway namespaces, and the `kubectl` of the pinned Kubernetes build.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};

/// Field manager the tests apply with.
pub const FIELD_MANAGER: &str = "kaito-tests";

/// A client for the cluster in `KUBECONFIG`; fails with what to do when there is none.
pub async fn client() -> anyhow::Result<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        bail!(
            "KUBECONFIG is not set: start the local control plane with `hack/cluster-up.sh && source .k8s-run/env`, or run `make test`"
        );
    }
    Client::try_default().await.context("connecting to the cluster in KUBECONFIG")
}

/// Installs (server-side applies) the generated KAITO CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for generated in kaito_api::crd::all()? {
        let name = generated.crd.metadata.name.clone().context("generated CRD has no name")?;
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&generated.crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established after 30s"))??;
    }
    Ok(())
}

/// Installs Karpenter's NodeClaim and NodePool CRDs (shipped beside the control-plane binaries by
/// hack/k8s-bins.sh) and waits until they are Established.
pub async fn install_karpenter_crds(client: &Client) -> anyhow::Result<()> {
    let bins = std::env::var_os("KAITO_K8S_BINS").context("KAITO_K8S_BINS is not set: source .k8s-run/env")?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in ["karpenter.sh_nodeclaims.yaml", "karpenter.sh_nodepools.yaml"] {
        let path = PathBuf::from(&bins).join("karpenter-crds").join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).with_context(|| format!("parsing {file}"))?;
        let name = crd.metadata.name.clone().context("Karpenter CRD has no name")?;
        crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd)).await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established after 30s"))??;
    }
    Ok(())
}

/// A namespace that exists for one test, with its `default` ServiceAccount ready for pods.
pub async fn namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.generate_name = Some(format!("{prefix}-"));
    let created = namespaces.create(&PostParams::default(), &ns).await.context("creating a test namespace")?;
    let name = created.metadata.name.context("namespace without a name")?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    for _ in 0..100 {
        if accounts.get_opt("default").await?.is_some() {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the default ServiceAccount of {name} never appeared: is kube-controller-manager running?")
}

/// Deletes a test namespace without waiting.
pub async fn delete_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
}

/// The kubectl of the pinned Kubernetes build (`KAITO_K8S_BINS`), else the one on PATH.
pub fn kubectl() -> PathBuf {
    std::env::var_os("KAITO_K8S_BINS")
        .map(|dir| PathBuf::from(dir).join("kubectl"))
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// Runs kubectl and returns its stdout, or its stderr as the error.
pub fn run_kubectl(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(kubectl()).args(args).output().context("running kubectl")?;
    if !out.status.success() {
        bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
