//! One named document index: documents, their chunks, a dense vector index and a BM25 index,
//! searched together (hybrid retrieval).
//!
//! Scores are comparable by construction: the dense score is the cosine similarity of
//! L2-normalised vectors (higher is better, never a distance) and the keyword score is BM25
//! divided by the best BM25 score of the query, so both lie in `[0, 1]` for relevant chunks.
//! The fused score is `dense_weight * max(cosine, 0) + sparse_weight * bm25 / max_bm25`.
//!
//! With a durable store the index does not keep document texts ([`TextMode::External`]): the
//! store already holds every text, and at 10,000 documents the copies were 29 MB of resident
//! memory. Searches then return [`Match`]es (document, chunk range, scores) and the engine reads
//! the texts afterwards, outside the index lock; the index itself never does I/O.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bm25::Bm25;
use crate::chunk::Span;
use crate::vector::{FlatIndex, TopK, VectorIndex};

/// Errors from decoding stored documents.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A stored record is truncated or malformed.
    #[error("corrupt document record: {0}")]
    Corrupt(String),
    /// A stored record's header is not valid JSON.
    #[error("corrupt document record header")]
    Header(#[source] serde_json::Error),
}

/// A document with its chunks and their vectors: what is stored and what is inserted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DocRecord {
    /// Document id.
    pub doc_id: String,
    /// Full text.
    pub text: String,
    /// Metadata (any JSON object).
    pub metadata: Map<String, Value>,
    /// Insertion sequence number (listing order); 0 means "assign one".
    #[serde(default)]
    pub seq: u64,
    /// Chunk byte ranges.
    pub spans: Vec<Span>,
    /// `spans.len() * dim` floats, one normalised vector per chunk (not in the JSON header).
    #[serde(skip)]
    pub vectors: Vec<f32>,
}

impl DocRecord {
    /// Binary encoding: little-endian `u32` header length, JSON header, then the vectors as
    /// little-endian `f32`.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(4 + header.len() + self.vectors.len() * 4);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for v in &self.vectors {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decodes [`DocRecord::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        let (header, rest) = Self::split(bytes)?;
        let mut rec: DocRecord = serde_json::from_slice(header).map_err(IndexError::Header)?;
        if !rest.len().is_multiple_of(4) {
            return Err(IndexError::Corrupt("vector bytes not a multiple of 4".into()));
        }
        rec.vectors = rest.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        for s in &rec.spans {
            if s.start > s.end
                || s.end as usize > rec.text.len()
                || !rec.text.is_char_boundary(s.start as usize)
                || !rec.text.is_char_boundary(s.end as usize)
            {
                return Err(IndexError::Corrupt(format!(
                    "chunk range {}..{} outside document {}",
                    s.start, s.end, rec.doc_id
                )));
            }
        }
        Ok(rec)
    }

    /// Only the text of an [`DocRecord::encode`]d record: retrieval needs nothing else, and
    /// skipping the vectors (most of a record's bytes) keeps resolving hits cheap.
    pub fn decode_text(bytes: &[u8]) -> Result<String, IndexError> {
        #[derive(Deserialize)]
        struct TextOnly {
            text: String,
        }
        let only: TextOnly = serde_json::from_slice(Self::split(bytes)?.0).map_err(IndexError::Header)?;
        Ok(only.text)
    }

    /// An encoded record's JSON header and the vector bytes after it.
    fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), IndexError> {
        let len_bytes: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| IndexError::Corrupt("shorter than its header length".into()))?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let header = bytes.get(4..4 + len).ok_or_else(|| IndexError::Corrupt("header truncated".into()))?;
        Ok((header, &bytes[4 + len..]))
    }
}

/// Fingerprint of a document text. The index keeps it instead of the text (in
/// [`TextMode::External`]) to tell whether a text read later from the store is still the one it
/// indexed: a document replaced between a search and the read must not lend its new text to
/// the old chunk ranges. Not persisted, so the hasher only has to be stable within a process.
pub fn text_fingerprint(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// Where document texts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// The index keeps every text (no durable store).
    InMemory,
    /// The texts are in the durable store; the index keeps their fingerprints only.
    External,
}

/// A stored document as seen by readers.
#[derive(Debug, Clone)]
pub struct DocEntry {
    /// Full text, absent in [`TextMode::External`].
    text: Option<Arc<str>>,
    fingerprint: u64,
    /// Metadata (kept in memory in both modes: every filtered search and listing reads it).
    pub metadata: Arc<Map<String, Value>>,
    /// Insertion sequence number.
    pub seq: u64,
    slots: Vec<u32>,
}

impl DocEntry {
    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.slots.len()
    }

    /// The full text when the index keeps it ([`TextMode::InMemory`]).
    pub fn text(&self) -> Option<&Arc<str>> {
        self.text.as_ref()
    }

    /// [`text_fingerprint`] of the indexed text.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

#[derive(Debug, Clone)]
struct SlotInfo {
    doc_id: Arc<str>,
    ordinal: u32,
    span: Span,
}

/// Which retriever found a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Both the vector and the keyword search.
    Both,
    /// Only the vector search.
    DenseOnly,
    /// Only the keyword search.
    SparseOnly,
}

/// One chunk found by a search, before its text is read: the index returns the chunk's range
/// and the document's fingerprint, and the engine resolves the text from memory or the store.
#[derive(Debug, Clone)]
pub struct Match {
    /// Document id.
    pub doc_id: Arc<str>,
    /// Chunk position in its document.
    pub ordinal: u32,
    /// Chunk byte range in its document.
    pub span: Span,
    /// [`text_fingerprint`] of the document text the range refers to.
    pub fingerprint: u64,
    /// The document text when the index keeps it ([`TextMode::InMemory`]); a snapshot, so it
    /// stays right even if the document is replaced meanwhile.
    pub doc_text: Option<Arc<str>>,
    /// Fused score (higher is better).
    pub score: f32,
    /// Cosine similarity of the query and the chunk.
    pub dense_score: f32,
    /// BM25 score normalised by the query's best BM25 score.
    pub sparse_score: f32,
    /// Which retriever found it.
    pub source: Source,
    /// Document metadata.
    pub metadata: Arc<Map<String, Value>>,
}

impl Match {
    /// The hit with its chunk cut from `doc_text`, the document's full text read after the
    /// search; `None` when it is not the text that was indexed (the document was replaced since
    /// the search) or the range does not fit it.
    pub fn resolve(self, doc_text: &str) -> Option<Hit> {
        if text_fingerprint(doc_text) != self.fingerprint {
            return None;
        }
        self.cut(doc_text)
    }

    /// The hit with the text the index kept ([`TextMode::InMemory`]), which needs no check: it
    /// was taken under the same lock as the range. `None` in [`TextMode::External`].
    pub fn resolve_in_memory(mut self) -> Option<Hit> {
        let text = self.doc_text.take()?;
        self.cut(&text)
    }

    fn cut(self, doc_text: &str) -> Option<Hit> {
        let text = doc_text.get(self.span.start as usize..self.span.end as usize)?.to_owned();
        Some(Hit {
            node_id: format!("{}:{}", self.doc_id, self.ordinal),
            doc_id: self.doc_id,
            text,
            score: self.score,
            dense_score: self.dense_score,
            sparse_score: self.sparse_score,
            source: self.source,
            metadata: self.metadata,
            tokens: self.span.tokens,
        })
    }
}

/// One retrieved chunk.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Document id.
    pub doc_id: Arc<str>,
    /// Chunk id (`<doc_id>:<ordinal>`).
    pub node_id: String,
    /// Chunk text.
    pub text: String,
    /// Fused score (higher is better).
    pub score: f32,
    /// Cosine similarity of the query and the chunk.
    pub dense_score: f32,
    /// BM25 score normalised by the query's best BM25 score.
    pub sparse_score: f32,
    /// Which retriever found it.
    pub source: Source,
    /// Document metadata.
    pub metadata: Arc<Map<String, Value>>,
    /// Chunk size in tokens.
    pub tokens: u32,
}

/// One query of a [`Index::search_many`] batch.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The query's embedding.
    pub vector: &'a [f32],
    /// The query text (for BM25).
    pub text: &'a str,
    /// How many chunks to return.
    pub k: usize,
    /// Metadata every returned chunk's document must match.
    pub filter: Option<&'a Map<String, Value>>,
}

/// Weights of the fused score.
#[derive(Debug, Clone, Copy)]
pub struct Fusion {
    /// Weight of the cosine similarity.
    pub dense: f32,
    /// Weight of the normalised BM25 score.
    pub sparse: f32,
}

impl Default for Fusion {
    fn default() -> Self {
        Self { dense: 0.7, sparse: 0.3 }
    }
}

/// True when every key of `filter` is in `metadata` with an equal value.
pub fn metadata_matches(metadata: &Map<String, Value>, filter: &Map<String, Value>) -> bool {
    filter.iter().all(|(k, v)| metadata.get(k) == Some(v))
}

/// An in-memory hybrid index.
pub struct Index {
    dim: usize,
    text_mode: TextMode,
    docs: HashMap<Arc<str>, DocEntry>,
    order: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    slots: Vec<Option<SlotInfo>>,
    free: Vec<u32>,
    vectors: Box<dyn VectorIndex>,
    bm25: Bm25,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("docs", &self.docs.len()).field("chunks", &self.bm25.len()).finish()
    }
}

impl Index {
    /// Empty index for `dim`-dimensional vectors with exact search, keeping texts in memory.
    pub fn new(dim: usize) -> Self {
        Self::with_vector_index(Box::new(FlatIndex::new(dim)))
    }

    /// Empty index for `dim`-dimensional vectors with exact search and texts kept as `mode` says.
    pub fn with_text_mode(dim: usize, mode: TextMode) -> Self {
        let mut index = Self::new(dim);
        index.text_mode = mode;
        index
    }

    /// Empty index over the given vector index, keeping texts in memory.
    pub fn with_vector_index(vectors: Box<dyn VectorIndex>) -> Self {
        Self {
            dim: vectors.dim(),
            text_mode: TextMode::InMemory,
            docs: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 1,
            slots: Vec::new(),
            free: Vec::new(),
            vectors,
            bm25: Bm25::default(),
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Where this index keeps document texts.
    pub fn text_mode(&self) -> TextMode {
        self.text_mode
    }

    /// Number of documents.
    pub fn doc_count(&self) -> usize {
        self.docs.len()
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.bm25.len()
    }

    /// The document `doc_id`.
    pub fn get(&self, doc_id: &str) -> Option<&DocEntry> {
        self.docs.get(doc_id)
    }

    /// True when `doc_id` is indexed.
    pub fn contains(&self, doc_id: &str) -> bool {
        self.docs.contains_key(doc_id)
    }

    /// The sequence number a new document would get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Inserts (or replaces) a document. The record's `vectors` must hold one `dim` vector per
    /// span; a record with the wrong number of floats is indexed for keywords only. Replacing a
    /// document whose text the index does not keep is slow (see [`Index::remove`]); callers that
    /// have the old text call [`Index::remove_with_text`] first.
    pub fn insert(&mut self, rec: DocRecord) {
        let old_seq = self.docs.get(rec.doc_id.as_str()).map(|d| d.seq);
        if old_seq.is_some() {
            self.remove(&rec.doc_id);
        }
        let seq = match (rec.seq, old_seq) {
            (s, _) if s > 0 => s,
            (_, Some(s)) => s,
            _ => self.next_seq,
        };
        self.next_seq = self.next_seq.max(seq + 1);
        let doc_id: Arc<str> = Arc::from(rec.doc_id.as_str());
        let vectors_ok = rec.vectors.len() == rec.spans.len() * self.dim;
        let mut slots = Vec::with_capacity(rec.spans.len());
        for (ordinal, span) in rec.spans.iter().enumerate() {
            let slot = match self.free.pop() {
                Some(s) => s,
                None => {
                    self.slots.push(None);
                    (self.slots.len() - 1) as u32
                }
            };
            // Records are validated by DocRecord::decode or built by the chunker, but an empty
            // chunk beats a panic if one is not.
            let chunk = rec.text.get(span.start as usize..span.end as usize).unwrap_or_default();
            self.bm25.insert(slot, chunk);
            if vectors_ok {
                self.vectors.insert(slot, &rec.vectors[ordinal * self.dim..(ordinal + 1) * self.dim]);
            }
            self.slots[slot as usize] =
                Some(SlotInfo { doc_id: Arc::clone(&doc_id), ordinal: ordinal as u32, span: *span });
            slots.push(slot);
        }
        let fingerprint = text_fingerprint(&rec.text);
        let text = match self.text_mode {
            TextMode::InMemory => Some(Arc::from(rec.text)),
            TextMode::External => None,
        };
        self.order.insert(seq, Arc::clone(&doc_id));
        self.docs.insert(doc_id, DocEntry { text, fingerprint, metadata: Arc::new(rec.metadata), seq, slots });
    }

    /// Removes a document; false when it was not there. Without the document's text (in
    /// [`TextMode::External`]) its keywords are found by scanning every posting list, which
    /// takes milliseconds at 10,000 documents; [`Index::remove_with_text`] avoids that.
    pub fn remove(&mut self, doc_id: &str) -> bool {
        self.remove_with_text(doc_id, None)
    }

    /// [`Index::remove`] given the document's current text (read from the store when the index
    /// does not keep it). A text that is not the indexed one is ignored, so a wrong text can
    /// cost time but never leave stale keywords behind.
    pub fn remove_with_text(&mut self, doc_id: &str, text: Option<&str>) -> bool {
        let Some(entry) = self.docs.remove(doc_id) else {
            return false;
        };
        self.order.remove(&entry.seq);
        let text: Option<&str> = match &entry.text {
            Some(own) => Some(own),
            None => text.filter(|t| text_fingerprint(t) == entry.fingerprint),
        };
        match text {
            Some(text) => {
                for &slot in &entry.slots {
                    if let Some(info) = &self.slots[slot as usize] {
                        let chunk = text.get(info.span.start as usize..info.span.end as usize).unwrap_or_default();
                        self.bm25.remove(slot, chunk);
                    }
                }
            }
            None => self.bm25.remove_without_text(&entry.slots),
        }
        for &slot in &entry.slots {
            self.vectors.remove(slot);
            self.slots[slot as usize] = None;
            self.free.push(slot);
        }
        true
    }

    /// The full record of a document (for persistence). `text` is the document's text when the
    /// index does not keep it; `None` when the document is not indexed, or its text is neither
    /// kept nor given, or the given text is not the indexed one.
    pub fn record(&self, doc_id: &str, text: Option<String>) -> Option<DocRecord> {
        let entry = self.docs.get(doc_id)?;
        let text = match &entry.text {
            Some(own) => own.to_string(),
            None => text.filter(|t| text_fingerprint(t) == entry.fingerprint)?,
        };
        let mut spans = Vec::with_capacity(entry.slots.len());
        let mut vectors = Vec::with_capacity(entry.slots.len() * self.dim);
        for &slot in &entry.slots {
            let info = self.slots[slot as usize].as_ref()?;
            spans.push(info.span);
            match self.vectors.vector(slot) {
                Some(v) => vectors.extend_from_slice(&v),
                None => vectors.extend(std::iter::repeat_n(0.0, self.dim)),
            }
        }
        Some(DocRecord {
            doc_id: doc_id.to_owned(),
            text,
            metadata: (*entry.metadata).clone(),
            seq: entry.seq,
            spans,
            vectors,
        })
    }

    /// Document ids in insertion order.
    pub fn doc_ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.order.values()
    }

    /// Documents matching `filter`, in insertion order: the page `offset..offset+limit` and the
    /// number of matching documents.
    pub fn list(
        &self,
        offset: usize,
        limit: usize,
        filter: Option<&Map<String, Value>>,
    ) -> (Vec<(Arc<str>, DocEntry)>, usize) {
        let mut total = 0;
        let mut page = Vec::new();
        for id in self.order.values() {
            let Some(entry) = self.docs.get(id) else {
                continue;
            };
            if let Some(f) = filter
                && !metadata_matches(&entry.metadata, f)
            {
                continue;
            }
            if total >= offset && page.len() < limit {
                page.push((Arc::clone(id), entry.clone()));
            }
            total += 1;
        }
        (page, total)
    }

    /// Hybrid search: the `k` best chunks for a query with text `query` and vector `qvec`,
    /// restricted to documents whose metadata matches `filter`.
    pub fn search(
        &self,
        qvec: &[f32],
        query: &str,
        k: usize,
        filter: Option<&Map<String, Value>>,
        fusion: Fusion,
    ) -> Vec<Match> {
        self.search_many(&[Query { vector: qvec, text: query, k, filter }], fusion).pop().unwrap_or_default()
    }

    /// [`Index::search`] for a batch of queries, sharing one scan of the vectors.
    pub fn search_many(&self, queries: &[Query<'_>], fusion: Fusion) -> Vec<Vec<Match>> {
        if self.docs.is_empty() {
            return queries.iter().map(|_| Vec::new()).collect();
        }
        let allowed: Vec<Option<Vec<bool>>> = queries.iter().map(|q| self.allowed_slots(q.filter)).collect();
        let accepts: Vec<Box<dyn Fn(u32) -> bool + '_>> = allowed
            .iter()
            .map(|a| {
                Box::new(move |slot: u32| a.as_ref().is_none_or(|a| a.get(slot as usize).copied().unwrap_or(false)))
                    as Box<dyn Fn(u32) -> bool>
            })
            .collect();
        let accept_refs: Vec<&dyn Fn(u32) -> bool> = accepts.iter().map(|a| a.as_ref()).collect();
        let candidates = queries.iter().map(|q| (q.k * 3).max(50)).max().unwrap_or(50);
        // Unfiltered queries may be answered approximately by a large vector index; filtered
        // ones always scan (a filter can leave too few rows in the probed part of the index).
        let (filtered, unfiltered): (Vec<usize>, Vec<usize>) = (0..queries.len()).partition(|&i| allowed[i].is_some());
        let mut dense: Vec<Vec<(u32, f32)>> = vec![Vec::new(); queries.len()];
        if !filtered.is_empty() {
            let vectors: Vec<&[f32]> = filtered.iter().map(|&i| queries[i].vector).collect();
            let accepts: Vec<&dyn Fn(u32) -> bool> = filtered.iter().map(|&i| accept_refs[i]).collect();
            for (i, d) in filtered.iter().zip(self.vectors.search_many(&vectors, candidates, &accepts)) {
                dense[*i] = d;
            }
        }
        if !unfiltered.is_empty() {
            let vectors: Vec<&[f32]> = unfiltered.iter().map(|&i| queries[i].vector).collect();
            for (i, d) in unfiltered.iter().zip(self.vectors.search_many_unfiltered(&vectors, candidates)) {
                dense[*i] = d;
            }
        }
        queries
            .iter()
            .zip(dense)
            .zip(&accept_refs)
            .map(|((q, dense), accept)| {
                if q.k == 0 {
                    return Vec::new();
                }
                let dense = &dense[..dense.len().min((q.k * 3).max(50))];
                self.fuse(q, dense, accept, fusion)
            })
            .collect()
    }

    fn allowed_slots(&self, filter: Option<&Map<String, Value>>) -> Option<Vec<bool>> {
        filter.filter(|f| !f.is_empty()).map(|f| {
            let mut allowed = vec![false; self.slots.len()];
            for entry in self.docs.values() {
                if metadata_matches(&entry.metadata, f) {
                    for &s in &entry.slots {
                        allowed[s as usize] = true;
                    }
                }
            }
            allowed
        })
    }

    /// Merges the dense candidates with BM25's for one query and keeps its `k` best.
    fn fuse(&self, q: &Query<'_>, dense: &[(u32, f32)], accept: &dyn Fn(u32) -> bool, fusion: Fusion) -> Vec<Match> {
        let (qvec, k) = (q.vector, q.k);
        let candidates = (k * 3).max(50);
        let sparse = self.bm25.search(q.text, accept);
        let max_sparse = sparse.max;
        let mut sparse_top = TopK::new(candidates);
        for &slot in &sparse.touched {
            sparse_top.push(slot, sparse.get(slot));
        }
        let mut seen: HashMap<u32, bool> = HashMap::new();
        for (slot, _) in dense {
            seen.insert(*slot, true);
        }
        for (slot, _) in sparse_top.into_sorted() {
            seen.entry(slot).or_insert(false);
        }
        let mut scored: Vec<(u32, f32, f32, f32, Source)> = seen
            .into_iter()
            .map(|(slot, in_dense)| {
                let d = self.vectors.score(slot, qvec).unwrap_or(0.0);
                let s = if max_sparse > 0.0 { sparse.get(slot) / max_sparse } else { 0.0 };
                let source = match (in_dense, s > 0.0) {
                    (true, true) => Source::Both,
                    (true, false) => Source::DenseOnly,
                    (false, _) => Source::SparseOnly,
                };
                let fused = fusion.dense * d.max(0.0) + fusion.sparse * s;
                (slot, fused, d, s, source)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
            .into_iter()
            .filter_map(|(slot, fused, d, s, source)| {
                let info = self.slots.get(slot as usize)?.as_ref()?;
                let entry = self.docs.get(&info.doc_id)?;
                Some(Match {
                    doc_id: Arc::clone(&info.doc_id),
                    ordinal: info.ordinal,
                    span: info.span,
                    fingerprint: entry.fingerprint,
                    doc_text: entry.text.clone(),
                    score: fused,
                    dense_score: d,
                    sparse_score: s,
                    source,
                    metadata: Arc::clone(&entry.metadata),
                })
            })
            .collect()
    }

    /// Approximate bytes held by vectors.
    pub fn vector_bytes(&self) -> usize {
        self.vectors.memory_bytes()
    }
}

/// A test document of two chunks (`text` cut at byte `cut`) with 2-dimensional vectors
/// `[v0, v1]` and `[v2, v3]` and the given metadata object.
#[cfg(test)]
pub(crate) fn two_chunk_record(id: &str, text: &str, cut: u32, v: [f32; 4], metadata: Value) -> DocRecord {
    DocRecord {
        doc_id: id.into(),
        text: text.into(),
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        seq: 0,
        spans: vec![Span { start: 0, end: cut, tokens: 2 }, Span { start: cut, end: text.len() as u32, tokens: 3 }],
        vectors: v.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, text: &str, v: [f32; 2], meta: Value) -> DocRecord {
        DocRecord {
            doc_id: id.into(),
            text: text.into(),
            metadata: meta.as_object().cloned().unwrap_or_default(),
            seq: 0,
            spans: vec![Span { start: 0, end: text.len() as u32, tokens: 3 }],
            vectors: v.to_vec(),
        }
    }

    #[test]
    fn hybrid_ranks_by_similarity_and_filters() {
        let mut idx = Index::new(2);
        idx.insert(rec("a", "kubernetes pods", [1.0, 0.0], serde_json::json!({"k": 1})));
        idx.insert(rec("b", "bananas", [0.0, 1.0], serde_json::json!({"k": 2})));
        let hits = idx.search(&[0.0, 1.0], "bananas", 2, None, Fusion::default());
        assert_eq!(&*hits[0].doc_id, "b");
        assert_eq!(hits[0].source, Source::Both);
        assert!(hits[0].score > hits[1].score);
        let f = serde_json::json!({"k": 1}).as_object().cloned();
        let hits = idx.search(&[0.0, 1.0], "bananas", 2, f.as_ref(), Fusion::default());
        assert_eq!(hits.len(), 1);
        assert_eq!(&*hits[0].doc_id, "a");
    }

    #[test]
    fn replace_keeps_order_and_remove_frees() {
        let mut idx = Index::new(2);
        idx.insert(rec("a", "one", [1.0, 0.0], Value::Null));
        idx.insert(rec("b", "two", [0.0, 1.0], Value::Null));
        idx.insert(rec("a", "uno", [1.0, 0.0], Value::Null));
        let ids: Vec<String> = idx.doc_ids().map(|s| s.to_string()).collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert!(idx.remove("a"));
        assert!(!idx.remove("a"));
        assert_eq!(idx.chunk_count(), 1);
        let r = idx.record("b", None).expect("b");
        let back = DocRecord::decode(&r.encode()).expect("decode");
        assert_eq!(back, r);
    }

    fn two_chunk(id: &str, text: &str, cut: u32, v: [f32; 4]) -> DocRecord {
        two_chunk_record(id, text, cut, v, serde_json::json!({"id": id}))
    }

    fn corpus() -> Vec<DocRecord> {
        vec![
            two_chunk("a", "kubelet pods. nodes run pods", 13, [1.0, 0.0, 0.6, 0.8]),
            two_chunk("b", "bananas are yellow. fruit bowl", 19, [0.0, 1.0, 0.8, 0.6]),
            two_chunk("c", "gpu nodes. kubelet on gpu nodes", 10, [0.7, 0.7, 0.0, 1.0]),
        ]
    }

    /// What a caller sees of a hit.
    fn seen(h: &Hit) -> (String, String, String, f32, f32, f32, Source, u32) {
        (
            h.doc_id.to_string(),
            h.node_id.clone(),
            h.text.clone(),
            h.score,
            h.dense_score,
            h.sparse_score,
            h.source,
            h.tokens,
        )
    }

    #[test]
    fn external_texts_give_the_same_hits_once_resolved() {
        let (mut mem, mut ext) = (Index::new(2), Index::with_text_mode(2, TextMode::External));
        for r in corpus() {
            mem.insert(r.clone());
            ext.insert(r);
        }
        assert!(ext.get("a").is_some_and(|e| e.text().is_none()));
        let texts: HashMap<String, String> = corpus().into_iter().map(|r| (r.doc_id, r.text)).collect();
        for (q, v) in [("kubelet pods", [1.0, 0.0]), ("yellow fruit", [0.0, 1.0]), ("gpu", [0.6, 0.8])] {
            let from_mem: Vec<_> = mem
                .search(&v, q, 4, None, Fusion::default())
                .into_iter()
                .map(|m| m.resolve_in_memory().expect("kept text"))
                .collect();
            let ext_matches = ext.search(&v, q, 4, None, Fusion::default());
            assert!(ext_matches.iter().all(|m| m.doc_text.is_none() && m.clone().resolve_in_memory().is_none()));
            let from_ext: Vec<_> = ext_matches
                .into_iter()
                .map(|m| {
                    let text = &texts[&*m.doc_id];
                    m.resolve(text).expect("same text")
                })
                .collect();
            assert_eq!(from_mem.len(), 4);
            assert_eq!(from_mem.iter().map(seen).collect::<Vec<_>>(), from_ext.iter().map(seen).collect::<Vec<_>>());
        }
        // Another version's text is refused, whatever its length.
        let m = ext.search(&[1.0, 0.0], "kubelet", 1, None, Fusion::default()).remove(0);
        assert!(m.clone().resolve("kubelet pods. nodes run pods!").is_none());
        assert!(m.resolve("x").is_none());
    }

    #[test]
    fn external_removal_with_or_without_text_forgets_keywords() {
        let mut mem = Index::new(2);
        let mut ext = Index::with_text_mode(2, TextMode::External);
        for r in corpus() {
            mem.insert(r.clone());
            ext.insert(r);
        }
        let old_a = corpus()[0].text.clone();
        assert!(mem.remove("a"));
        assert!(ext.remove_with_text("a", Some(&old_a)));
        // Without the text (or with a wrong one) the keyword index is scanned instead.
        assert!(mem.remove("c"));
        assert!(ext.remove_with_text("c", Some("not the text")));
        let mut replaced = two_chunk("b", "kubelet bananas. gpu fruit", 16, [1.0, 0.0, 0.0, 1.0]);
        mem.insert(replaced.clone());
        ext.insert(replaced.clone());
        assert_eq!(mem.chunk_count(), ext.chunk_count());
        for q in ["kubelet", "pods", "gpu nodes", "yellow", "fruit"] {
            let a: Vec<_> = mem
                .search(&[0.5, 0.5], q, 10, None, Fusion::default())
                .into_iter()
                .map(|m| (m.doc_id.to_string(), m.ordinal, m.sparse_score, m.source))
                .collect();
            let b: Vec<_> = ext
                .search(&[0.5, 0.5], q, 10, None, Fusion::default())
                .into_iter()
                .map(|m| (m.doc_id.to_string(), m.ordinal, m.sparse_score, m.source))
                .collect();
            assert_eq!(a, b, "{q}");
        }
        // A snapshot record needs the text from outside, and only the indexed one.
        assert!(ext.record("b", None).is_none());
        assert!(ext.record("b", Some("other".into())).is_none());
        replaced.seq = 2;
        let mut got = ext.record("b", Some(replaced.text.clone())).expect("record");
        got.vectors.clear();
        replaced.vectors.clear();
        assert_eq!(got, replaced);
    }

    #[test]
    fn decode_text_reads_only_the_text() {
        let r = two_chunk("a", "caf\u{e9} \"quoted\"\n", 5, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(DocRecord::decode_text(&r.encode()).expect("text"), r.text);
        assert!(DocRecord::decode_text(&[1, 0]).is_err());
        assert!(DocRecord::decode_text(&[9, 0, 0, 0, b'{']).is_err());
    }
}
