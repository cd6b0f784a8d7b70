//! An incremental BM25 keyword index.
//!
//! Upstream rebuilds its BM25 index from every node on each `/retrieve` (seconds at 10,000
//! documents). This index is maintained as chunks are added and removed, so a query only walks
//! the posting lists of its own terms.
//!
//! Terms are lower-cased alphanumeric words, English stop words removed, Porter (Snowball)
//! stemmed. Scores use Okapi BM25 with `k1 = 1.2`, `b = 0.75` and the non-negative idf
//! `ln(1 + (N - df + 0.5) / (df + 0.5))`.

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};

const K1: f32 = 1.2;
const B: f32 = 0.75;
const MAX_TERM_BYTES: usize = 48;

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
    "what", "which", "who", "how", "do", "does", "i", "you", "we", "can", "from", "has", "have", "its", "my", "our",
    "your", "me",
];

/// Splits text into BM25 terms.
pub struct Analyzer {
    stemmer: Stemmer,
}

impl Default for Analyzer {
    fn default() -> Self {
        Self { stemmer: Stemmer::create(Algorithm::English) }
    }
}

impl Analyzer {
    /// Calls `f` with every term of `text`, in order.
    pub fn terms(&self, text: &str, mut f: impl FnMut(&str)) {
        let mut word = String::new();
        let mut flush = |word: &mut String| {
            if !word.is_empty() && word.len() <= MAX_TERM_BYTES && !STOP_WORDS.contains(&word.as_str()) {
                let stemmed = self.stemmer.stem(word);
                f(&stemmed);
            }
            word.clear();
        };
        for ch in text.chars() {
            if ch.is_alphanumeric() {
                for lower in ch.to_lowercase() {
                    word.push(lower);
                }
            } else {
                flush(&mut word);
            }
        }
        flush(&mut word);
    }

    /// Term frequencies of `text`.
    pub fn term_counts(&self, text: &str) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        self.terms(text, |t| *counts.entry(t.to_owned()).or_insert(0) += 1);
        counts
    }
}

/// BM25 scores of one query.
#[derive(Debug, Default)]
pub struct SparseScores {
    scores: Vec<f32>,
    /// Slots with a positive score (after filtering).
    pub touched: Vec<u32>,
    /// Best score among `touched` (0 when none).
    pub max: f32,
}

impl SparseScores {
    /// Score of `slot` (0 when it matched no term).
    pub fn get(&self, slot: u32) -> f32 {
        self.scores.get(slot as usize).copied().unwrap_or(0.0)
    }
}

/// One chunk in a term's posting list. Packed to 6 bytes: at 10,000 documents there are about
/// four million postings, so the two bytes of padding of a naturally aligned layout cost 8 MB.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(2))]
struct Posting {
    slot: u32,
    /// Term frequency, saturated at `u16::MAX` (BM25's tf factor is flat long before that).
    tf: u16,
}

#[derive(Default)]
pub struct Bm25 {
    analyzer: Analyzer,
    term_ids: HashMap<String, u32>,
    postings: Vec<Vec<Posting>>,
    /// Whether each slot holds a chunk. The chunk's terms are not kept per slot: removal
    /// re-analyses the chunk's text, which the caller gets from memory or the durable store
    /// (saves 4 bytes per posting).
    present: Vec<bool>,
    slot_len: Vec<u32>,
    total_len: u64,
    live: u32,
}

impl std::fmt::Debug for Bm25 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25").field("terms", &self.term_ids.len()).field("live", &self.live).finish()
    }
}

impl Bm25 {
    /// Adds the chunk in `slot` with text `text` (a no-op when the slot is taken).
    pub fn insert(&mut self, slot: u32, text: &str) {
        let counts = self.analyzer.term_counts(text);
        let s = slot as usize;
        if self.present.len() <= s {
            self.present.resize(s + 1, false);
            self.slot_len.resize(s + 1, 0);
        }
        if self.present[s] {
            return;
        }
        let mut len = 0u32;
        for (term, tf) in counts {
            let next = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
            let id = *self.term_ids.entry(term).or_insert(next);
            if id as usize == self.postings.len() {
                self.postings.push(Vec::new());
            }
            self.postings[id as usize].push(Posting { slot, tf: u16::try_from(tf).unwrap_or(u16::MAX) });
            len = len.saturating_add(tf);
        }
        self.present[s] = true;
        self.slot_len[s] = len;
        self.total_len += u64::from(len);
        self.live += 1;
    }

    /// Removes the chunk in `slot`, whose text is `text` (the same text it was inserted with);
    /// a no-op when the slot is free.
    pub fn remove(&mut self, slot: u32, text: &str) {
        let s = slot as usize;
        if !self.present.get(s).copied().unwrap_or(false) {
            return;
        }
        for term in self.analyzer.term_counts(text).into_keys() {
            let Some(&id) = self.term_ids.get(&term) else {
                continue;
            };
            let list = &mut self.postings[id as usize];
            if let Some(pos) = list.iter().position(|p| ({ p.slot }) == slot) {
                list.swap_remove(pos);
            }
        }
        self.present[s] = false;
        self.total_len -= u64::from(self.slot_len[s]);
        self.slot_len[s] = 0;
        self.live = self.live.saturating_sub(1);
    }

    /// Removes the chunks in `slots` without their texts, by scanning every posting list once:
    /// tens of milliseconds at 10,000 documents, for when the texts cannot be had.
    pub fn remove_without_text(&mut self, slots: &[u32]) {
        let mut gone = vec![false; self.present.len()];
        let mut any = false;
        for &slot in slots {
            let s = slot as usize;
            if self.present.get(s).copied().unwrap_or(false) {
                gone[s] = true;
                any = true;
            }
        }
        if !any {
            return;
        }
        for list in &mut self.postings {
            list.retain(|p| !gone.get({ p.slot } as usize).copied().unwrap_or(false));
        }
        for (s, _) in gone.iter().enumerate().filter(|(_, g)| **g) {
            self.present[s] = false;
            self.total_len -= u64::from(self.slot_len[s]);
            self.slot_len[s] = 0;
            self.live = self.live.saturating_sub(1);
        }
    }

    /// Scores every chunk holding a term of `query` among the slots `accept` allows.
    pub fn search(&self, query: &str, accept: impl Fn(u32) -> bool) -> SparseScores {
        let mut out = SparseScores::default();
        if self.live == 0 {
            return out;
        }
        let mut terms: Vec<u32> = Vec::new();
        self.analyzer.terms(query, |t| {
            if let Some(&id) = self.term_ids.get(t)
                && !terms.contains(&id)
            {
                terms.push(id);
            }
        });
        if terms.is_empty() {
            return out;
        }
        let n = self.live as f32;
        let avg = (self.total_len as f32 / n).max(1.0);
        out.scores = vec![0.0; self.slot_len.len()];
        for id in terms {
            let list = &self.postings[id as usize];
            if list.is_empty() {
                continue;
            }
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &Posting { slot, tf } in list {
                let s = slot as usize;
                let len = self.slot_len[s] as f32;
                let tf = f32::from(tf);
                let add = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg));
                if out.scores[s] == 0.0 {
                    out.touched.push(slot);
                }
                out.scores[s] += add;
            }
        }
        out.touched.retain(|&slot| accept(slot));
        out.max = out.touched.iter().map(|&s| out.scores[s as usize]).fold(0.0, f32::max);
        out
    }

    /// Number of indexed chunks.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_matching_chunk_first_and_forgets_removed() {
        let mut idx = Bm25::default();
        idx.insert(0, "The kubelet manages pods on a node.");
        idx.insert(1, "GPU provisioning creates nodes with accelerators.");
        idx.insert(2, "Bananas are yellow fruits.");
        let hits = idx.search("which node runs the kubelet?", |_| true);
        assert_eq!(hits.max, hits.get(0));
        assert!(hits.get(0) > hits.get(1));
        idx.remove(0, "The kubelet manages pods on a node.");
        idx.remove(0, "The kubelet manages pods on a node.");
        let hits = idx.search("kubelet", |_| true);
        assert!(hits.touched.is_empty());
        assert_eq!(idx.len(), 2);
        idx.insert(0, "banana bread");
        let hits = idx.search("bananas", |_| true);
        assert_eq!(hits.touched.len(), 2);
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn removing_without_text_matches_removing_with_it() {
        let texts = ["alpha beta beta gamma", "beta delta", "", "gamma gamma epsilon alpha"];
        let (mut by_text, mut by_scan) = (Bm25::default(), Bm25::default());
        for (slot, t) in texts.iter().enumerate() {
            by_text.insert(slot as u32, t);
            by_scan.insert(slot as u32, t);
        }
        by_text.remove(0, texts[0]);
        by_text.remove(3, texts[3]);
        by_scan.remove_without_text(&[0, 3, 3, 99]);
        assert_eq!((by_scan.len(), by_scan.total_len), (by_text.len(), by_text.total_len));
        for q in ["alpha", "beta", "gamma", "delta epsilon"] {
            let (a, b) = (by_text.search(q, |_| true), by_scan.search(q, |_| true));
            assert_eq!(a.touched, b.touched, "{q}");
            assert_eq!(a.max, b.max, "{q}");
        }
        assert_eq!(by_scan.postings.iter().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn postings_are_six_bytes() {
        assert_eq!(std::mem::size_of::<Posting>(), 6);
    }

    #[test]
    fn removing_every_chunk_leaves_no_postings() {
        let texts = ["alpha beta beta gamma", "beta delta", "", "gamma gamma epsilon alpha"];
        let mut idx = Bm25::default();
        for (slot, t) in texts.iter().enumerate() {
            idx.insert(slot as u32, t);
        }
        assert_eq!(idx.len(), 4);
        for (slot, t) in texts.iter().enumerate() {
            idx.remove(slot as u32, t);
        }
        assert!(idx.is_empty());
        assert_eq!(idx.total_len, 0);
        assert!(idx.postings.iter().all(Vec::is_empty));
    }
}
