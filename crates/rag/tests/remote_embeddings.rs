//! Remote embeddings through an OpenAI-compatible `/v1/embeddings` stand-in on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use kaito_rag::embed::{Embedder, RemoteEmbedder};
use serde_json::{Value, json};

/// A bag-of-letters embedding: deterministic and similar for similar texts.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 26];
    for c in text.to_ascii_lowercase().bytes().filter(u8::is_ascii_lowercase) {
        v[(c - b'a') as usize] += 1.0;
    }
    v
}

#[tokio::test]
async fn remote_embeddings_index_and_retrieve() {
    kaito_rag::llm::install_crypto_provider();
    let auth: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&auth);
    let router = Router::new().route(
        "/v1/embeddings",
        post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
            let seen = Arc::clone(&seen);
            async move {
                if let Some(h) = headers.get("authorization").and_then(|h| h.to_str().ok()) {
                    seen.lock().expect("lock").push(h.to_owned());
                }
                let inputs: Vec<String> = body["input"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let data: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t)}))
                    .collect();
                axum::Json(json!({"object": "list", "data": data, "model": body["model"]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let remote = RemoteEmbedder::connect(&format!("http://{addr}"), "letters", Some("emb-secret".into()), 64)
        .await
        .expect("connect");
    let embedder = Embedder::Remote(Arc::new(remote));
    assert_eq!(embedder.dim(), 26);
    let cfg = common::config(&["--embedding-type", "remote", "--embedding-url", &format!("http://{addr}")]);
    let state = kaito_rag::app::build_state(&cfg, embedder).await.expect("state");
    let docs = vec![
        kaito_rag::engine::NewDoc { doc_id: None, text: "zzz zebra zone".into(), metadata: Default::default() },
        kaito_rag::engine::NewDoc { doc_id: None, text: "apple banana".into(), metadata: Default::default() },
    ];
    state.engine.index_documents("r", docs).await.expect("index");
    let hits = state.engine.retrieve("r", "zebra", 1, None).await.expect("retrieve");
    assert_eq!(hits[0].text, "zzz zebra zone");
    assert!(hits[0].dense_score > 0.5, "{}", hits[0].dense_score);
    let auth = auth.lock().expect("lock").clone();
    assert!(!auth.is_empty() && auth.iter().all(|h| h == "Bearer emb-secret"), "{auth:?}");
}
