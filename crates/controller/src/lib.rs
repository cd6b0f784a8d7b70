//! KAITO's Workspace controller.
//!
//! [`workspace`] holds the reconciler (a read → resolve → build → apply → status pipeline); [`config`]
//! its settings; [`metrics`] and [`server`] what it exposes. [`start`] runs everything in-process, which
//! is how the end-to-end tests drive it.
#![forbid(unsafe_code)]

pub mod config;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod webhook;
pub mod workspace;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

/// A client for `kube_config` that counts every request it sends in `metrics`.
pub fn counting_client(kube_config: kube::Config, metrics: Arc<metrics::Metrics>) -> Result<Client, kube::Error> {
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.api_request(request.method().as_str());
        request
    });
    Ok(kube::client::ClientBuilder::try_from(kube_config)?.with_layer(&count).build())
}

/// Starts the Workspace controller on a tokio task; it stops when the returned sender fires or is dropped.
pub fn start(
    client: Client,
    config: config::Config,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>, Arc<metrics::Metrics>) {
    start_with_metrics(client, config, Arc::new(metrics::Metrics::default()))
}

/// [`start`] with metrics the caller already holds (e.g. shared with [`counting_client`]).
pub fn start_with_metrics(
    client: Client,
    config: config::Config,
    metrics: Arc<metrics::Metrics>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>, Arc<metrics::Metrics>) {
    let reporter = Reporter { controller: config.field_manager.clone(), instance: std::env::var("POD_NAME").ok() };
    let recorder = Recorder::new(client.clone(), reporter);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(workspace::run(client, config, recorder, metrics.clone(), async move {
        let _ = stopped.await;
    }));
    (handle, stop, metrics)
}

/// [`start_with_metrics`] behind leader election: the controller runs only while `elector` holds the Lease.
///
/// The task ends with `Ok` after the returned sender fires (or is dropped), and with
/// [`leader::LeaderError::Lost`] when the Lease is lost; the controller is stopped in both cases.
pub fn start_elected(
    client: Client,
    config: config::Config,
    metrics: Arc<metrics::Metrics>,
    elector: leader::Elector,
) -> (tokio::task::JoinHandle<Result<(), leader::LeaderError>>, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        elector
            .lead(shutdown, move |work_stopped| async move {
                // Dropping this future (the task aborted) drops `stop` too, which stops the controller.
                let (handle, stop, _) = start_with_metrics(client, config, metrics);
                let _ = work_stopped.await;
                let _ = stop.send(());
                let _ = handle.await;
            })
            .await
    });
    (handle, stop)
}
