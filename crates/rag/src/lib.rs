//! KAITO RAG service: the upstream KAITO RAG engine API (indexes, documents, hybrid
//! retrieval, OpenAI-compatible chat completions with retrieved context) served from Rust with
//! in-process embeddings, incremental keyword search and an optional durable store.

pub mod bm25;
pub mod chunk;
pub mod embed;
pub mod index;
pub mod vector;
