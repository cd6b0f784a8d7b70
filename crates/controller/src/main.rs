//! `kaito-controller`: reconciles KAITO Workspaces.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use kaito_api::karpenter::NodeClassReference;
use kaito_controller::config::{Config, NodeProvisioner};
use kaito_core::Cloud;

/// KAITO Workspace controller: sizes GPU nodes, provisions them through NodeClaims, deploys the inference
/// workload and reports status.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How GPU nodes come to exist: azure-gpu-provisioner (NodeClaims), karpenter (NodePools) or byo.
    #[arg(long, env = "NODE_PROVISIONER", default_value = "azure-gpu-provisioner")]
    node_provisioner: NodeProvisioner,
    /// Cloud whose GPU SKU catalog sizes Workspaces: azure, aws or arc.
    #[arg(long, env = "CLOUD_PROVIDER", default_value = "azure")]
    cloud: Cloud,
    /// Node class for NodeClaims as group/kind/name (default: the cloud's, e.g. kaito.sh/KaitoNodeClass/default).
    #[arg(long)]
    node_class: Option<String>,
    /// Image of the inference server.
    #[arg(long, env = "INFERENCE_IMAGE", default_value = "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0")]
    inference_image: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080")]
    metrics_addr: SocketAddr,
    /// Only reconcile Workspaces in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Serve the validating admission webhook (HTTPS) on this address, e.g. 0.0.0.0:9443 (default: off).
    #[arg(long, env = "WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// Name of the webhook Service, for the serving certificate's DNS names.
    #[arg(long, env = "WEBHOOK_SERVICE", default_value = "kaito-workspace-webhook")]
    webhook_service: String,
    /// The operator's namespace (certificate Secret, default ConfigMaps); unset keeps the certificate in memory.
    #[arg(long, env = "RELEASE_NAMESPACE")]
    release_namespace: Option<String>,
    /// Secret holding the webhook's self-managed serving certificate.
    #[arg(long, default_value = "kaito-webhook-cert")]
    webhook_secret: String,
    /// Use tls.crt/tls.key from this directory (cert-manager) instead of a self-managed certificate.
    #[arg(long)]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// ValidatingWebhookConfigurations whose caBundle the operator keeps current (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "validation.workspace.kaito.sh,validation.ragengine.kaito.sh,validation.inferenceset.kaito.sh"
    )]
    webhook_configurations: Vec<String>,
    /// Feature gates as comma-separated name=bool (upstream's names; unknown names are rejected).
    #[arg(long, env = "FEATURE_GATES", default_value = "vLLM=true")]
    feature_gates: String,
    /// Only reconcile while holding the leader Lease, so that several replicas never act at once.
    #[arg(long, env = "LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: --release-namespace).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Tokio worker threads. The controller waits on the apiserver far more than it computes; each worker
    /// thread costs memory (stack, allocator arena), so the default is small and independent of the core count.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: u16,
}

/// Upstream's feature gates; those that change admission are applied, the others are accepted for
/// compatibility with upstream's chart values.
const FEATURE_GATES: &[&str] = &[
    "vLLM",
    "disableNodeAutoProvisioning",
    "gatewayAPIInferenceExtension",
    "enableInferenceSetController",
    "enableMIG",
    "enableAccelerator",
    "enableMultiRoleInferenceController",
    "ModelMirror",
    "ModelStreaming",
    "enableBaseImageAutoUpgrade",
];

fn feature_gates(spec: &str) -> anyhow::Result<kaito_api::validation::FeatureGates> {
    let mut gates = kaito_api::validation::FeatureGates::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) =
            item.split_once('=').context(format!("--feature-gates {item:?}: expected name=true|false"))?;
        let on: bool = value.trim().parse().context(format!("--feature-gates {item:?}: expected true or false"))?;
        match name.trim() {
            "vLLM" => gates.vllm = on,
            "enableMIG" => gates.enable_mig = on,
            "enableAccelerator" => gates.enable_accelerator = on,
            "ModelStreaming" => gates.model_streaming = on,
            other if FEATURE_GATES.contains(&other) => {}
            other => {
                anyhow::bail!("--feature-gates: unknown feature gate {other:?}; known: {}", FEATURE_GATES.join(", "))
            }
        }
    }
    Ok(gates)
}

fn node_class(spec: &str) -> anyhow::Result<NodeClassReference> {
    let parts: Vec<&str> = spec.split('/').collect();
    match parts.as_slice() {
        [group, kind, name] if !kind.is_empty() && !name.is_empty() => {
            Ok(NodeClassReference { group: group.to_string(), kind: kind.to_string(), name: name.to_string() })
        }
        _ => anyhow::bail!("--node-class {spec:?}: expected group/kind/name, e.g. kaito.sh/KaitoNodeClass/default"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.into())
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = Config {
        node_provisioner: args.node_provisioner,
        cloud: args.cloud,
        node_class_ref: match &args.node_class {
            Some(spec) => node_class(spec)?,
            None => Config::default_node_class(args.cloud),
        },
        inference_image: args.inference_image,
        namespace: args.namespace,
        ..Config::default()
    };
    let kube_config = kube::Config::infer()
        .await
        .context("reading the Kubernetes client configuration (KUBECONFIG or in-cluster)")?;
    let metrics = std::sync::Arc::new(kaito_controller::metrics::Metrics::default());
    let client =
        kaito_controller::counting_client(kube_config, metrics.clone()).context("building the Kubernetes client")?;
    let gates = feature_gates(&args.feature_gates)?;
    tracing::info!(?config, ?gates, "starting");
    let (webhook_stop_tx, webhook_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let webhook = args.webhook_addr.map(|addr| {
        let options = kaito_controller::webhook::run::Options {
            addr,
            service: args.webhook_service.clone(),
            namespace: args.release_namespace.clone(),
            secret: args.webhook_secret.clone(),
            // With cert-manager its CA injector owns the caBundle: the operator leaves the configurations alone.
            webhook_configurations: if args.webhook_cert_dir.is_some() {
                Vec::new()
            } else {
                args.webhook_configurations.clone()
            },
            cert_dir: args.webhook_cert_dir.clone(),
        };
        let mut base = kaito_api::validation::ValidationContext::offline(config.node_provisioner, config.cloud);
        base.feature_gates = gates;
        tokio::spawn(kaito_controller::webhook::run::run(options, client.clone(), base, async move {
            let _ = webhook_stop_rx.await;
        }))
    });
    let (mut controller, stop) = if args.leader_elect {
        let namespace = args
            .leader_election_namespace
            .clone()
            .or_else(|| args.release_namespace.clone())
            .context("--leader-elect needs --leader-election-namespace (or RELEASE_NAMESPACE)")?;
        let elector = kaito_controller::leader::Elector::new(
            client.clone(),
            &namespace,
            kaito_controller::leader::LEASE_NAME,
            kaito_controller::leader::Elector::default_identity(),
        );
        kaito_controller::start_elected(client, config, metrics.clone(), elector)
    } else {
        let (handle, stop, _) = kaito_controller::start_with_metrics(client, config, metrics.clone());
        (
            tokio::spawn(async move {
                // Without leader election nothing can be lost; a panicked controller is logged by tokio.
                let _ = handle.await;
                Ok(())
            }),
            stop,
        )
    };
    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kaito_controller::server::serve(args.metrics_addr, metrics, async move {
        let _ = server_stop_rx.await;
    }));
    let mut webhook = webhook;
    let webhook_ended = async {
        match webhook.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let ended_early = tokio::select! {
        _ = shutdown_signal() => None,
        result = &mut controller => Some(result),
        // A webhook that stopped serving blocks every create (failurePolicy Fail): exit so the pod restarts.
        result = webhook_ended => {
            result.context("webhook task")?.context("admission webhook")?;
            anyhow::bail!("the admission webhook stopped serving");
        }
    };
    tracing::info!("shutting down");
    let _ = stop.send(());
    let _ = server_stop_tx.send(());
    let _ = webhook_stop_tx.send(());
    match ended_early {
        // The controller stopped by itself: a lost leader Lease. Exit non-zero so the pod restarts as a candidate.
        Some(result) => result.context("controller task")?.context("leader election")?,
        None => controller.await.context("controller task")?.context("leader election")?,
    }
    server.await.context("metrics server task")?.context("metrics server")?;
    if let Some(webhook) = webhook {
        webhook.await.context("webhook task")?.context("admission webhook")?;
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
