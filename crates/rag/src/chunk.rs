//! Splitting documents into chunks sized to the embedding model's window.
//!
//! Upstream KAITO splits with LlamaIndex's `SentenceSplitter` (1,024 tokens, overlap 200) even
//! when the embedding model reads only 256 or 512 tokens, so most of every chunk is never
//! embedded. Here the chunk budget is the embedding model's own window (special tokens
//! excluded), counted with the model's tokenizer. Prose is split at the largest semantic
//! boundary that fits (paragraphs, sentences, words); documents whose metadata says
//! `"split_type": "code"` with a `"language"` are split along their syntax tree.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use text_splitter::{ChunkConfig, ChunkSizer, CodeSplitter, TextSplitter};
use tokenizers::Tokenizer;

/// Errors from chunking.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// `split_type: code` without a `language`.
    #[error("metadata split_type is \"code\" but metadata language is missing or not a string")]
    MissingLanguage,
    /// A language without a bundled grammar.
    #[error("unsupported code language {0:?}; supported: {SUPPORTED_LANGUAGES}")]
    UnsupportedLanguage(String),
    /// The splitter rejected its configuration.
    #[error("invalid chunking configuration: {0}")]
    Config(String),
}

/// Languages with a bundled tree-sitter grammar.
pub const SUPPORTED_LANGUAGES: &str = "python, rust, go, javascript, java, c";

/// Measures chunk sizes in embedding-model tokens (or about 4 bytes per token without a
/// tokenizer).
#[derive(Clone)]
pub enum Sizer {
    /// Token count from the model's tokenizer (no special tokens, no truncation).
    Tokens(Arc<Tokenizer>),
    /// Byte length / 4.
    Approx,
}

impl ChunkSizer for Sizer {
    fn size(&self, chunk: &str) -> usize {
        match self {
            Sizer::Tokens(t) => match t.encode_fast(chunk, false) {
                Ok(enc) => enc.get_ids().len(),
                Err(_) => chunk.len().div_ceil(4),
            },
            Sizer::Approx => chunk.len().div_ceil(4),
        }
    }
}

/// A chunk: a byte range of its document's text and its size in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// Start byte offset (inclusive).
    pub start: u32,
    /// End byte offset (exclusive).
    pub end: u32,
    /// Tokens in the chunk.
    pub tokens: u32,
}

/// Splits documents; cheap to share between threads.
pub struct Chunker {
    sizer: Sizer,
    capacity: usize,
    overlap: usize,
    text: TextSplitter<Sizer>,
    code: RwLock<HashMap<&'static str, Arc<CodeSplitter<Sizer>>>>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker").field("capacity", &self.capacity).field("overlap", &self.overlap).finish()
    }
}

fn language(name: &str) -> Option<(&'static str, tree_sitter_language::LanguageFn)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "python" | "py" => ("python", tree_sitter_python::LANGUAGE),
        "rust" | "rs" => ("rust", tree_sitter_rust::LANGUAGE),
        "go" | "golang" => ("go", tree_sitter_go::LANGUAGE),
        "javascript" | "js" => ("javascript", tree_sitter_javascript::LANGUAGE),
        "java" => ("java", tree_sitter_java::LANGUAGE),
        "c" => ("c", tree_sitter_c::LANGUAGE),
        _ => return None,
    })
}

impl Chunker {
    /// Creates a chunker producing chunks of at most `capacity` tokens, consecutive chunks
    /// sharing up to `overlap` tokens.
    pub fn new(sizer: Sizer, capacity: usize, overlap: usize) -> Result<Self, ChunkError> {
        let capacity = capacity.max(8);
        let overlap = overlap.min(capacity / 2);
        let config = ChunkConfig::new(capacity)
            .with_sizer(sizer.clone())
            .with_overlap(overlap)
            .map_err(|e| ChunkError::Config(e.to_string()))?;
        Ok(Self { sizer, capacity, overlap, text: TextSplitter::new(config), code: RwLock::new(HashMap::new()) })
    }

    /// Maximum tokens per chunk.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Checks, without splitting, that `metadata` names a usable splitter.
    pub fn validate(&self, metadata: &Map<String, Value>) -> Result<(), ChunkError> {
        self.code_language(metadata).map(|_| ())
    }

    fn code_language(
        &self,
        metadata: &Map<String, Value>,
    ) -> Result<Option<(&'static str, tree_sitter_language::LanguageFn)>, ChunkError> {
        if metadata.get("split_type").and_then(Value::as_str) != Some("code") {
            return Ok(None);
        }
        let name = metadata.get("language").and_then(Value::as_str).ok_or(ChunkError::MissingLanguage)?;
        language(name).map(Some).ok_or_else(|| ChunkError::UnsupportedLanguage(name.to_owned()))
    }

    fn code_splitter(
        &self,
        name: &'static str,
        lang: tree_sitter_language::LanguageFn,
    ) -> Result<Arc<CodeSplitter<Sizer>>, ChunkError> {
        if let Some(s) = self.code.read().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(s);
        }
        let config = ChunkConfig::new(self.capacity)
            .with_sizer(self.sizer.clone())
            .with_overlap(self.overlap)
            .map_err(|e| ChunkError::Config(e.to_string()))?;
        let splitter = Arc::new(CodeSplitter::new(lang, config).map_err(|e| ChunkError::Config(e.to_string()))?);
        if let Ok(mut m) = self.code.write() {
            m.insert(name, Arc::clone(&splitter));
        }
        Ok(splitter)
    }

    /// Splits `text` as its `metadata` asks. An empty or blank text gives no chunk.
    pub fn split(&self, text: &str, metadata: &Map<String, Value>) -> Result<Vec<Span>, ChunkError> {
        let pieces: Vec<(usize, &str)> = match self.code_language(metadata)? {
            Some((name, lang)) => self.code_splitter(name, lang)?.chunk_indices(text).collect(),
            None => self.text.chunk_indices(text).collect(),
        };
        Ok(pieces
            .into_iter()
            .filter(|(_, s)| !s.trim().is_empty())
            .map(|(start, s)| Span {
                start: u32::try_from(start).unwrap_or(u32::MAX),
                end: u32::try_from(start + s.len()).unwrap_or(u32::MAX),
                tokens: u32::try_from(self.sizer.size(s)).unwrap_or(u32::MAX),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn prose_chunks_fit_and_cover() {
        let c = Chunker::new(Sizer::Approx, 50, 10).expect("chunker");
        let text = "This is a sentence about things. ".repeat(40);
        let spans = c.split(&text, &Map::new()).expect("split");
        assert!(spans.len() > 3);
        for s in &spans {
            assert!(s.tokens <= 50, "{s:?}");
            assert!(text.is_char_boundary(s.start as usize));
        }
        assert_eq!(spans[0].start, 0);
        assert_eq!(spans.last().map(|s| s.end as usize), Some(text.trim_end().len()));
    }

    #[test]
    fn code_needs_known_language() {
        let c = Chunker::new(Sizer::Approx, 50, 0).expect("chunker");
        let code = "def a():\n    return 1\n\n\ndef b():\n    return 2\n".repeat(10);
        let spans =
            c.split(&code, &meta(serde_json::json!({"split_type": "code", "language": "python"}))).expect("python");
        assert!(spans.len() > 1);
        assert!(matches!(
            c.split(&code, &meta(serde_json::json!({"split_type": "code"}))),
            Err(ChunkError::MissingLanguage)
        ));
        assert!(matches!(
            c.split(&code, &meta(serde_json::json!({"split_type": "code", "language": "cobol"}))),
            Err(ChunkError::UnsupportedLanguage(_))
        ));
    }

    #[test]
    fn blank_text_gives_no_chunk() {
        let c = Chunker::new(Sizer::Approx, 50, 0).expect("chunker");
        assert!(c.split("   \n ", &Map::new()).expect("split").is_empty());
    }
}
