//! With a data directory the in-memory index keeps no document texts and reads them from the
//! store: every endpoint must answer exactly as the memory-only service does, through indexing,
//! updates, deletions, snapshots and a restart.

mod common;

use reqwest::{Client, Method};
use serde_json::{Value, json};

struct Pair {
    memory: String,
    durable: String,
    memory_persist: tempfile::TempDir,
    durable_persist: tempfile::TempDir,
}

async fn call(c: &Client, method: Method, url: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

impl Pair {
    /// Sends the same request to both services and checks they answer alike; returns the answer.
    async fn same(&self, c: &Client, method: Method, path: &str, body: Option<Value>) -> Value {
        let path_for = |persist: &tempfile::TempDir| path.replace("<persist>", persist.path().to_str().expect("utf8"));
        let (s1, v1) =
            call(c, method.clone(), &format!("{}{}", self.memory, path_for(&self.memory_persist)), body.as_ref()).await;
        let (s2, v2) =
            call(c, method, &format!("{}{}", self.durable, path_for(&self.durable_persist)), body.as_ref()).await;
        let v1 = self.unpath(v1);
        let v2 = self.unpath(v2);
        assert_eq!((s1, &v1), (s2, &v2), "{path}: memory-only and durable services differ");
        assert!(s1 < 300, "{path}: {s1} {v1}");
        v1
    }

    fn unpath(&self, v: Value) -> Value {
        let text = v
            .to_string()
            .replace(self.memory_persist.path().to_str().expect("utf8"), "<persist>")
            .replace(self.durable_persist.path().to_str().expect("utf8"), "<persist>");
        serde_json::from_str(&text).expect("json")
    }
}

/// A document long enough for several chunks, with multi-byte characters inside.
fn long_doc(topic: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("Paragraph {i} about {topic}: the café's ünïcode sentence number {i} covers {topic} in depth. ")
        })
        .collect()
}

fn config(args: &[String]) -> kaito_rag::config::Config {
    common::config(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn exercise(pair: &Pair, c: &Client, index: &str) {
    for (q, k, filter) in [
        ("Which agent manages pods on a Kubernetes node?", 3, None),
        ("yellow fruit potassium", 10, None),
        ("GPU nodes for workspaces", 5, Some(json!({"topic": "k8s"}))),
        ("paragraph about storage buckets café", 8, None),
        ("ünïcode sentence number 7", 2, Some(json!({"topic": "storage"}))),
    ] {
        let mut body = json!({"index_name": index, "query": q, "max_node_count": k});
        if let Some(f) = filter {
            body["metadata_filter"] = f;
        }
        let v = pair.same(c, Method::POST, "/retrieve", Some(body)).await;
        assert!(v["count"].as_u64().is_some_and(|n| n > 0), "{q}: {v}");
    }
    for query in [
        "",
        "?limit=2&offset=1&max_text_length=20",
        "?limit=100&max_text_length=100000",
        "?max_text_length=37",
        "?metadata_filter=%7B%22topic%22%3A%22k8s%22%7D",
    ] {
        pair.same(c, Method::GET, &format!("/indexes/{index}/documents{query}"), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_service_answers_like_the_memory_only_one() {
    kaito_rag::llm::install_crypto_provider();
    let (llm, received) = common::spawn_llm().await;
    let llm_url = format!("{llm}/v1/chat/completions");
    let data = tempfile::tempdir().expect("tmp");
    let (memory_persist, durable_persist) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let args = |persist: &tempfile::TempDir| {
        vec![
            "--persist-dir".to_owned(),
            persist.path().to_str().expect("utf8").to_owned(),
            "--llm-inference-url".to_owned(),
            llm_url.clone(),
            "--llm-context-window".to_owned(),
            "4096".to_owned(),
        ]
    };
    let memory_args = args(&memory_persist);
    let mut durable_args = args(&durable_persist);
    durable_args.extend(["--data-dir".to_owned(), data.path().to_str().expect("utf8").to_owned()]);
    let (memory, _) = common::spawn_app(&config(&memory_args)).await;
    let (durable, durable_state) = common::spawn_app(&config(&durable_args)).await;
    assert!(durable_state.engine.is_durable());
    let pair = Pair { memory, durable, memory_persist, durable_persist };
    let c = Client::new();

    let mut docs: Vec<Value> = common::corpus().into_iter().map(|(t, m)| json!({"text": t, "metadata": m})).collect();
    docs.push(
        json!({"doc_id": "long-storage", "text": long_doc("storage buckets", 60), "metadata": {"topic": "storage"}}),
    );
    docs.push(json!({"doc_id": "long-gpu", "text": long_doc("GPU nodes", 45), "metadata": {"topic": "k8s"}}));
    pair.same(&c, Method::POST, "/index", Some(json!({"index_name": "docs", "documents": docs}))).await;
    exercise(&pair, &c, "docs").await;

    // Changed text, same text with other metadata, unchanged, unknown.
    let v = pair
        .same(
            &c,
            Method::POST,
            "/indexes/docs/documents",
            Some(json!({"documents": [
                {"doc_id": "long-storage", "text": long_doc("object storage tiers", 40), "metadata": {"topic": "storage"}},
                {"doc_id": "long-gpu", "text": long_doc("GPU nodes", 45), "metadata": {"topic": "gpu"}},
                {"doc_id": kaito_rag::engine::doc_id_for(common::corpus()[1].0), "text": common::corpus()[1].0, "metadata": {"topic": "food"}},
                {"doc_id": "nope", "text": "x"}
            ]})),
        )
        .await;
    assert_eq!(v["updated_documents"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["unchanged_documents"].as_array().map(Vec::len), Some(1), "{v}");
    // The replaced text's keywords are forgotten: "buckets" only occurred in it.
    let v = pair
        .same(
            &c,
            Method::POST,
            "/retrieve",
            Some(json!({"index_name": "docs", "query": "buckets", "max_node_count": 50})),
        )
        .await;
    assert!(v["results"].as_array().expect("results").iter().all(|r| r["sparse_score"].as_f64() == Some(0.0)), "{v}");
    exercise(&pair, &c, "docs").await;

    let banana = kaito_rag::engine::doc_id_for(common::corpus()[1].0);
    pair.same(
        &c,
        Method::POST,
        "/indexes/docs/documents/delete",
        Some(json!({"doc_ids": [banana, "long-gpu", "nope"]})),
    )
    .await;
    exercise(&pair, &c, "docs").await;

    // Chat context and source nodes come from the same texts.
    let body = json!({"model": "m", "index_name": "docs",
        "messages": [{"role": "user", "content": "What does the kubelet manage, and what about storage tiers?"}]});
    let v = pair.same(&c, Method::POST, "/v1/chat/completions", Some(body)).await;
    assert!(v["source_nodes"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    let sent = received.lock().expect("lock").clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["messages"], sent[1]["messages"], "the LLM got different context");

    // Snapshots: written from the store's texts, loaded back into an index keeping none.
    pair.same(&c, Method::POST, "/persist/docs", None).await;
    pair.same(&c, Method::POST, "/load/copy?path=<persist>/docs", None).await;
    exercise(&pair, &c, "copy").await;

    // A restart rebuilds the index from the store alone.
    let reopened = tempfile::tempdir().expect("tmp");
    std::fs::copy(data.path().join("kaito-rag.redb"), reopened.path().join("kaito-rag.redb")).expect("copy store");
    let mut reopened_args = args(&pair.durable_persist);
    reopened_args.extend(["--data-dir".to_owned(), reopened.path().to_str().expect("utf8").to_owned()]);
    let (durable, _) = common::spawn_app(&config(&reopened_args)).await;
    let pair = Pair { durable, ..pair };
    exercise(&pair, &c, "docs").await;
    exercise(&pair, &c, "copy").await;
}
