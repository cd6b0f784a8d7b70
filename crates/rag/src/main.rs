//! `kaito-rag`: the KAITO RAG service binary.

use anyhow::Context;
use clap::Parser;
use kaito_rag::config::Config;
use tracing_subscriber::EnvFilter;

// The system allocator on purpose: mimalloc (used until 2026-11-24) kept a heap per thread of
// tokio's blocking pool and held 50-60 MB more at the same latency (docs/benchmarks-rag.md).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let started = std::time::Instant::now();
    let cfg = Config::parse().resolve()?;
    let embedder = kaito_rag::app::load_embedder(&cfg).await.context("loading the embedding model")?;
    let state = kaito_rag::app::build_state(&cfg, embedder).await.context("starting the RAG engine")?;
    let durable = state.engine.is_durable();
    let stats = state.engine.stats();
    let router = kaito_rag::api::router(state);
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        %local,
        durable,
        indexes = stats.len(),
        documents = stats.iter().map(|s| s.1).sum::<usize>(),
        startup_ms = started.elapsed().as_millis() as u64,
        "kaito-rag listening"
    );
    // Machine-readable line for tests and benchmarks that bind port 0.
    println!("LISTENING {local}");
    axum::serve(listener, router).with_graceful_shutdown(shutdown()).await.context("serving")?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
