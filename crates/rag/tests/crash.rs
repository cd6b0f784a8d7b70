//! Crash test: index in a loop, `kill -9` the service at a random moment, restart it, and find
//! every acknowledged document (and no acknowledged deletion undone).

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

async fn start(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaito-rag"))
        .env("RAG_MODEL_DIR", common::model_dir())
        .env("MODEL_ID", "sentence-transformers/all-MiniLM-L6-v2")
        .env("RAG_DATA_DIR", data)
        .env("RAG_HOST", "127.0.0.1")
        .env("RAG_PORT", "0")
        .env("RUST_LOG", "warn")
        .env_remove("LLM_INFERENCE_URL")
        .env_remove("RAG_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kaito-rag");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = line.strip_prefix("LISTENING ") {
                return a.to_owned();
            }
        }
        panic!("kaito-rag exited before listening");
    })
    .await
    .expect("kaito-rag did not start within 120 s");
    (child, format!("http://{addr}"))
}

/// Deterministic-enough pseudo random numbers without a dependency.
fn rand_u64(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn all_doc_ids(c: &reqwest::Client, base: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut offset = 0;
    loop {
        let v: Value = c
            .get(format!("{base}/indexes/crash/documents?limit=100&offset={offset}&max_text_length=1"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let docs = v["documents"].as_array().cloned().unwrap_or_default();
        if docs.is_empty() {
            return ids;
        }
        offset += docs.len();
        for d in docs {
            ids.insert(d["doc_id"].as_str().expect("id").to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    kaito_rag::llm::install_crypto_provider();
    let rounds: usize = std::env::var("KAITO_RAG_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let data = tempfile::tempdir().expect("tmp");
    let mut seed = Instant::now().elapsed().as_nanos() as u64 | 0x9E37_79B9_7F4A_7C15;
    seed ^= std::process::id() as u64;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deleted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let c = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    for round in 0..rounds {
        let (mut child, base) = start(data.path()).await;
        // Everything acknowledged before is still there, and deletions stuck.
        let ids = all_doc_ids(&c, &base).await;
        let want = acked.lock().expect("lock").clone();
        let missing: Vec<&String> = want.difference(&ids).collect();
        assert!(missing.is_empty(), "round {round}: lost {} acknowledged documents: {missing:?}", missing.len());
        let back: Vec<String> = deleted.lock().expect("lock").intersection(&ids).cloned().collect();
        assert!(back.is_empty(), "round {round}: deleted documents came back: {back:?}");

        let writer = {
            let (c, base, acked, deleted) = (c.clone(), base.clone(), Arc::clone(&acked), Arc::clone(&deleted));
            tokio::spawn(async move {
                for i in 0.. {
                    let ids = [format!("r{round}-{i}-a"), format!("r{round}-{i}-b")];
                    let docs: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"doc_id": id, "text": format!("Document {id} about crash safety, write-ahead logging and fsync number {i}.")}))
                        .collect();
                    let Ok(resp) = c
                        .post(format!("{base}/index"))
                        .json(&json!({"index_name": "crash", "documents": docs}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    if !resp.status().is_success() {
                        return;
                    }
                    acked.lock().expect("lock").extend(ids.iter().cloned());
                    if i % 4 == 3 {
                        let victim = ids[0].clone();
                        // Unknown outcome until acknowledged: the document may or may not stay.
                        acked.lock().expect("lock").remove(&victim);
                        let Ok(resp) = c
                            .post(format!("{base}/indexes/crash/documents/delete"))
                            .json(&json!({"doc_ids": [victim]}))
                            .send()
                            .await
                        else {
                            return;
                        };
                        if resp.status().is_success() {
                            deleted.lock().expect("lock").insert(victim);
                        }
                    }
                }
            })
        };
        let wait = 500 + rand_u64(&mut seed) % 2500;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.start_kill().expect("kill -9");
        let _ = child.wait().await;
        let _ = writer.await;
        assert!(!acked.lock().expect("lock").is_empty() || round > 0, "nothing was indexed in {wait} ms");
    }
    let (_child, base) = start(data.path()).await;
    let ids = all_doc_ids(&c, &base).await;
    let want = acked.lock().expect("lock").clone();
    assert!(want.is_subset(&ids), "lost acknowledged documents after the last kill");
    assert!(deleted.lock().expect("lock").is_disjoint(&ids), "deleted documents came back");
    eprintln!("crash test: {rounds} kills, {} documents acknowledged", want.len());
}

#[tokio::test]
async fn missing_model_fails_start_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kaito-rag"))
        .env("RAG_MODELS_ROOT", "/nonexistent-models")
        .env_remove("RAG_MODEL_DIR")
        .env_remove("MODEL_ID")
        .env_remove("LOCAL_EMBEDDING_MODEL_ID")
        .env_remove("EMBEDDING_TYPE")
        .env_remove("EMBEDDING_SOURCE_TYPE")
        .env("RAG_PORT", "0")
        .env("RAG_HOST", "127.0.0.1")
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BAAI/bge-small-en-v1.5"), "{err}");
    assert!(err.contains("RAG_MODEL_DIR"), "{err}");
}
