//! The official `openai` Python package talks to /v1/chat/completions (plain and streaming,
//! passthrough and with an index) through an OpenAI-compatible LLM stand-in on 127.0.0.1.

mod common;

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_works() {
    let python = common::python();
    let (llm, received) = common::spawn_llm().await;
    let cfg = common::config(&["--llm-inference-url", &llm, "--api-key", "test-key"]);
    let (base, _) = common::spawn_app(&cfg).await;
    kaito_rag::llm::install_crypto_provider();
    let docs: Vec<Value> = common::corpus().into_iter().map(|(t, m)| json!({"text": t, "metadata": m})).collect();
    let resp = reqwest::Client::new()
        .post(format!("{base}/index"))
        .bearer_auth("test-key")
        .json(&json!({"index_name": "docs", "documents": docs}))
        .send()
        .await
        .expect("index");
    assert!(resp.status().is_success());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(script)
        .arg(&base)
        .arg("docs")
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(stdout.trim()).expect("json output");
    assert_eq!(v["plain"]["content"], "echo: What does the kubelet manage?");
    assert_eq!(v["stream"], "echo: What does the kubelet manage?");
    assert_eq!(v["rag"]["content"], "echo: What does the kubelet manage?");
    let nodes = v["rag"]["source_nodes"].as_array().expect("source_nodes");
    assert!(nodes[0]["text"].as_str().expect("text").contains("kubelet"), "{v}");
    assert_eq!(v["rag_stream"]["content"], "echo: What does the kubelet manage?");
    assert!(v["rag_stream"]["source_nodes"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    assert_eq!(v["n2"]["status"], 400, "{v}");
    // The RAG calls reached the LLM with the retrieved context as a system message.
    let bodies = received.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[2]["messages"][0]["role"], "system");
    assert!(bodies[2]["messages"][0]["content"].as_str().expect("c").contains("kubelet"));
}
