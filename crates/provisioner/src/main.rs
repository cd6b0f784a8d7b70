//! `kaito-provisioner`: fulfils Karpenter NodeClaims (see docs/provisioner.md).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kaito_core::sku::Cloud;
use kaito_provisioner::{
    ControllerOptions, KwokConfig, KwokProvider, Metrics, NodeClassFilter, metrics, parse_duration,
};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CloudProviderKind {
    /// Simulated nodes managed by kwok (local clusters and tests).
    Kwok,
    /// Azure agent pools (not implemented yet).
    Azure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Fulfils Karpenter NodeClaims (karpenter.sh/v1) with nodes from a cloud provider.
#[derive(Debug, Parser)]
#[command(name = "kaito-provisioner", version)]
struct Args {
    /// Backend that launches instances.
    #[arg(long, value_enum, default_value = "kwok", env = "KAITO_PROVISIONER_CLOUD_PROVIDER")]
    cloud_provider: CloudProviderKind,
    /// GPU SKU catalog for instance types (azure, aws, arc).
    #[arg(long, default_value = "azure", value_parser = parse_cloud, env = "CLOUD_PROVIDER")]
    cloud: Cloud,
    /// Simulated launch time of one instance (kwok), e.g. 0s, 500ms, 30s.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    launch_delay: Duration,
    /// Instance types that always fail with InsufficientCapacity (kwok), comma-separated.
    #[arg(long, value_delimiter = ',')]
    unavailable_instance_types: Vec<String>,
    /// Accepted nodeClassRef group/Kind pairs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "kaito.sh/KaitoNodeClass,karpenter.kwok.sh/KWOKNodeClass")]
    node_classes: Vec<String>,
    /// Serve NodeClaims of every node class.
    #[arg(long)]
    accept_all_node_classes: bool,
    /// Only watch NodeClaims matching this label selector.
    #[arg(long)]
    nodeclaim_selector: Option<String>,
    /// Interval of the garbage collector for instances without a NodeClaim; 0s disables it.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    gc_interval: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8081")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn parse_cloud(s: &str) -> Result<Cloud, String> {
    s.parse::<Cloud>().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }

    let mut node_classes = NodeClassFilter { accept_all: args.accept_all_node_classes, accepted: Vec::new() };
    for entry in &args.node_classes {
        let pair = NodeClassFilter::parse_entry(entry)
            .with_context(|| format!("--node-classes entry {entry:?} is not group/Kind"))?;
        node_classes.accepted.push(pair);
    }
    let options = ControllerOptions {
        node_classes,
        claim_selector: args.nodeclaim_selector.clone(),
        gc_interval: (!args.gc_interval.is_zero()).then_some(args.gc_interval),
        ..ControllerOptions::default()
    };

    let client = kube::Client::try_default().await.context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
    let provider = match args.cloud_provider {
        CloudProviderKind::Kwok => KwokProvider::new(
            client.clone(),
            KwokConfig {
                cloud: args.cloud,
                launch_delay: args.launch_delay,
                unavailable_instance_types: args.unavailable_instance_types.iter().cloned().collect::<BTreeSet<_>>(),
            },
        ),
        CloudProviderKind::Azure => bail!("--cloud-provider azure is not implemented yet; use kwok"),
    };

    // One signal fans out to the controller and the metrics server.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let metrics = Arc::new(Metrics::new());
    let mut server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone(), stopped(stop_rx.clone())));
    let controller = kaito_provisioner::run(client, Arc::new(provider), options, metrics, stopped(stop_rx.clone()));
    tokio::pin!(controller);
    tokio::select! {
        () = &mut controller => {}
        served = &mut server => {
            served.context("metrics server task")??;
            if !*stop_rx.borrow() {
                bail!("the metrics server stopped unexpectedly");
            }
            controller.await;
            return Ok(());
        }
    }
    server.await.context("metrics server task")??;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl+C stops the provisioner");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
