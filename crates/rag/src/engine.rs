//! The RAG engine: named indexes, the write path (chunk, embed, store durably, then publish) and
//! the read path (embed the query, hybrid search).
//!
//! Writes are prepared (chunked and embedded) without any lock, then committed under one
//! writer lock: the durable store commits first, the in-memory index is updated second, and
//! only then does the caller get its answer. Readers never wait for embedding.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkError, Chunker};
use crate::embed::{EmbedError, Embedder};
use crate::index::{DocRecord, Fusion, Hit, Index, Query};
use crate::store::{self, Op, Store, StoreError};

/// Errors from engine operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The named index does not exist.
    #[error("No such index: '{0}' exists.")]
    IndexNotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The target already exists.
    #[error("{0}")]
    Conflict(String),
    /// A document could not be chunked.
    #[error("document {doc}: {source}")]
    Chunk {
        /// Which document (position or id).
        doc: String,
        /// Cause.
        #[source]
        source: ChunkError,
    },
    /// Embedding failed.
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    /// The durable store failed; the change was not applied.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// A worker thread failed.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// A document in a request.
#[derive(Debug, Clone)]
pub struct NewDoc {
    /// Caller-chosen id; the SHA-256 of the text when absent.
    pub doc_id: Option<String>,
    /// Text.
    pub text: String,
    /// Metadata.
    pub metadata: Map<String, Value>,
}

/// A document as returned by the API.
#[derive(Debug, Clone)]
pub struct DocView {
    /// Id.
    pub doc_id: String,
    /// Text (possibly truncated).
    pub text: String,
    /// Metadata.
    pub metadata: Map<String, Value>,
    /// True when `text` was cut.
    pub is_truncated: bool,
}

/// Outcome of an update request.
#[derive(Debug, Default)]
pub struct UpdateOutcome {
    /// Documents whose text or metadata changed.
    pub updated: Vec<DocView>,
    /// Documents sent unchanged.
    pub unchanged: Vec<DocView>,
    /// Documents whose id is not in the index.
    pub not_found: Vec<DocView>,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Hybrid fusion weights.
    pub fusion: Fusion,
    /// Default root of /persist and /load.
    pub persist_dir: PathBuf,
}

/// The engine shared by all request handlers.
pub struct Engine {
    embedder: Embedder,
    chunker: Arc<Chunker>,
    store: Option<Arc<Store>>,
    indexes: RwLock<HashMap<String, Arc<RwLock<Index>>>>,
    writer: tokio::sync::Mutex<()>,
    settings: EngineSettings,
    searches: std::sync::mpsc::Sender<SearchJob>,
}

/// A retrieval waiting for the search thread.
struct SearchJob {
    index: Arc<RwLock<Index>>,
    vector: Vec<f32>,
    text: String,
    k: usize,
    filter: Option<Map<String, Value>>,
    done: tokio::sync::oneshot::Sender<Result<Vec<Hit>, EngineError>>,
}

const MAX_SEARCH_BATCH: usize = 64;

/// Answers retrievals in batches: every job that arrived while the previous batch ran is
/// searched together, per index, with one scan of its vectors. Under concurrent load this turns
/// N memory-bound scans into one; alone, a query pays nothing extra.
fn search_worker(jobs: &std::sync::mpsc::Receiver<SearchJob>, fusion: Fusion) {
    while let Some(mut batch) = crate::batch::recv_batch(jobs, MAX_SEARCH_BATCH) {
        while !batch.is_empty() {
            let index = Arc::clone(&batch[0].index);
            let (same, rest): (Vec<SearchJob>, Vec<SearchJob>) =
                batch.into_iter().partition(|j| Arc::ptr_eq(&j.index, &index));
            batch = rest;
            run_search_batch(&index, same, fusion);
        }
    }
}

fn run_search_batch(index: &RwLock<Index>, jobs: Vec<SearchJob>, fusion: Fusion) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let queries: Vec<Query<'_>> = jobs
            .iter()
            .map(|j| Query { vector: &j.vector, text: &j.text, k: j.k, filter: j.filter.as_ref() })
            .collect();
        Engine::read(index, |i| i.search_many(&queries, fusion))
    }));
    match outcome {
        Ok(Ok(results)) => {
            for (job, hits) in jobs.into_iter().zip(results) {
                let _ = job.done.send(Ok(hits));
            }
        }
        Ok(Err(e)) => {
            let msg = e.to_string();
            for job in jobs {
                let _ = job.done.send(Err(EngineError::Task(msg.clone())));
            }
        }
        Err(_) => {
            tracing::error!("search panicked; its requests fail, the service continues");
            for job in jobs {
                let _ = job.done.send(Err(EngineError::Task("search failed".into())));
            }
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("embedder", &self.embedder.model_id())
            .field("durable", &self.store.is_some())
            .finish()
    }
}

/// SHA-256 hex of `text` (upstream's document id).
pub fn doc_id_for(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn truncate_chars(text: &str, max_chars: Option<usize>) -> (String, bool) {
    match max_chars {
        Some(n) => match text.char_indices().nth(n) {
            Some((cut, _)) => (text[..cut].to_owned(), true),
            None => (text.to_owned(), false),
        },
        None => (text.to_owned(), false),
    }
}

fn task_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Task(e.to_string())
}

impl Engine {
    /// Creates an engine; with a store, loads what it holds.
    pub fn new(
        embedder: Embedder,
        chunker: Chunker,
        store: Option<Store>,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        let dim = embedder.dim();
        let mut loading: HashMap<String, Index> = HashMap::new();
        if let Some(store) = &store {
            store.visit(|name, rec| {
                let index = loading.entry(name.to_owned()).or_insert_with(|| Index::new(dim));
                if let Some(rec) = rec {
                    index.insert(rec);
                }
            })?;
        }
        let indexes = loading.into_iter().map(|(name, index)| (name, Arc::new(RwLock::new(index)))).collect();
        let (searches, jobs) = std::sync::mpsc::channel::<SearchJob>();
        let fusion = settings.fusion;
        std::thread::Builder::new()
            .name("search".into())
            .spawn(move || search_worker(&jobs, fusion))
            .map_err(|e| EngineError::Task(format!("cannot start the search thread: {e}")))?;
        Ok(Self {
            searches,
            embedder,
            chunker: Arc::new(chunker),
            store: store.map(Arc::new),
            indexes: RwLock::new(indexes),
            writer: tokio::sync::Mutex::new(()),
            settings,
        })
    }

    /// The embedder.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// True when writes are durable.
    pub fn is_durable(&self) -> bool {
        self.store.is_some()
    }

    fn index(&self, name: &str) -> Result<Arc<RwLock<Index>>, EngineError> {
        self.indexes
            .read()
            .map_err(|_| EngineError::Task("index map lock poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::IndexNotFound(name.to_owned()))
    }

    fn read<R>(idx: &RwLock<Index>, f: impl FnOnce(&Index) -> R) -> Result<R, EngineError> {
        let guard = idx.read().map_err(|_| EngineError::Task("index lock poisoned".into()))?;
        Ok(f(&guard))
    }

    fn write<R>(idx: &RwLock<Index>, f: impl FnOnce(&mut Index) -> R) -> Result<R, EngineError> {
        let mut guard = idx.write().map_err(|_| EngineError::Task("index lock poisoned".into()))?;
        Ok(f(&mut guard))
    }

    /// Index names, sorted.
    pub fn list_indexes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.indexes.read().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    }

    /// Number of documents and chunks per index.
    pub fn stats(&self) -> Vec<(String, usize, usize)> {
        let map = match self.indexes.read() {
            Ok(m) => m.clone(),
            Err(_) => return Vec::new(),
        };
        map.iter().filter_map(|(n, i)| i.read().ok().map(|g| (n.clone(), g.doc_count(), g.chunk_count()))).collect()
    }

    /// Checks that metadata names a supported splitter.
    pub fn validate_metadata(&self, metadata: &Map<String, Value>) -> Result<(), ChunkError> {
        self.chunker.validate(metadata)
    }

    /// Chunks and embeds documents (no lock held).
    async fn prepare(&self, docs: Vec<(String, String, Map<String, Value>)>) -> Result<Vec<DocRecord>, EngineError> {
        let chunker = Arc::clone(&self.chunker);
        let (records, texts) = tokio::task::spawn_blocking(move || {
            let mut records = Vec::with_capacity(docs.len());
            let mut texts = Vec::new();
            for (doc_id, text, metadata) in docs {
                let spans = chunker
                    .split(&text, &metadata)
                    .map_err(|source| EngineError::Chunk { doc: doc_id.clone(), source })?;
                for s in &spans {
                    texts.push(text[s.start as usize..s.end as usize].to_owned());
                }
                records.push(DocRecord { doc_id, text, metadata, seq: 0, spans, vectors: Vec::new() });
            }
            Ok::<_, EngineError>((records, texts))
        })
        .await
        .map_err(task_err)??;
        let vectors = self.embedder.embed(texts).await?;
        let mut it = vectors.into_iter();
        let mut records = records;
        for rec in &mut records {
            let mut flat = Vec::with_capacity(rec.spans.len() * self.embedder.dim());
            for _ in 0..rec.spans.len() {
                match it.next() {
                    Some(v) => flat.extend(v),
                    None => return Err(EngineError::Task("embedder returned too few vectors".into())),
                }
            }
            rec.vectors = flat;
        }
        Ok(records)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Op>, EngineError> {
        match &self.store {
            None => Ok(ops),
            Some(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.apply(&ops).map(|()| ops))
                    .await
                    .map_err(task_err)?
                    .map_err(EngineError::from)
            }
        }
    }

    fn get_or_create(&self, name: &str) -> Result<Arc<RwLock<Index>>, EngineError> {
        let mut map = self.indexes.write().map_err(|_| EngineError::Task("index map lock poisoned".into()))?;
        Ok(Arc::clone(
            map.entry(name.to_owned()).or_insert_with(|| Arc::new(RwLock::new(Index::new(self.embedder.dim())))),
        ))
    }

    /// Indexes documents into `name` (created if new). Documents whose id is already present are
    /// skipped; every input document is returned with its id.
    pub async fn index_documents(&self, name: &str, docs: Vec<NewDoc>) -> Result<Vec<DocView>, EngineError> {
        let existing = self.indexes.read().ok().and_then(|m| m.get(name).cloned());
        let mut out = Vec::with_capacity(docs.len());
        let mut todo = Vec::new();
        let mut seen = HashSet::new();
        for d in docs {
            let id = d.doc_id.clone().unwrap_or_else(|| doc_id_for(&d.text));
            let present = match &existing {
                Some(idx) => Self::read(idx, |i| i.contains(&id))?,
                None => false,
            };
            if !present && seen.insert(id.clone()) {
                todo.push((id.clone(), d.text.clone(), d.metadata.clone()));
            }
            out.push(DocView { doc_id: id, text: d.text, metadata: d.metadata, is_truncated: false });
        }
        let records = self.prepare(todo).await?;
        let _w = self.writer.lock().await;
        let idx = self.get_or_create(name)?;
        // Re-check under the writer lock: a concurrent request may have added the same id.
        let records: Vec<DocRecord> = Self::read(&idx, |i| {
            let mut seq = i.next_seq();
            records
                .into_iter()
                .filter(|r| !i.contains(&r.doc_id))
                .map(|mut r| {
                    r.seq = seq;
                    seq += 1;
                    r
                })
                .collect()
        })?;
        let mut ops = vec![Op::CreateIndex(name.to_owned())];
        ops.extend(records.into_iter().map(|r| Op::Put(name.to_owned(), r)));
        let ops = match self.commit(ops).await {
            Ok(ops) => ops,
            Err(e) => {
                self.drop_if_empty_and_unstored(name, &idx);
                return Err(e);
            }
        };
        Self::write(&idx, |i| {
            for op in ops {
                if let Op::Put(_, rec) = op {
                    i.insert(rec);
                }
            }
        })?;
        Ok(out)
    }

    fn drop_if_empty_and_unstored(&self, name: &str, idx: &Arc<RwLock<Index>>) {
        if self.store.is_some()
            && idx.read().map(|i| i.doc_count() == 0).unwrap_or(false)
            && let Ok(mut m) = self.indexes.write()
        {
            m.remove(name);
        }
    }

    /// Lists documents of `name` in insertion order.
    pub fn list_documents(
        &self,
        name: &str,
        offset: usize,
        limit: usize,
        max_text_length: Option<usize>,
        filter: Option<&Map<String, Value>>,
    ) -> Result<(Vec<DocView>, usize), EngineError> {
        let idx = self.index(name)?;
        let (page, total) = Self::read(&idx, |i| i.list(offset, limit, filter))?;
        let docs = page
            .into_iter()
            .map(|(id, entry)| {
                let (text, is_truncated) = truncate_chars(&entry.text, max_text_length);
                DocView { doc_id: id.to_string(), text, metadata: (*entry.metadata).clone(), is_truncated }
            })
            .collect();
        Ok((docs, total))
    }

    /// Updates documents by id.
    pub async fn update_documents(&self, name: &str, docs: Vec<NewDoc>) -> Result<UpdateOutcome, EngineError> {
        let idx = self.index(name)?;
        let mut outcome = UpdateOutcome::default();
        let mut todo = Vec::new();
        Self::read(&idx, |i| {
            for d in docs {
                let id = d.doc_id.clone().unwrap_or_default();
                let view = DocView {
                    doc_id: id.clone(),
                    text: d.text.clone(),
                    metadata: d.metadata.clone(),
                    is_truncated: false,
                };
                match i.get(&id) {
                    None => outcome.not_found.push(view),
                    Some(e) if *e.text == *d.text && *e.metadata == d.metadata => outcome.unchanged.push(view),
                    Some(_) => {
                        todo.push((id, d.text, d.metadata));
                        outcome.updated.push(view);
                    }
                }
            }
        })?;
        if todo.is_empty() {
            return Ok(outcome);
        }
        let records = self.prepare(todo).await?;
        let _w = self.writer.lock().await;
        let idx = self.index(name)?;
        // Documents deleted meanwhile are reported as not found.
        let (records, gone): (Vec<DocRecord>, Vec<DocRecord>) = Self::read(&idx, |i| {
            records
                .into_iter()
                .map(|mut r| {
                    r.seq = i.get(&r.doc_id).map(|e| e.seq).unwrap_or(0);
                    r
                })
                .partition(|r| r.seq != 0)
        })?;
        for g in gone {
            if let Some(pos) = outcome.updated.iter().position(|v| v.doc_id == g.doc_id) {
                let v = outcome.updated.remove(pos);
                outcome.not_found.push(v);
            }
        }
        let ops = records.into_iter().map(|r| Op::Put(name.to_owned(), r)).collect();
        let ops = self.commit(ops).await?;
        Self::write(&idx, |i| {
            for op in ops {
                if let Op::Put(_, rec) = op {
                    i.insert(rec);
                }
            }
        })?;
        Ok(outcome)
    }

    /// Deletes documents by id; returns (deleted, not found).
    pub async fn delete_documents(
        &self,
        name: &str,
        ids: Vec<String>,
    ) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let _w = self.writer.lock().await;
        let idx = self.index(name)?;
        let (mut deleted, mut missing) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        Self::read(&idx, |i| {
            for id in ids {
                if i.contains(&id) && seen.insert(id.clone()) {
                    deleted.push(id);
                } else if !seen.contains(&id) {
                    missing.push(id);
                }
            }
        })?;
        let ops = deleted.iter().map(|id| Op::Delete(name.to_owned(), id.clone())).collect();
        self.commit(ops).await?;
        Self::write(&idx, |i| {
            for id in &deleted {
                i.remove(id);
            }
        })?;
        Ok((deleted, missing))
    }

    /// Deletes an index.
    pub async fn delete_index(&self, name: &str) -> Result<(), EngineError> {
        let _w = self.writer.lock().await;
        self.index(name)?;
        self.commit(vec![Op::DropIndex(name.to_owned())]).await?;
        if let Ok(mut m) = self.indexes.write() {
            m.remove(name);
        }
        Ok(())
    }

    /// Hybrid retrieval of the `k` best chunks of `name` for `query`.
    pub async fn retrieve(
        &self,
        name: &str,
        query: &str,
        k: usize,
        filter: Option<Map<String, Value>>,
    ) -> Result<Vec<Hit>, EngineError> {
        let index = self.index(name)?;
        // Concurrent queries are embedded together and searched together (see search_worker).
        let vector = self.embedder.embed_query(query.to_owned()).await?;
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = SearchJob { index, vector, text: query.to_owned(), k, filter, done };
        let stopped = || EngineError::Task("search thread stopped".into());
        self.searches.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Resolves the directory of /persist and /load: `path` if given, else
    /// `<persist_dir>/<index>`. Relative paths are taken under the persist directory and `..`
    /// is refused.
    pub fn persist_path(&self, name: &str, path: Option<&str>) -> Result<PathBuf, EngineError> {
        let p = match path.filter(|p| !p.is_empty()) {
            Some(p) => PathBuf::from(p),
            None => {
                if name.contains('/') || name.contains('\\') || name == ".." || name == "." {
                    return Err(EngineError::Invalid(format!(
                        "index name {name:?} cannot be used as a directory name; pass ?path="
                    )));
                }
                self.settings.persist_dir.join(name)
            }
        };
        if Path::new(&p).components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(EngineError::Invalid("path must not contain '..'".into()));
        }
        Ok(p)
    }

    /// Writes a snapshot of `name` to `dir`.
    pub async fn persist(&self, name: &str, dir: PathBuf) -> Result<(), EngineError> {
        let idx = self.index(name)?;
        tokio::task::spawn_blocking(move || {
            let records: Vec<DocRecord> = Self::read(&idx, |i| i.doc_ids().filter_map(|id| i.record(id)).collect())?;
            store::write_snapshot(&dir, records.iter())?;
            Ok(())
        })
        .await
        .map_err(task_err)?
    }

    /// Loads a snapshot from `dir` into index `name`.
    pub async fn load(&self, name: &str, dir: PathBuf, overwrite: bool) -> Result<(), EngineError> {
        let _w = self.writer.lock().await;
        if !overwrite && self.index(name).is_ok() {
            return Err(EngineError::Conflict(format!(
                "Index {name} already exists; pass overwrite=true to replace it."
            )));
        }
        let dim = self.embedder.dim();
        let records = tokio::task::spawn_blocking(move || store::read_snapshot(&dir)).await.map_err(task_err)??;
        if let Some(bad) = records.iter().find(|r| r.vectors.len() != r.spans.len() * dim) {
            return Err(EngineError::Invalid(format!(
                "snapshot document {} has vectors of another dimension than the embedding model ({dim})",
                bad.doc_id
            )));
        }
        let mut ops = vec![Op::DropIndex(name.to_owned()), Op::CreateIndex(name.to_owned())];
        ops.extend(records.into_iter().map(|r| Op::Put(name.to_owned(), r)));
        let ops = self.commit(ops).await?;
        let mut index = Index::new(dim);
        for op in ops {
            if let Op::Put(_, rec) = op {
                index.insert(rec);
            }
        }
        if let Ok(mut m) = self.indexes.write() {
            m.insert(name.to_owned(), Arc::new(RwLock::new(index)));
        }
        Ok(())
    }
}
