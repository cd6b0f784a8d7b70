//! KAITO's Workspace controller.
//!
//! [`workspace`] holds the reconciler (a read → resolve → build → apply → status pipeline); [`config`]
//! its settings; [`metrics`] and [`server`] what it exposes. [`start`] runs everything in-process, which
//! is how the end-to-end tests drive it.
#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod server;
pub mod workspace;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// Starts the Workspace controller on a tokio task; it stops when the returned sender is dropped or fires.
pub fn start(
    client: Client,
    config: config::Config,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>, Arc<metrics::Metrics>) {
    let metrics = Arc::new(metrics::Metrics::default());
    let reporter = Reporter { controller: config.field_manager.clone(), instance: std::env::var("POD_NAME").ok() };
    let ctx = Arc::new(workspace::Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics: metrics.clone(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(workspace::run(ctx, async move {
        let _ = stopped.await;
    }));
    (handle, stop, metrics)
}
