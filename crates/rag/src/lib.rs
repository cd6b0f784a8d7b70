//! KAITO RAG service: the upstream KAITO RAG engine API (indexes, documents, hybrid
//! retrieval, OpenAI-compatible chat completions with retrieved context) served from Rust with
//! in-process embeddings, incremental keyword search and an optional durable store.

pub mod api;
pub mod app;
pub mod batch;
pub mod bm25;
pub mod chat;
pub mod chunk;
pub mod config;
pub mod embed;
pub mod engine;
pub mod index;
pub mod llm;
pub mod metrics;
pub mod onnx;
pub mod store;
pub mod vector;

/// The OpenAPI 3.1 description served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");
