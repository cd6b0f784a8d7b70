//! HTTP API: upstream KAITO RAG engine routes, request validation, authentication and metrics.
//!
//! Every error is a JSON object `{"detail": "<message>"}` (FastAPI's shape). Malformed bodies,
//! query strings and values get a 422 whose message names the offending field; requests over
//! the size limit get a 413; a missing index is a 404.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::engine::{DocView, Engine, EngineError, NewDoc};
use crate::index::{Hit, Source};
use crate::llm::LlmClient;
use crate::metrics::METRICS;

/// API-level settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Bearer key required on every route but /health and /metrics.
    pub api_key: Option<String>,
    /// Largest `max_node_count`.
    pub max_top_k: usize,
    /// Most documents per request.
    pub max_documents: usize,
    /// Largest document text in bytes.
    pub max_document_bytes: usize,
    /// Largest request body in bytes.
    pub max_request_bytes: usize,
    /// LLM context window in tokens.
    pub context_window: usize,
    /// Default context fill ratio.
    pub context_token_ratio: f64,
    /// Tokens assumed per node when choosing how many nodes to retrieve.
    pub node_token_approximation: usize,
    /// Minimum cosine similarity of chat context chunks.
    pub min_similarity: f32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            api_key: None,
            max_top_k: 300,
            max_documents: 1000,
            max_document_bytes: 4 * 1024 * 1024,
            max_request_bytes: 32 * 1024 * 1024,
            context_window: 64000,
            context_token_ratio: 0.5,
            node_token_approximation: 500,
            min_similarity: 0.3,
        }
    }
}

/// State shared by handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The LLM, absent in retrieve-only mode.
    pub llm: Option<Arc<LlmClient>>,
    /// Settings.
    pub settings: Arc<ApiSettings>,
}

/// An HTTP error with a message.
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Message.
    pub detail: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into() }
    }

    /// 422 with a message.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 400 with a message.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, detail = %self.detail, "request failed");
        }
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::IndexNotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Invalid(_) | EngineError::Chunk { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Embed(_) => StatusCode::BAD_GATEWAY,
            EngineError::Store(crate::store::StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                StatusCode::NOT_FOUND
            }
            EngineError::Store(crate::store::StoreError::NotSnapshot(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Store(_) | EngineError::TextRead { .. } | EngineError::Task(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let text = s.to_string();
            if !detail.contains(&text) {
                detail.push_str(": ");
                detail.push_str(&text);
            }
            src = s.source();
        }
        Self::new(status, detail)
    }
}

/// A JSON body whose errors name the offending field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
            } else {
                ApiError::bad_request(format!("cannot read request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("request body is empty: a JSON object is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("request body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::invalid(format!("request body: {inner}"))
        } else {
            ApiError::invalid(format!("field {path}: {inner}"))
        }
    })
}

/// Upstream's Document shape.
#[derive(Debug, Serialize)]
pub struct DocumentOut {
    doc_id: String,
    text: String,
    metadata: Map<String, Value>,
    hash_value: Option<String>,
    is_truncated: bool,
}

impl From<DocView> for DocumentOut {
    fn from(d: DocView) -> Self {
        Self { doc_id: d.doc_id, text: d.text, metadata: d.metadata, hash_value: None, is_truncated: d.is_truncated }
    }
}

#[derive(Debug, Deserialize)]
struct DocumentIn {
    #[serde(default)]
    doc_id: Option<String>,
    text: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct IndexRequest {
    index_name: String,
    documents: Vec<DocumentIn>,
}

#[derive(Debug, Deserialize)]
struct UpdateRequest {
    documents: Vec<DocumentIn>,
}

#[derive(Debug, Deserialize)]
struct DeleteRequest {
    doc_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RetrieveRequest {
    index_name: String,
    query: String,
    #[serde(default)]
    max_node_count: Option<i64>,
    #[serde(default)]
    metadata_filter: Option<Map<String, Value>>,
}

fn check_index_name(name: &str, field: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    if name.len() > 512 {
        return Err(ApiError::invalid(format!("{field} is longer than 512 bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("{field} must not contain control characters")));
    }
    Ok(())
}

fn check_docs(state: &AppState, docs: &[DocumentIn], need_id: bool) -> Result<(), ApiError> {
    let s = &state.settings;
    if docs.is_empty() {
        return Err(ApiError::invalid("documents must not be empty"));
    }
    if docs.len() > s.max_documents {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "documents has {} entries; at most {} per request (RAG_MAX_DOCUMENTS_PER_REQUEST)",
                docs.len(),
                s.max_documents
            ),
        ));
    }
    for (i, d) in docs.iter().enumerate() {
        if d.text.is_empty() {
            return Err(ApiError::invalid(format!("documents[{i}].text must not be empty")));
        }
        if d.text.len() > s.max_document_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "documents[{i}].text has {} bytes; at most {} (RAG_MAX_DOCUMENT_BYTES)",
                    d.text.len(),
                    s.max_document_bytes
                ),
            ));
        }
        match &d.doc_id {
            Some(id) if id.is_empty() || id.len() > 512 => {
                return Err(ApiError::invalid(format!("documents[{i}].doc_id must be 1 to 512 bytes")));
            }
            None if need_id => {
                return Err(ApiError::invalid(format!("documents[{i}].doc_id is required")));
            }
            _ => {}
        }
        if let Some(m) = &d.metadata {
            state
                .engine
                .validate_metadata(m)
                .map_err(|e| ApiError::invalid(format!("documents[{i}].metadata: {e}")))?;
        }
    }
    Ok(())
}

fn to_new_docs(docs: Vec<DocumentIn>) -> Vec<NewDoc> {
    docs.into_iter()
        .map(|d| NewDoc { doc_id: d.doc_id, text: d.text, metadata: d.metadata.unwrap_or_default() })
        .collect()
}

async fn health(State(state): State<AppState>) -> Response {
    if state.engine.embedder().dim() == 0 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "Unhealthy", "detail": "embedding model not initialised"})),
        )
            .into_response();
    }
    Json(json!({"status": "Healthy", "detail": null})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    METRICS.set_index_stats(&state.engine.stats());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], METRICS.render())
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI_JSON).into_response()
}

async fn index_documents(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<IndexRequest>,
) -> Result<Json<Vec<DocumentOut>>, ApiError> {
    check_index_name(&req.index_name, "index_name")?;
    check_docs(&state, &req.documents, false)?;
    let out = state.engine.index_documents(&req.index_name, to_new_docs(req.documents)).await?;
    Ok(Json(out.into_iter().map(DocumentOut::from).collect()))
}

async fn list_indexes(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.engine.list_indexes())
}

fn parse_query(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let raw = raw.unwrap_or_default();
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded_pairs(&raw)? {
        out.insert(k, v);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::invalid("query string has a malformed %-escape"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid("query string is not UTF-8"))
}

fn form_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn int_param(q: &HashMap<String, String>, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| ApiError::invalid(format!("query parameter {name}={v:?} is not an integer")))?;
            if n < min || n > max {
                return Err(ApiError::invalid(format!("query parameter {name}={n} is out of range [{min}, {max}]")));
            }
            Ok(n)
        }
    }
}

fn bool_param(q: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match q.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off" | "") => Ok(false),
        Some(v) => Err(ApiError::invalid(format!("query parameter {name}={v:?} is not a boolean"))),
    }
}

fn metadata_filter_param(q: &HashMap<String, String>) -> Result<Option<Map<String, Value>>, ApiError> {
    match q.get("metadata_filter").filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(Value::Null) => Ok(None),
            Ok(_) => Err(ApiError::invalid("query parameter metadata_filter must be a JSON object")),
            Err(e) => Err(ApiError::invalid(format!("query parameter metadata_filter is not valid JSON: {e}"))),
        },
    }
}

async fn list_documents(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = parse_query(raw)?;
    let limit = int_param(&q, "limit", 10, 1, 100)? as usize;
    let offset = int_param(&q, "offset", 0, 0, i64::MAX)? as usize;
    let max_text_length = int_param(&q, "max_text_length", 1000, 1, i64::MAX)? as usize;
    let filter = metadata_filter_param(&q)?;
    let (docs, total) =
        state.engine.list_documents(&index_name, offset, limit, Some(max_text_length), filter.as_ref()).await?;
    let count = docs.len();
    Ok(Json(json!({
        "documents": docs.into_iter().map(DocumentOut::from).collect::<Vec<_>>(),
        "count": count,
        "total_items": total,
    })))
}

async fn update_documents(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
    JsonBody(req): JsonBody<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    check_docs(&state, &req.documents, true)?;
    let out = state.engine.update_documents(&index_name, to_new_docs(req.documents)).await?;
    let conv = |v: Vec<DocView>| v.into_iter().map(DocumentOut::from).collect::<Vec<_>>();
    Ok(Json(json!({
        "updated_documents": conv(out.updated),
        "unchanged_documents": conv(out.unchanged),
        "not_found_documents": conv(out.not_found),
    })))
}

async fn delete_documents(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
    JsonBody(req): JsonBody<DeleteRequest>,
) -> Result<Json<Value>, ApiError> {
    if req.doc_ids.is_empty() {
        return Err(ApiError::invalid("doc_ids must not be empty"));
    }
    if req.doc_ids.len() > state.settings.max_documents {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("doc_ids has {} entries; at most {} per request", req.doc_ids.len(), state.settings.max_documents),
        ));
    }
    let (deleted, missing) = state.engine.delete_documents(&index_name, req.doc_ids).await?;
    Ok(Json(json!({"deleted_doc_ids": deleted, "not_found_doc_ids": missing})))
}

async fn delete_index(State(state): State<AppState>, Path(index_name): Path<String>) -> Result<Json<Value>, ApiError> {
    state.engine.delete_index(&index_name).await?;
    Ok(Json(json!({"message": format!("Successfully deleted index {index_name}.")})))
}

async fn persist(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = parse_query(raw)?;
    let path = state.engine.persist_path(&index_name, q.get("path").map(String::as_str))?;
    state.engine.persist(&index_name, path.clone()).await?;
    Ok(Json(json!({
        "message": format!("Successfully persisted index {index_name} to {}.", path.display())
    })))
}

async fn load(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = parse_query(raw)?;
    check_index_name(&index_name, "index name")?;
    let overwrite = bool_param(&q, "overwrite")?;
    let path = state.engine.persist_path(&index_name, q.get("path").map(String::as_str))?;
    state.engine.load(&index_name, path.clone(), overwrite).await?;
    Ok(Json(json!({
        "message": format!("Successfully loaded index {index_name} from {}.", path.display())
    })))
}

/// One retrieval result in the upstream shape.
pub fn hit_json(h: &Hit) -> Value {
    json!({
        "doc_id": &*h.doc_id,
        "node_id": h.node_id,
        "text": h.text,
        "score": h.score,
        "dense_score": h.dense_score,
        "sparse_score": h.sparse_score,
        "source": match h.source {
            Source::Both => "both",
            Source::DenseOnly => "dense_only",
            Source::SparseOnly => "sparse_only",
        },
        "metadata": &*h.metadata,
    })
}

async fn retrieve(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RetrieveRequest>,
) -> Result<Json<Value>, ApiError> {
    check_index_name(&req.index_name, "index_name")?;
    if req.query.trim().is_empty() {
        return Err(ApiError::invalid("query must not be empty"));
    }
    let max = state.settings.max_top_k as i64;
    let k = req.max_node_count.unwrap_or(5);
    if !(1..=max).contains(&k) {
        return Err(ApiError::invalid(format!("max_node_count={k} is out of range [1, {max}]")));
    }
    let hits = state.engine.retrieve(&req.index_name, &req.query, k as usize, req.metadata_filter).await?;
    let results: Vec<Value> = hits.iter().map(hit_json).collect();
    Ok(Json(json!({"query": req.query, "results": results, "count": hits.len()})))
}

async fn chat(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let body: Value = parse_json(&body)?;
    crate::chat::chat_completions(&state, body).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    METRICS.observe_request(&method, &route, status, started.elapsed().as_secs_f64());
    tracing::debug!(%method, %route, status, ms = started.elapsed().as_millis() as u64, "request");
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = &state.settings.api_key else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if path == "/health" || path == "/metrics" {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), key.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid API key (Authorization: Bearer <key>)")
        .into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

async fn method_not_allowed(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed").into_response();
        if let Some(allow) = resp.headers().get(header::ALLOW) {
            r.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return r;
    }
    resp
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_request_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/index", post(index_documents))
        .route("/indexes", get(list_indexes))
        .route("/indexes/{index_name}/documents", get(list_documents).post(update_documents))
        .route("/indexes/{index_name}/documents/delete", post(delete_documents))
        .route("/indexes/{index_name}", delete(delete_index))
        .route("/persist/{index_name}", post(persist))
        .route("/load/{index_name}", post(load))
        .route("/retrieve", post(retrieve))
        .route("/v1/chat/completions", post(chat))
        .fallback(not_found)
        .layer(middleware::from_fn(method_not_allowed))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .route_layer(middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Response body from a byte stream (SSE passthrough).
pub fn stream_body(resp: reqwest::Response) -> Body {
    Body::from_stream(resp.bytes_stream())
}
