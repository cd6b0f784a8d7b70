//! Concurrency test: 8 writers and 8 readers hammer one durable index for
//! `KAITO_RAG_CONCURRENCY_SECS` seconds (default 30). No request may fail, every reader must
//! see a consistent index, and the final counts must match what was acknowledged, in memory
//! and after reloading the store.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_eight_readers() {
    kaito_rag::llm::install_crypto_provider();
    let secs: u64 = std::env::var("KAITO_RAG_CONCURRENCY_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let data = tempfile::tempdir().expect("tmp");
    let cfg = common::config(&["--data-dir", data.path().to_str().expect("utf8")]);
    let (base, state) = common::spawn_app(&cfg).await;
    let c = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    // Seed so readers have something from the start.
    let seed: Vec<Value> = common::corpus().into_iter().map(|(t, m)| json!({"text": t, "metadata": m})).collect();
    let r = c
        .post(format!("{base}/index"))
        .json(&json!({"index_name": "conc", "documents": seed}))
        .send()
        .await
        .expect("seed");
    assert!(r.status().is_success());

    let stop = Arc::new(AtomicBool::new(false));
    let added = Arc::new(AtomicU64::new(4));
    let removed = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (c, base, stop, added, removed) =
            (c.clone(), base.clone(), Arc::clone(&stop), Arc::clone(&added), Arc::clone(&removed));
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids = [format!("w{w}-{i}-a"), format!("w{w}-{i}-b")];
                let docs: Vec<Value> = ids
                    .iter()
                    .map(|id| json!({"doc_id": id, "text": format!("Writer {w} document {id}: GPUs, pods and retrieval number {i}."), "metadata": {"writer": w}}))
                    .collect();
                let r = c
                    .post(format!("{base}/index"))
                    .json(&json!({"index_name": "conc", "documents": docs}))
                    .send()
                    .await
                    .expect("index request");
                assert!(r.status().is_success(), "index: {}", r.text().await.unwrap_or_default());
                added.fetch_add(2, Ordering::Relaxed);
                match i % 3 {
                    1 => {
                        let r = c
                            .post(format!("{base}/indexes/conc/documents/delete"))
                            .json(&json!({"doc_ids": [ids[0]]}))
                            .send()
                            .await
                            .expect("delete request");
                        assert!(r.status().is_success());
                        let v: Value = r.json().await.expect("json");
                        assert_eq!(v["deleted_doc_ids"], json!([ids[0]]));
                        removed.fetch_add(1, Ordering::Relaxed);
                    }
                    2 => {
                        let r = c
                            .post(format!("{base}/indexes/conc/documents"))
                            .json(&json!({"documents": [{"doc_id": ids[1], "text": format!("Updated text of {} number {i}", ids[1]), "metadata": {"writer": w}}]}))
                            .send()
                            .await
                            .expect("update request");
                        assert!(r.status().is_success());
                        let v: Value = r.json().await.expect("json");
                        assert_eq!(v["updated_documents"].as_array().map(Vec::len), Some(1), "{v}");
                    }
                    _ => {}
                }
                i += 1;
            }
        }));
    }
    for r in 0..8u64 {
        let (c, base, stop, reads, added) =
            (c.clone(), base.clone(), Arc::clone(&stop), Arc::clone(&reads), Arc::clone(&added));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let v: Value = c
                    .post(format!("{base}/retrieve"))
                    .json(
                        &json!({"index_name": "conc", "query": format!("GPU pods retrieval {r}"), "max_node_count": 5}),
                    )
                    .send()
                    .await
                    .expect("retrieve request")
                    .error_for_status()
                    .expect("retrieve status")
                    .json()
                    .await
                    .expect("json");
                let results = v["results"].as_array().expect("results");
                assert!(!results.is_empty() && results.len() <= 5, "{v}");
                let scores: Vec<f64> = results.iter().map(|x| x["score"].as_f64().expect("score")).collect();
                assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
                let v: Value = c
                    .get(format!("{base}/indexes/conc/documents?limit=100&max_text_length=10"))
                    .send()
                    .await
                    .expect("list request")
                    .error_for_status()
                    .expect("list status")
                    .json()
                    .await
                    .expect("json");
                let total = v["total_items"].as_u64().expect("total");
                assert!(total >= 4 && total <= added.load(Ordering::Relaxed), "{total}");
                assert_eq!(v["count"].as_u64(), Some(total.min(100)));
                reads.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task panicked");
    }
    let expected = added.load(Ordering::Relaxed) - removed.load(Ordering::Relaxed);
    let v: Value =
        c.get(format!("{base}/indexes/conc/documents?limit=1")).send().await.expect("list").json().await.expect("json");
    assert_eq!(v["total_items"].as_u64(), Some(expected), "in-memory count");
    drop(state);
    // The store holds the same documents.
    let store = kaito_rag::store::Store::open(data.path());
    let n = match store {
        Ok(s) => s.load_all().expect("load").iter().map(|i| i.docs.len()).sum::<usize>(),
        // The running service holds the database lock; reopen through a fresh copy.
        Err(_) => {
            let copy = tempfile::tempdir().expect("tmp");
            std::fs::copy(data.path().join("kaito-rag.redb"), copy.path().join("kaito-rag.redb")).expect("copy");
            kaito_rag::store::Store::open(copy.path())
                .expect("open copy")
                .load_all()
                .expect("load")
                .iter()
                .map(|i| i.docs.len())
                .sum()
        }
    };
    assert_eq!(n as u64, expected, "stored count");
    eprintln!(
        "concurrency: {secs}s, {} writes acknowledged, {} reads, {expected} documents",
        added.load(Ordering::Relaxed) + removed.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
}
