//! Contract tests: every route, its JSON shape and status codes (insta snapshots).

mod common;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

fn client() -> Client {
    kaito_rag::llm::install_crypto_provider();
    Client::new()
}

async fn call(c: &Client, method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

async fn raw(c: &Client, method: Method, url: &str, body: &str) -> (StatusCode, Value) {
    let resp = c
        .request(method, url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn snap(status: StatusCode, mut v: Value) -> Value {
    common::redact_scores(&mut v);
    json!({"status": status.as_u16(), "body": v})
}

async fn index_corpus(c: &Client, base: &str, name: &str) -> Value {
    let docs: Vec<Value> = common::corpus().into_iter().map(|(t, m)| json!({"text": t, "metadata": m})).collect();
    let (s, v) =
        call(c, Method::POST, &format!("{base}/index"), Some(json!({"index_name": name, "documents": docs}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn document_lifecycle() {
    let persist = tempfile::tempdir().expect("tmp");
    let cfg = common::config(&["--persist-dir", persist.path().to_str().expect("utf8")]);
    let (base, _) = common::spawn_app(&cfg).await;
    let c = client();

    let (s, v) = call(&c, Method::GET, &format!("{base}/health"), None).await;
    insta::assert_json_snapshot!("health", snap(s, v));

    let v = index_corpus(&c, &base, "docs").await;
    insta::assert_json_snapshot!("index", snap(StatusCode::OK, v.clone()));
    // Re-indexing the same texts is idempotent.
    let again = index_corpus(&c, &base, "docs").await;
    assert_eq!(again, v);

    let (s, v) = call(&c, Method::GET, &format!("{base}/indexes"), None).await;
    insta::assert_json_snapshot!("indexes", snap(s, v));

    let (s, v) =
        call(&c, Method::GET, &format!("{base}/indexes/docs/documents?limit=2&offset=1&max_text_length=20"), None)
            .await;
    insta::assert_json_snapshot!("list_documents_page", snap(s, v));

    let filter = "%7B%22topic%22%3A%22k8s%22%7D";
    let (s, v) = call(&c, Method::GET, &format!("{base}/indexes/docs/documents?metadata_filter={filter}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total_items"], 2, "{v}");

    let (s, v) = call(
        &c,
        Method::POST,
        &format!("{base}/retrieve"),
        Some(json!({"index_name": "docs", "query": "Which agent manages pods on a Kubernetes node?", "max_node_count": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let scores: Vec<f64> =
        v["results"].as_array().expect("results").iter().map(|r| r["score"].as_f64().expect("score")).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked best first: {scores:?}");
    assert!(v["results"][0]["dense_score"].as_f64().expect("dense") > 0.3);
    insta::assert_json_snapshot!("retrieve", snap(s, v));

    let (s, v) = call(
        &c,
        Method::POST,
        &format!("{base}/retrieve"),
        Some(json!({"index_name": "docs", "query": "fruit", "max_node_count": 5, "metadata_filter": {"topic": "llm"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["results"][0]["metadata"]["topic"], "llm");

    let kubelet_id = engine_id(common::corpus()[0].0);
    let banana_id = engine_id(common::corpus()[1].0);
    let (s, v) = call(
        &c,
        Method::POST,
        &format!("{base}/indexes/docs/documents"),
        Some(json!({"documents": [
            {"doc_id": kubelet_id, "text": "The kubelet runs on every node.", "metadata": {"topic": "k8s"}},
            {"doc_id": banana_id, "text": common::corpus()[1].0, "metadata": {"topic": "food"}},
            {"doc_id": "nope", "text": "x"}
        ]})),
    )
    .await;
    insta::assert_json_snapshot!("update_documents", snap(s, v));

    let (s, v) = call(
        &c,
        Method::POST,
        &format!("{base}/indexes/docs/documents/delete"),
        Some(json!({"doc_ids": [banana_id, "nope"]})),
    )
    .await;
    insta::assert_json_snapshot!("delete_documents", snap(s, v));

    let (s, v) = call(&c, Method::POST, &format!("{base}/persist/docs"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let msg = v["message"].as_str().expect("message").replace(persist.path().to_str().expect("utf8"), "<persist>");
    insta::assert_json_snapshot!("persist", json!({"status": 200, "message": msg}));

    let (s, v) = call(&c, Method::POST, &format!("{base}/load/docs"), None).await;
    insta::assert_json_snapshot!("load_conflict", snap(s, v));
    let (s, v) =
        call(&c, Method::POST, &format!("{base}/load/copy?path={}", persist.path().join("docs").display()), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = call(&c, Method::GET, &format!("{base}/indexes/copy/documents"), None).await;
    assert_eq!(v["total_items"], 3, "{v}");
    let (s, v) = call(&c, Method::POST, &format!("{base}/load/docs?overwrite=true"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&c, Method::POST, &format!("{base}/load/missing"), None).await;
    insta::assert_json_snapshot!("load_missing", snap(s, redact_path(v, persist.path())));

    let (s, v) = call(&c, Method::DELETE, &format!("{base}/indexes/docs"), None).await;
    insta::assert_json_snapshot!("delete_index", snap(s, v));
    let (s, v) = call(&c, Method::DELETE, &format!("{base}/indexes/docs"), None).await;
    insta::assert_json_snapshot!("delete_index_missing", snap(s, v));
    let (_, v) = call(&c, Method::GET, &format!("{base}/indexes"), None).await;
    assert_eq!(v, json!(["copy"]));

    let (s, v) = call(&c, Method::GET, &format!("{base}/metrics"), None).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().expect("text");
    assert!(text.contains("kaito_rag_requests_total{"), "{text}");
    assert!(text.contains("endpoint=\"/retrieve\""), "{text}");
    assert!(text.contains("kaito_rag_documents{index=\"copy\"} 3"), "{text}");

    let (s, v) = call(&c, Method::GET, &format!("{base}/openapi.json"), None).await;
    assert_eq!(s, StatusCode::OK);
    let paths: Vec<&String> = v["paths"].as_object().expect("paths").keys().collect();
    insta::assert_json_snapshot!("openapi_paths", paths);
}

fn engine_id(text: &str) -> String {
    kaito_rag::engine::doc_id_for(text)
}

fn redact_path(v: Value, p: &std::path::Path) -> Value {
    serde_json::from_str(&v.to_string().replace(p.to_str().expect("utf8"), "<persist>")).expect("json")
}

#[tokio::test]
async fn malformed_requests_get_4xx_naming_the_problem() {
    let cfg = common::config(&["--max-documents-per-request", "4", "--max-request-bytes", "20000"]);
    let (base, _) = common::spawn_app(&cfg).await;
    let c = client();
    index_corpus(&c, &base, "docs").await;
    let big = "x".repeat(30000);
    let cases: Vec<(&str, Method, String, String)> = vec![
        ("index_not_json", Method::POST, "/index".into(), "{not json".into()),
        ("index_empty_body", Method::POST, "/index".into(), "".into()),
        ("index_missing_documents", Method::POST, "/index".into(), r#"{"index_name":"a"}"#.into()),
        (
            "index_text_wrong_type",
            Method::POST,
            "/index".into(),
            r#"{"index_name":"a","documents":[{"text":"ok"},{"text":5}]}"#.into(),
        ),
        ("index_empty_text", Method::POST, "/index".into(), r#"{"index_name":"a","documents":[{"text":""}]}"#.into()),
        ("index_empty_name", Method::POST, "/index".into(), r#"{"index_name":" ","documents":[{"text":"a"}]}"#.into()),
        (
            "index_too_many",
            Method::POST,
            "/index".into(),
            r#"{"index_name":"a","documents":[{"text":"a"},{"text":"b"},{"text":"c"},{"text":"d"},{"text":"e"}]}"#
                .into(),
        ),
        (
            "index_code_no_language",
            Method::POST,
            "/index".into(),
            r#"{"index_name":"a","documents":[{"text":"x=1","metadata":{"split_type":"code"}}]}"#.into(),
        ),
        (
            "index_code_bad_language",
            Method::POST,
            "/index".into(),
            r#"{"index_name":"a","documents":[{"text":"x=1","metadata":{"split_type":"code","language":"cobol"}}]}"#
                .into(),
        ),
        (
            "index_metadata_not_object",
            Method::POST,
            "/index".into(),
            r#"{"index_name":"a","documents":[{"text":"x","metadata":[1]}]}"#.into(),
        ),
        (
            "index_body_too_large",
            Method::POST,
            "/index".into(),
            format!(r#"{{"index_name":"a","documents":[{{"text":"{big}"}}]}}"#),
        ),
        ("index_body_array", Method::POST, "/index".into(), "[]".into()),
        ("retrieve_missing_query", Method::POST, "/retrieve".into(), r#"{"index_name":"docs"}"#.into()),
        ("retrieve_blank_query", Method::POST, "/retrieve".into(), r#"{"index_name":"docs","query":"  "}"#.into()),
        (
            "retrieve_top_k_zero",
            Method::POST,
            "/retrieve".into(),
            r#"{"index_name":"docs","query":"q","max_node_count":0}"#.into(),
        ),
        (
            "retrieve_top_k_too_big",
            Method::POST,
            "/retrieve".into(),
            r#"{"index_name":"docs","query":"q","max_node_count":301}"#.into(),
        ),
        (
            "retrieve_top_k_string",
            Method::POST,
            "/retrieve".into(),
            r#"{"index_name":"docs","query":"q","max_node_count":"5"}"#.into(),
        ),
        (
            "retrieve_filter_not_object",
            Method::POST,
            "/retrieve".into(),
            r#"{"index_name":"docs","query":"q","metadata_filter":"x"}"#.into(),
        ),
        ("retrieve_unknown_index", Method::POST, "/retrieve".into(), r#"{"index_name":"nope","query":"q"}"#.into()),
        ("list_limit_zero", Method::GET, "/indexes/docs/documents?limit=0".into(), "".into()),
        ("list_limit_101", Method::GET, "/indexes/docs/documents?limit=101".into(), "".into()),
        ("list_offset_negative", Method::GET, "/indexes/docs/documents?offset=-1".into(), "".into()),
        ("list_offset_text", Method::GET, "/indexes/docs/documents?offset=abc".into(), "".into()),
        ("list_bad_filter", Method::GET, "/indexes/docs/documents?metadata_filter=%7Bbad".into(), "".into()),
        ("list_filter_array", Method::GET, "/indexes/docs/documents?metadata_filter=%5B1%5D".into(), "".into()),
        ("list_bad_escape", Method::GET, "/indexes/docs/documents?limit=%zz".into(), "".into()),
        ("list_unknown_index", Method::GET, "/indexes/nope/documents".into(), "".into()),
        (
            "update_missing_doc_id",
            Method::POST,
            "/indexes/docs/documents".into(),
            r#"{"documents":[{"text":"a"}]}"#.into(),
        ),
        (
            "update_unknown_index",
            Method::POST,
            "/indexes/nope/documents".into(),
            r#"{"documents":[{"doc_id":"a","text":"a"}]}"#.into(),
        ),
        ("delete_docs_empty", Method::POST, "/indexes/docs/documents/delete".into(), r#"{"doc_ids":[]}"#.into()),
        ("delete_docs_wrong_type", Method::POST, "/indexes/docs/documents/delete".into(), r#"{"doc_ids":"a"}"#.into()),
        (
            "delete_docs_unknown_index",
            Method::POST,
            "/indexes/nope/documents/delete".into(),
            r#"{"doc_ids":["a"]}"#.into(),
        ),
        ("persist_unknown_index", Method::POST, "/persist/nope".into(), "".into()),
        ("persist_dotdot", Method::POST, "/persist/docs?path=/tmp/../etc".into(), "".into()),
        ("load_bad_overwrite", Method::POST, "/load/docs?overwrite=maybe".into(), "".into()),
        ("unknown_route", Method::GET, "/nope".into(), "".into()),
        ("wrong_method", Method::GET, "/index".into(), "".into()),
    ];
    let mut results = serde_json::Map::new();
    for (name, method, path, body) in cases {
        let (s, v) = raw(&c, method, &format!("{base}{path}"), &body).await;
        assert!(s.is_client_error(), "{name}: {s} {v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{name}: {v}");
        results.insert(name.to_owned(), json!({"status": s.as_u16(), "detail": v["detail"]}));
    }
    insta::assert_json_snapshot!("validation_errors", Value::Object(results));
    let (s, v) = raw(
        &c,
        Method::POST,
        &format!("{base}/v1/chat/completions"),
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    insta::assert_json_snapshot!("chat_without_llm", snap(s, v));
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let cfg = common::config(&["--api-key", "s3cret"]);
    let (base, _) = common::spawn_app(&cfg).await;
    let c = client();
    let (s, _) = call(&c, Method::GET, &format!("{base}/health"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&c, Method::GET, &format!("{base}/metrics"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&c, Method::GET, &format!("{base}/indexes"), None).await;
    insta::assert_json_snapshot!("unauthorized", snap(s, v));
    let resp = c.get(format!("{base}/indexes")).bearer_auth("wrong").send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c.get(format!("{base}/indexes")).bearer_auth("s3cret").send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn chat_completions_contract() {
    let (llm, received) = common::spawn_llm().await;
    let cfg =
        common::config(&["--llm-inference-url", &format!("{llm}/v1/chat/completions"), "--llm-context-window", "4096"]);
    let (base, _) = common::spawn_app(&cfg).await;
    let c = client();
    index_corpus(&c, &base, "docs").await;
    let url = format!("{base}/v1/chat/completions");

    // Passthrough: no index_name, body forwarded untouched (model discovered).
    let (s, v) = call(&c, Method::POST, &url, Some(json!({"messages": [{"role": "user", "content": "hello"}]}))).await;
    insta::assert_json_snapshot!("chat_passthrough", snap(s, v));
    let sent = received.lock().expect("lock").last().cloned().expect("sent");
    assert_eq!(sent["model"], "stand-in-model");
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(1));

    // RAG: context injected as a system message, source_nodes returned, max_tokens clipped.
    let (s, v) = call(
        &c,
        Method::POST,
        &url,
        Some(json!({"model": "m", "index_name": "docs", "max_tokens": 100000,
            "messages": [{"role": "user", "content": "What does the kubelet manage?"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stand_in_messages"], 2);
    assert!(v["source_nodes"][0]["text"].as_str().expect("text").contains("kubelet"), "{v}");
    insta::assert_json_snapshot!("chat_rag", snap(s, v));
    let sent = received.lock().expect("lock").last().cloned().expect("sent");
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(sent["messages"][0]["content"].as_str().expect("c").contains("kubelet"));
    assert!(sent.get("index_name").is_none());
    assert!(sent["max_tokens"].as_u64().expect("max") < 4096);

    // Streaming passthrough relays SSE.
    let resp = c
        .post(&url)
        .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "a b"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let text = resp.text().await.expect("text");
    assert!(text.contains("data: [DONE]"), "{text}");

    // Streaming with an index: first event carries source_nodes.
    let resp = c
        .post(&url)
        .json(&json!({"model": "m", "stream": true, "index_name": "docs", "messages": [{"role": "user", "content": "kubelet?"}]}))
        .send()
        .await
        .expect("send");
    let text = resp.text().await.expect("text");
    let first: Value =
        serde_json::from_str(text.lines().next().and_then(|l| l.strip_prefix("data: ")).expect("first event"))
            .expect("json");
    assert!(first["source_nodes"].as_array().is_some_and(|a| !a.is_empty()), "{text}");
    assert!(text.contains("data: [DONE]"));

    let bad: Vec<(&str, Value)> = vec![
        ("chat_tools", json!({"messages": [{"role": "user", "content": "x"}], "tools": []})),
        ("chat_n2", json!({"messages": [{"role": "user", "content": "x"}], "n": 2})),
        ("chat_unknown_index", json!({"index_name": "nope", "messages": [{"role": "user", "content": "x"}]})),
        ("chat_no_messages", json!({"index_name": "docs"})),
        ("chat_message_no_role", json!({"messages": [{"content": "x"}]})),
        (
            "chat_ratio_out_of_range",
            json!({"context_token_ratio": 0.9, "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "chat_prompt_too_long",
            json!({"index_name": "docs", "messages": [{"role": "user", "content": "word ".repeat(5000)}]}),
        ),
    ];
    let mut results = serde_json::Map::new();
    for (name, body) in bad {
        let (s, v) = call(&c, Method::POST, &url, Some(body)).await;
        assert!(s.is_client_error(), "{name}: {s} {v}");
        results.insert(name.to_owned(), json!({"status": s.as_u16(), "detail": v["detail"]}));
    }
    insta::assert_json_snapshot!("chat_errors", Value::Object(results));
}
