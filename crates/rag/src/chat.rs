//! `/v1/chat/completions`: OpenAI-compatible chat with retrieved context.
//!
//! Rules follow upstream (§6.1): 503 without an LLM; `tools`/`functions` and `n > 1` are 400;
//! without `index_name` the request is passed through untouched (streaming included); an
//! unknown index is 404; the retrieval query is every user message after the last assistant
//! message; a prompt longer than the context window is 400 and `max_tokens` is clipped to what
//! remains. Unlike upstream, a request with an index may stream: the first SSE event then
//! carries `source_nodes` (with empty `choices`) and the LLM's events follow unchanged.
//!
//! Context packing (§6.2, with upstream's defects fixed): the token budget is
//! `min(max_tokens or window, window - prompt_tokens - 150) * context_token_ratio`; chunks are
//! taken best-first (fused similarity, higher is better) if their cosine similarity reaches
//! `RAG_MIN_SIMILARITY` and they fit the remaining budget; when none qualifies the best chunks
//! that fit are used anyway.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::api::{ApiError, AppState};
use crate::index::Hit;

const SAFETY_MARGIN_TOKENS: usize = 150;
const CONTEXT_HEADER: &str = "Context information is below.\n---------------------\n";
const CONTEXT_FOOTER: &str =
    "\n---------------------\nGiven the context information and not prior knowledge, answer the user's question.";

fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for p in parts {
                if p.get("type").and_then(Value::as_str) != Some("text") {
                    return None;
                }
                out.push(p.get("text")?.as_str()?.to_owned());
            }
            Some(out.join("\n"))
        }
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// The retrieval query: user messages after the last assistant message, joined by blank
/// lines. `None` when a message is not plain text or has an unsupported role (passthrough).
fn retrieval_query(messages: &[Value]) -> Option<String> {
    let mut query = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str)?;
        let text = message_text(m.get("content").unwrap_or(&Value::Null))?;
        match role {
            "assistant" => query.clear(),
            "user" => query.push(text),
            "system" | "developer" => {}
            _ => return None,
        }
    }
    let q = query.join("\n\n");
    (!q.trim().is_empty()).then_some(q)
}

/// Chooses the chunks that go into the prompt.
pub fn select_context(hits: &[Hit], budget: usize, min_similarity: f32) -> Vec<&Hit> {
    let pack = |threshold: Option<f32>| {
        let mut left = budget;
        let mut chosen = Vec::new();
        for h in hits {
            if threshold.is_some_and(|t| h.dense_score < t) {
                continue;
            }
            let t = h.tokens as usize;
            if t <= left {
                left -= t;
                chosen.push(h);
            }
        }
        chosen
    };
    let chosen = pack(Some(min_similarity));
    if chosen.is_empty() { pack(None) } else { chosen }
}

async fn relay(state: &AppState, body: &Value, extra_first_event: Option<Value>) -> Result<Response, ApiError> {
    let llm = state.llm.as_ref().ok_or_else(no_llm)?;
    let resp = llm.send(body).await.map_err(|e| {
        let mut msg = e.to_string();
        if let Some(s) = std::error::Error::source(&e) {
            msg.push_str(&format!(": {s}"));
        }
        ApiError::new(StatusCode::BAD_GATEWAY, msg)
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let is_sse = content_type.to_str().is_ok_and(|c| c.starts_with("text/event-stream"));
    let stream = resp.bytes_stream().map(|r| r.map_err(std::io::Error::other));
    let body = match (extra_first_event, is_sse && status.is_success()) {
        (Some(ev), true) => {
            let first = Bytes::from(format!("data: {ev}\n\n"));
            axum::body::Body::from_stream(
                futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(stream),
            )
        }
        _ => axum::body::Body::from_stream(stream),
    };
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    if is_sse {
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Ok(r)
}

fn no_llm() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "LLM_INFERENCE_URL is not configured: this RAG engine is retrieve-only; use /retrieve",
    )
}

fn count_message_tokens(state: &AppState, messages: &[Value]) -> usize {
    messages
        .iter()
        .map(|m| {
            4 + m.get("content").and_then(message_text).map(|t| state.engine.embedder().count_tokens(&t)).unwrap_or(0)
        })
        .sum::<usize>()
        + 3
}

/// Handles one chat completions request.
pub async fn chat_completions(state: &AppState, body: Value) -> Result<Response, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    if state.llm.is_none() {
        return Err(no_llm());
    }
    if body.contains_key("tools") || body.contains_key("functions") {
        return Err(ApiError::bad_request("tools and functions are not supported by the RAG engine"));
    }
    if let Some(n) = body.get("n").filter(|v| !v.is_null()) {
        match n.as_u64() {
            Some(1) => {}
            Some(_) => return Err(ApiError::bad_request("n > 1 is not supported")),
            None => return Err(ApiError::invalid("field n must be a positive integer")),
        }
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m.clone(),
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages must not be empty")),
        Some(_) => return Err(ApiError::invalid("field messages must be an array")),
        None => return Err(ApiError::invalid("field messages is required")),
    };
    for (i, m) in messages.iter().enumerate() {
        if !m.is_object() {
            return Err(ApiError::invalid(format!("messages[{i}] must be an object")));
        }
        if !m.get("role").is_some_and(Value::is_string) {
            return Err(ApiError::invalid(format!("messages[{i}].role is required and must be a string")));
        }
    }
    let ratio = match body.remove("context_token_ratio") {
        None | Some(Value::Null) => state.settings.context_token_ratio,
        Some(v) => match v.as_f64() {
            Some(r) if (0.2..=0.8).contains(&r) => r,
            _ => {
                return Err(ApiError::invalid("context_token_ratio must be a number in [0.2, 0.8]"));
            }
        },
    };
    let index_name = match body.remove("index_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(_) => return Err(ApiError::invalid("index_name must be a non-empty string")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("field stream must be a boolean")),
    };
    if !body.contains_key("model")
        && let Some(llm) = &state.llm
        && let Some(model) = llm.default_model().await
    {
        body.insert("model".into(), Value::String(model));
    }
    let Some(index_name) = index_name else {
        return relay(state, &Value::Object(body), None).await;
    };
    if !state.engine.list_indexes().contains(&index_name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("No such index: '{index_name}' exists.")));
    }
    let Some(query) = retrieval_query(&messages) else {
        return relay(state, &Value::Object(body), None).await;
    };
    let window = state.settings.context_window;
    let prompt_tokens = count_message_tokens(state, &messages);
    if prompt_tokens > window {
        return Err(ApiError::bad_request(format!(
            "the prompt has about {prompt_tokens} tokens, more than the LLM context window of {window}"
        )));
    }
    let remaining = window - prompt_tokens;
    let requested_max = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .map(|v| v as usize);
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = body.get(key).and_then(Value::as_u64) {
            body.insert(key.into(), json!((v as usize).min(remaining)));
        }
    }
    let budget_base = requested_max.unwrap_or(window).min(window.saturating_sub(prompt_tokens + SAFETY_MARGIN_TOKENS));
    let budget = (budget_base as f64 * ratio) as usize;
    let top_k =
        (remaining / state.settings.node_token_approximation.max(1)).max(100).min(state.settings.max_top_k.max(1));
    let hits = state.engine.retrieve(&index_name, &query, top_k, None).await?;
    let chosen = select_context(&hits, budget, state.settings.min_similarity);
    if chosen.is_empty() {
        return relay(state, &Value::Object(body), None).await;
    }
    let context: Vec<&str> = chosen.iter().map(|h| h.text.as_str()).collect();
    let context_block = format!("{CONTEXT_HEADER}{}{CONTEXT_FOOTER}", context.join("\n\n"));
    let mut new_messages = messages.clone();
    match new_messages.first_mut() {
        Some(first)
            if first.get("role").and_then(Value::as_str) == Some("system")
                && first.get("content").is_some_and(Value::is_string) =>
        {
            let old = first.get("content").and_then(Value::as_str).unwrap_or_default();
            first["content"] = Value::String(format!("{old}\n\n{context_block}"));
        }
        _ => new_messages.insert(0, json!({"role": "system", "content": context_block})),
    }
    body.insert("messages".into(), Value::Array(new_messages.clone()));
    let source_nodes: Vec<Value> = chosen
        .iter()
        .map(|h| {
            json!({
                "doc_id": &*h.doc_id,
                "node_id": h.node_id,
                "text": h.text,
                "score": h.score,
                "metadata": &*h.metadata,
            })
        })
        .collect();
    let body = Value::Object(body);
    if stream {
        let first = json!({
            "id": format!("rag-{}", uuid_like()),
            "object": "chat.completion.chunk",
            "created": now_secs(),
            "model": body.get("model").cloned().unwrap_or(Value::Null),
            "choices": [],
            "source_nodes": source_nodes,
        });
        return relay(state, &body, Some(first)).await;
    }
    let llm = state.llm.as_ref().ok_or_else(no_llm)?;
    let resp = llm.send(&body).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("{e}: {}", std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()),
        )
    })?;
    let status = resp.status();
    let bytes =
        resp.bytes().await.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("reading LLM response: {e}")))?;
    if !status.is_success() {
        let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = (code, bytes).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(r);
    }
    let mut out: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => m,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "the LLM answered with something that is not a chat completion object",
            ));
        }
    };
    if !out.get("usage").is_some_and(Value::is_object) {
        let prompt = count_message_tokens(state, &new_messages);
        let completion: usize = out
            .get("choices")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(|ch| ch.pointer("/message/content").and_then(Value::as_str))
                    .map(|t| state.engine.embedder().count_tokens(t))
                    .sum()
            })
            .unwrap_or(0);
        out.insert(
            "usage".into(),
            json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}),
        );
    }
    out.insert("source_nodes".into(), Value::Array(source_nodes));
    Ok(axum::Json(Value::Object(out)).into_response())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{:x}{:x}", now_secs(), N.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_user_messages_after_last_assistant() {
        let m = vec![
            json!({"role": "system", "content": "be nice"}),
            json!({"role": "user", "content": "old"}),
            json!({"role": "assistant", "content": "answer"}),
            json!({"role": "user", "content": "a"}),
            json!({"role": "user", "content": [{"type": "text", "text": "b"}]}),
        ];
        assert_eq!(retrieval_query(&m).as_deref(), Some("a\n\nb"));
        let img = vec![json!({"role": "user", "content": [{"type": "image_url", "image_url": {}}]})];
        assert_eq!(retrieval_query(&img), None);
        let tool = vec![json!({"role": "tool", "content": "x"})];
        assert_eq!(retrieval_query(&tool), None);
    }
}
