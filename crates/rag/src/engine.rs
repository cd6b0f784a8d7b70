//! The RAG engine: named indexes, the write path (chunk, embed, store durably, then publish) and
//! the read path (embed the query, hybrid search).
//!
//! Writes are prepared (chunked and embedded) without any lock, then committed under one
//! writer lock: the durable store commits first, the in-memory index is updated second, and
//! only then does the caller get its answer. Readers never wait for embedding.
//!
//! With a store the in-memory indexes keep no document texts ([`TextMode::External`]): reads
//! take chunk ranges from the index and the texts from the store afterwards, outside the index
//! lock, in one read transaction per request. The store commits before the index changes, so
//! a text read after a search can belong to a newer version of its document (or be gone); the
//! index's fingerprint of the text tells, and such a result is searched or listed again rather
//! than shown with the wrong text.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkError, Chunker};
use crate::embed::{EmbedError, Embedder};
use crate::index::{DocRecord, Fusion, Hit, Index, Match, Query, TextMode, text_fingerprint};
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
    /// Document texts could not be read from the durable store.
    #[error("cannot read document texts of index '{index}' from the data directory")]
    TextRead {
        /// Index name.
        index: String,
        /// Cause.
        #[source]
        source: StoreError,
    },
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
    vector: Arc<[f32]>,
    text: String,
    k: usize,
    filter: Option<Map<String, Value>>,
    done: tokio::sync::oneshot::Sender<Result<Vec<Match>, EngineError>>,
}

/// How many times a listing is taken again when a document changed under it (see
/// [`Engine::list_documents`]).
const LIST_ATTEMPTS: usize = 4;

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

/// Reads the texts of `ids` of index `name` in one transaction (blocking I/O).
fn read_texts<S: AsRef<str>>(store: Option<&Store>, name: &str, ids: &[S]) -> Result<Vec<Option<String>>, EngineError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let Some(store) = store else {
        return Err(EngineError::Task(format!(
            "index '{name}' keeps no texts and there is no store to read them from"
        )));
    };
    store.texts(name, ids).map_err(|source| EngineError::TextRead { index: name.to_owned(), source })
}

/// Turns matches into hits, best first as they came. Texts the index kept are used as they
/// are; the others are read from the store in one transaction. A match whose document was
/// deleted or replaced since the search (no stored text, or one with another fingerprint) is
/// dropped, never shown with another version's text; the second value counts them.
fn resolve_matches(store: Option<&Store>, name: &str, matches: Vec<Match>) -> Result<(Vec<Hit>, usize), EngineError> {
    let mut ids: Vec<Arc<str>> = Vec::new();
    let mut at: HashMap<Arc<str>, usize> = HashMap::new();
    for m in matches.iter().filter(|m| m.doc_text.is_none()) {
        at.entry(Arc::clone(&m.doc_id)).or_insert_with(|| {
            ids.push(Arc::clone(&m.doc_id));
            ids.len() - 1
        });
    }
    let texts = read_texts(store, name, &ids)?;
    let mut stale = 0;
    let mut hits = Vec::with_capacity(matches.len());
    for m in matches {
        let hit = if m.doc_text.is_some() {
            m.resolve_in_memory()
        } else {
            let text = at.get(&m.doc_id).and_then(|&n| texts.get(n)).and_then(Option::as_deref);
            text.and_then(|t| m.resolve(t))
        };
        match hit {
            Some(h) => hits.push(h),
            None => stale += 1,
        }
    }
    Ok((hits, stale))
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
                let index =
                    loading.entry(name.to_owned()).or_insert_with(|| Index::with_text_mode(dim, TextMode::External));
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

    /// Where indexes keep texts: the store has them all, so with one memory keeps none.
    fn text_mode(&self) -> TextMode {
        if self.store.is_some() { TextMode::External } else { TextMode::InMemory }
    }

    fn new_index(&self) -> Index {
        Index::with_text_mode(self.embedder.dim(), self.text_mode())
    }

    /// [`read_texts`] off the async threads.
    async fn stored_texts(&self, name: &str, ids: Vec<Arc<str>>) -> Result<Vec<Option<String>>, EngineError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (store, name) = (self.store.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || read_texts(store.as_deref(), &name, &ids)).await.map_err(task_err)?
    }

    /// [`resolve_matches`] off the async threads when it reads the store.
    async fn resolve(&self, name: &str, matches: Vec<Match>) -> Result<(Vec<Hit>, usize), EngineError> {
        if matches.iter().all(|m| m.doc_text.is_some()) {
            return resolve_matches(None, name, matches);
        }
        let (store, name) = (self.store.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || resolve_matches(store.as_deref(), &name, matches))
            .await
            .map_err(task_err)?
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
        Ok(Arc::clone(map.entry(name.to_owned()).or_insert_with(|| Arc::new(RwLock::new(self.new_index())))))
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
    pub async fn list_documents(
        &self,
        name: &str,
        offset: usize,
        limit: usize,
        max_text_length: Option<usize>,
        filter: Option<&Map<String, Value>>,
    ) -> Result<(Vec<DocView>, usize), EngineError> {
        let idx = self.index(name)?;
        let mut attempt = 1;
        loop {
            let (page, total) = Self::read(&idx, |i| i.list(offset, limit, filter))?;
            let ids: Vec<Arc<str>> =
                page.iter().filter(|(_, e)| e.text().is_none()).map(|(id, _)| Arc::clone(id)).collect();
            let mut stored = self.stored_texts(name, ids).await?.into_iter();
            let mut docs = Vec::with_capacity(page.len());
            let mut changed = false;
            for (id, entry) in page {
                let (text, is_truncated) = match entry.text() {
                    Some(t) => truncate_chars(t, max_text_length),
                    None => match stored.next().flatten().filter(|t| text_fingerprint(t) == entry.fingerprint()) {
                        Some(t) => truncate_chars(&t, max_text_length),
                        None => {
                            changed = true;
                            continue;
                        }
                    },
                };
                docs.push(DocView { doc_id: id.to_string(), text, metadata: (*entry.metadata).clone(), is_truncated });
            }
            // A document deleted or replaced between listing and reading its text: list again
            // (the write that raced reaches the index right after its commit), so the page and
            // total_items describe one state. Should writes keep racing, the last attempt leaves
            // the changed documents out rather than show another version's text.
            if !changed || attempt == LIST_ATTEMPTS {
                return Ok((docs, total));
            }
            tokio::time::sleep(std::time::Duration::from_millis(attempt as u64)).await;
            attempt += 1;
        }
    }

    /// Updates documents by id.
    pub async fn update_documents(&self, name: &str, docs: Vec<NewDoc>) -> Result<UpdateOutcome, EngineError> {
        let idx = self.index(name)?;
        let mut outcome = UpdateOutcome::default();
        let mut todo = Vec::new();
        /// What the index holds for a document of the request.
        enum Prior {
            Missing,
            Changed,
            /// Same metadata and text fingerprint; the text itself when the index keeps it.
            Alike(Option<Arc<str>>),
        }
        let fingerprints: Vec<u64> = docs.iter().map(|d| text_fingerprint(&d.text)).collect();
        let priors: Vec<Prior> = Self::read(&idx, |i| {
            docs.iter()
                .zip(&fingerprints)
                .map(|(d, &fp)| match i.get(d.doc_id.as_deref().unwrap_or_default()) {
                    None => Prior::Missing,
                    Some(e) if e.fingerprint() == fp && *e.metadata == d.metadata => Prior::Alike(e.text().cloned()),
                    Some(_) => Prior::Changed,
                })
                .collect()
        })?;
        // Equal fingerprints are checked against the text itself, read from the store if needed.
        let to_read: Vec<Arc<str>> = docs
            .iter()
            .zip(&priors)
            .filter(|(_, p)| matches!(p, Prior::Alike(None)))
            .map(|(d, _)| Arc::from(d.doc_id.as_deref().unwrap_or_default()))
            .collect();
        let mut stored = self.stored_texts(name, to_read).await?.into_iter();
        for (d, prior) in docs.into_iter().zip(priors) {
            let id = d.doc_id.clone().unwrap_or_default();
            let view =
                DocView { doc_id: id.clone(), text: d.text.clone(), metadata: d.metadata.clone(), is_truncated: false };
            let unchanged = match prior {
                Prior::Missing => {
                    outcome.not_found.push(view);
                    continue;
                }
                Prior::Changed => false,
                Prior::Alike(Some(text)) => *text == *d.text,
                // Deleted since: treated as changed, and reported as not found below.
                Prior::Alike(None) => stored.next().flatten().is_some_and(|t| t == d.text),
            };
            if unchanged {
                outcome.unchanged.push(view);
            } else {
                todo.push((id, d.text, d.metadata));
                outcome.updated.push(view);
            }
        }
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
        // The replaced texts, for the keyword index to forget; read under the writer lock, so they
        // are the indexed ones.
        let old_texts = self.replaced_texts(&idx, name, records.iter().map(|r| r.doc_id.as_str())).await?;
        let ops = records.into_iter().map(|r| Op::Put(name.to_owned(), r)).collect();
        let ops = self.commit(ops).await?;
        Self::write(&idx, |i| {
            for op in ops {
                if let Op::Put(_, rec) = op {
                    i.remove_with_text(&rec.doc_id, old_texts.get(rec.doc_id.as_str()).map(String::as_str));
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
        let old_texts = self.replaced_texts(&idx, name, deleted.iter().map(String::as_str)).await?;
        let ops = deleted.iter().map(|id| Op::Delete(name.to_owned(), id.clone())).collect();
        self.commit(ops).await?;
        Self::write(&idx, |i| {
            for id in &deleted {
                i.remove_with_text(id, old_texts.get(id.as_str()).map(String::as_str));
            }
        })?;
        Ok((deleted, missing))
    }

    /// The stored texts of documents about to be replaced or deleted, when the index does not
    /// keep them: removing a chunk from the keyword index needs its text. Call under the
    /// writer lock, before committing. Empty when the index keeps its texts.
    async fn replaced_texts(
        &self,
        idx: &RwLock<Index>,
        name: &str,
        ids: impl Iterator<Item = &str>,
    ) -> Result<HashMap<String, String>, EngineError> {
        if Self::read(idx, Index::text_mode)? == TextMode::InMemory {
            return Ok(HashMap::new());
        }
        let ids: Vec<Arc<str>> = ids.map(Arc::from).collect();
        let texts = self.stored_texts(name, ids.clone()).await?;
        Ok(ids.iter().zip(texts).filter_map(|(id, t)| Some((id.to_string(), t?))).collect())
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
        let mut index = self.index(name)?;
        // Concurrent queries are embedded together and searched together (see search_worker).
        let vector: Arc<[f32]> = self.embedder.embed_query(query.to_owned()).await?.into();
        let mut retried = false;
        loop {
            let (done, answer) = tokio::sync::oneshot::channel();
            let job = SearchJob {
                index,
                vector: Arc::clone(&vector),
                text: query.to_owned(),
                k,
                filter: filter.clone(),
                done,
            };
            let stopped = || EngineError::Task("search thread stopped".into());
            self.searches.send(job).map_err(|_| stopped())?;
            let matches = answer.await.map_err(|_| stopped())??;
            let (hits, stale) = self.resolve(name, matches).await?;
            // A document deleted or replaced between the search and reading its text loses its
            // matches (resolve_matches). Searching once more (the write that raced reaches the
            // index right after its commit) fills the answer up again; should another write race
            // that search too, the answer has fewer chunks rather than another version's text.
            if stale == 0 || retried {
                return Ok(hits);
            }
            retried = true;
            index = match self.index(name) {
                Ok(i) => i,
                Err(_) => return Ok(hits),
            };
        }
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
        // With a store the texts come from it, and no write may come between reading them and
        // the index's ranges: hold the writer lock while the records are gathered (without a
        // store the index alone is read), not while the snapshot is written.
        let writing = match &self.store {
            Some(_) => Some(self.writer.lock().await),
            None => None,
        };
        let idx = self.index(name)?;
        let (store, name) = (self.store.clone(), name.to_owned());
        let records = tokio::task::spawn_blocking(move || {
            let (ids, external) =
                Self::read(&idx, |i| (i.doc_ids().cloned().collect::<Vec<_>>(), i.text_mode() == TextMode::External))?;
            let texts = if external { read_texts(store.as_deref(), &name, &ids)? } else { Vec::new() };
            let mut texts = texts.into_iter();
            Self::read(&idx, |i| {
                ids.iter()
                    .map(|id| {
                        i.record(id, texts.next().flatten()).ok_or_else(|| {
                            EngineError::Task(format!("document {id} of index '{name}' is not stored as indexed"))
                        })
                    })
                    .collect::<Result<Vec<DocRecord>, _>>()
            })?
        })
        .await
        .map_err(task_err)??;
        drop(writing);
        tokio::task::spawn_blocking(move || store::write_snapshot(&dir, records.iter())).await.map_err(task_err)??;
        Ok(())
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
        let mut index = self.new_index();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, text: &str, cut: u32, v: [f32; 4], topic: &str) -> DocRecord {
        crate::index::two_chunk_record(id, text, cut, v, serde_json::json!({"topic": topic}))
    }

    fn corpus() -> Vec<DocRecord> {
        vec![
            rec("a", "kubelet pods. nodes run pods", 13, [1.0, 0.0, 0.6, 0.8], "k8s"),
            rec("b", "bananas are yellow. fruit bowl", 19, [0.0, 1.0, 0.8, 0.6], "food"),
            rec("c", "gpu nodes. kübelet on gpu nodes", 10, [0.7, 0.7, 0.0, 1.0], "k8s"),
        ]
    }

    /// The same corpus in a memory-only index, and in a store with an index keeping no texts.
    fn both_modes() -> (Index, Index, Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut ops = vec![Op::CreateIndex("i".into())];
        ops.extend(corpus().into_iter().map(|r| Op::Put("i".into(), r)));
        store.apply(&ops).expect("apply");
        let (mut mem, mut ext) = (Index::new(2), Index::with_text_mode(2, TextMode::External));
        for r in corpus() {
            mem.insert(r.clone());
            ext.insert(r);
        }
        (mem, ext, store, dir)
    }

    fn search(i: &Index, q: &str, v: [f32; 2], filter: Option<&Map<String, Value>>) -> Vec<Match> {
        i.search(&v, q, 10, filter, Fusion::default())
    }

    /// Everything the API shows of a hit, plus its token count.
    fn shown(hits: &[Hit]) -> Vec<Value> {
        hits.iter().map(|h| serde_json::json!([crate::api::hit_json(h), h.tokens])).collect()
    }

    #[test]
    fn memory_and_store_resolve_to_the_same_hits() {
        let (mem, ext, store, _dir) = both_modes();
        let k8s = serde_json::json!({"topic": "k8s"}).as_object().cloned();
        for (q, v, f) in [
            ("kubelet pods", [1.0, 0.0], None),
            ("yellow fruit", [0.0, 1.0], None),
            ("gpu nodes", [0.6, 0.8], k8s.as_ref()),
            ("nothing matches this", [0.5, 0.5], None),
        ] {
            let (from_mem, stale_mem) = resolve_matches(None, "i", search(&mem, q, v, f)).expect("memory");
            let (from_store, stale_store) = resolve_matches(Some(&store), "i", search(&ext, q, v, f)).expect("store");
            assert_eq!((stale_mem, stale_store), (0, 0));
            assert!(!from_mem.is_empty(), "{q}");
            assert_eq!(shown(&from_mem), shown(&from_store), "{q}");
        }
        // No store is needed when every text is kept, and none is read for no match.
        assert!(resolve_matches(None, "i", Vec::new()).expect("empty").0.is_empty());
        assert!(matches!(resolve_matches(None, "i", search(&ext, "gpu", [0.6, 0.8], None)), Err(EngineError::Task(_))));
    }

    #[test]
    fn documents_changed_after_the_search_are_dropped_not_misquoted() {
        let (_, ext, store, _dir) = both_modes();
        let matches = search(&ext, "kubelet gpu nodes pods", [0.7, 0.7], None);
        let before: Vec<Arc<str>> = matches.iter().map(|m| Arc::clone(&m.doc_id)).collect();
        assert!(before.iter().any(|d| &**d == "a") && before.iter().any(|d| &**d == "c"));
        // `a` replaced (same length, so its ranges would still cut) and `c` deleted in the store,
        // the index not yet updated: what a concurrent write looks like between its commit and
        // its index update.
        store
            .apply(&[
                Op::Put("i".into(), rec("a", "KUBELET PODS. NODES RUN PODS", 13, [1.0, 0.0, 0.6, 0.8], "k8s")),
                Op::Delete("i".into(), "c".into()),
            ])
            .expect("apply");
        let (hits, stale) = resolve_matches(Some(&store), "i", matches.clone()).expect("resolve");
        let gone = before.iter().filter(|d| &***d == "a" || &***d == "c").count();
        assert_eq!(stale, gone);
        assert_eq!(hits.len(), matches.len() - gone);
        assert!(hits.iter().all(|h| &*h.doc_id == "b" && corpus()[1].text.contains(&h.text)));
    }

    #[test]
    fn unreadable_store_is_a_500_naming_the_index() {
        let (_, ext, store, _dir) = both_modes();
        store.put_raw("i", "a", b"\x05\0\0\0{oops").expect("corrupt");
        let err = resolve_matches(Some(&store), "i", search(&ext, "kubelet", [1.0, 0.0], None)).expect_err("corrupt");
        assert!(matches!(err, EngineError::TextRead { .. }), "{err:?}");
        let api = crate::api::ApiError::from(err);
        assert_eq!(api.status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            api.detail.starts_with("cannot read document texts of index 'i' from the data directory: "),
            "{}",
            api.detail
        );
        assert!(api.detail.contains("corrupt"), "{}", api.detail);
    }
}
