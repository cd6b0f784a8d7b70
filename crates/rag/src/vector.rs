//! Dense vector search.
//!
//! [`VectorIndex`] is the interface; [`FlatIndex`] is exact search over a matrix of
//! L2-normalised vectors, scored by cosine similarity (the dot product), higher is better.
//! At tens of thousands of chunks exact search costs a few milliseconds and has perfect recall,
//! so it is the default; an approximate index can implement the trait for larger corpora.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use half::f16;
use half::slice::HalfFloatSliceExt;

/// A mutable index of vectors addressed by slot number.
pub trait VectorIndex: Send + Sync {
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// Stores `vector` in `slot` (replacing what was there).
    fn insert(&mut self, slot: u32, vector: &[f32]);
    /// Forgets `slot`.
    fn remove(&mut self, slot: u32);
    /// The vector in `slot`, if any (as stored: an index may keep less precision than it was given).
    fn vector(&self, slot: u32) -> Option<Vec<f32>>;
    /// Cosine similarity of `query` and the vector in `slot`, if any.
    fn score(&self, slot: u32, query: &[f32]) -> Option<f32>;
    /// The `k` slots most similar to `query` among those `accept` allows, best first, with
    /// their cosine similarity.
    fn search(&self, query: &[f32], k: usize, accept: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)>;
    /// [`VectorIndex::search`] for several queries at once (`accepts[i]` filters `queries[i]`).
    /// An index can answer a batch faster than one query at a time: the flat index reads its
    /// matrix once for the whole batch instead of once per query.
    fn search_many(&self, queries: &[&[f32]], k: usize, accepts: &[&dyn Fn(u32) -> bool]) -> Vec<Vec<(u32, f32)>> {
        queries.iter().zip(accepts).map(|(q, accept)| self.search(q, k, accept)).collect()
    }
    /// Bytes held.
    fn memory_bytes(&self) -> usize;
}

/// Dot product. On x86-64 CPUs with AVX2 and FMA (detected at run time) it runs 8-wide fused
/// multiply-adds; the portable build targets baseline x86-64 (SSE2, 4-wide, no FMA), which made
/// the batched scan compute-bound.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the two target features `dot_avx2_fma` is compiled for were detected on this CPU.
        return unsafe { dot_avx2_fma(a, b) };
    }
    dot_lanes(a, b, |x, y, acc| acc + x * y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    // mul_add is one instruction here; without the fma feature it would be a libm call.
    dot_lanes(a, b, |x, y, acc| x.mul_add(y, acc))
}

/// The lane-parallel loop both builds share; `step` accumulates one product.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], step: impl Fn(f32, f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = step(x[i], y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[derive(PartialEq)]
struct MinScore(f32, u32);

impl Eq for MinScore {}

impl PartialOrd for MinScore {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MinScore {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse: the heap top is the lowest score, so it is evicted first.
        other.0.total_cmp(&self.0).then(other.1.cmp(&self.1))
    }
}

/// Keeps the `k` best `(slot, score)` pairs.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<MinScore>,
}

impl TopK {
    /// Empty collector for `k` results.
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// Offers one candidate.
    #[inline]
    pub fn push(&mut self, slot: u32, score: f32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(MinScore(score, slot));
        } else if let Some(top) = self.heap.peek()
            && score > top.0
        {
            self.heap.pop();
            self.heap.push(MinScore(score, slot));
        }
    }

    /// Results, best first.
    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = self.heap.into_iter().map(|m| (m.1, m.0)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// Rows per block of the flat index's storage.
const BLOCK_ROWS: usize = 1024;

/// Exact (brute-force) cosine search over vectors stored as IEEE half floats.
///
/// Half precision halves the index's memory and the bytes a scan reads; on unit vectors its
/// rounding (a relative 2^-11 per component) moves a cosine by about 1e-4, far below the gaps
/// that decide a ranking. Scores are computed in `f32`: each row is widened once per scan and
/// then scored against every query of the batch.
///
/// Vectors live in blocks of at most [`BLOCK_ROWS`] rows rather than one growing matrix: growing
/// a single allocation copies it, and for a moment both copies are resident (120 MB at 10,000
/// documents), which set the service's peak memory while indexing and loading. A block grows
/// like a `Vec` until it is full, so a small index stays small.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    blocks: Vec<Vec<f16>>,
    live: Vec<bool>,
}

impl FlatIndex {
    /// Empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self { dim, blocks: Vec::new(), live: Vec::new() }
    }

    fn row(&self, s: usize) -> &[f16] {
        let start = (s % BLOCK_ROWS) * self.dim;
        &self.blocks[s / BLOCK_ROWS][start..start + self.dim]
    }

    /// Every stored row (live or not) with its slot, in slot order.
    fn rows(&self) -> impl Iterator<Item = (usize, &[f16])> {
        self.blocks.iter().flat_map(|b| b.chunks_exact(self.dim.max(1))).enumerate().take(self.live.len())
    }
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn insert(&mut self, slot: u32, vector: &[f32]) {
        let s = slot as usize;
        if self.dim == 0 {
            return;
        }
        let (block, offset) = (s / BLOCK_ROWS, (s % BLOCK_ROWS) * self.dim);
        while self.blocks.len() <= block {
            if let Some(full) = self.blocks.last_mut() {
                full.resize(BLOCK_ROWS * self.dim, f16::ZERO);
            }
            self.blocks.push(Vec::new());
        }
        let rows = &mut self.blocks[block];
        let needed = offset + self.dim;
        if rows.len() < needed {
            if rows.capacity() < needed {
                let target = needed.max(rows.capacity() * 2).min(BLOCK_ROWS * self.dim);
                rows.reserve_exact(target - rows.len());
            }
            rows.resize(needed, f16::ZERO);
        }
        if self.live.len() <= s {
            self.live.resize(s + 1, false);
        }
        let n = vector.len().min(self.dim);
        let row = &mut self.blocks[block][offset..offset + self.dim];
        row[..n].convert_from_f32_slice(&vector[..n]);
        row[n..].fill(f16::ZERO);
        self.live[s] = true;
    }

    fn remove(&mut self, slot: u32) {
        if let Some(l) = self.live.get_mut(slot as usize) {
            *l = false;
        }
    }

    fn vector(&self, slot: u32) -> Option<Vec<f32>> {
        let s = slot as usize;
        if *self.live.get(s)? { Some(self.row(s).to_f32_vec()) } else { None }
    }

    fn score(&self, slot: u32, query: &[f32]) -> Option<f32> {
        let s = slot as usize;
        if query.len() != self.dim || !*self.live.get(s)? {
            return None;
        }
        let mut wide = vec![0f32; self.dim];
        self.row(s).convert_to_f32_slice(&mut wide);
        Some(dot(query, &wide))
    }

    fn search(&self, query: &[f32], k: usize, accept: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        self.search_many(&[query], k, &[accept]).pop().unwrap_or_default()
    }

    fn search_many(&self, queries: &[&[f32]], k: usize, accepts: &[&dyn Fn(u32) -> bool]) -> Vec<Vec<(u32, f32)>> {
        let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        if self.dim > 0 {
            // Row-major over the matrix, queries inside: each row is read from memory and
            // widened to f32 once, then stays in L1 while every query of the batch scores it. A
            // single scan is bound by memory bandwidth, so a batch costs little more than one query.
            let mut wide = vec![0f32; self.dim];
            for (s, row) in self.rows() {
                if !self.live[s] {
                    continue;
                }
                let slot = s as u32;
                let mut widened = false;
                for ((query, accept), top) in queries.iter().zip(accepts).zip(tops.iter_mut()) {
                    if query.len() == self.dim && accept(slot) {
                        if !widened {
                            row.convert_to_f32_slice(&mut wide);
                            widened = true;
                        }
                        top.push(slot, dot(query, &wide));
                    }
                }
            }
        }
        tops.into_iter().map(TopK::into_sorted).collect()
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.capacity() * size_of::<f16>()).sum::<usize>() + self.live.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_similar_first() {
        let mut idx = FlatIndex::new(3);
        idx.insert(0, &[1.0, 0.0, 0.0]);
        idx.insert(1, &[0.0, 1.0, 0.0]);
        idx.insert(2, &[0.6, 0.8, 0.0]);
        let hits = idx.search(&[0.0, 1.0, 0.0], 2, &|_| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((hits[0].1 - 1.0).abs() < 1e-3);
        idx.remove(1);
        let hits = idx.search(&[0.0, 1.0, 0.0], 1, &|_| true);
        assert_eq!(hits[0].0, 2);
        let hits = idx.search(&[0.0, 1.0, 0.0], 5, &|s| s == 0);
        assert_eq!(hits.len(), 1);
    }

    fn unit(seed: u32, dim: u32) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|i| ((seed * 7919 + i * 104_729) as f32 * 0.001).sin()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn exact_dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn batched_half_precision_search_matches_exact_f32_ranking() {
        let dim = 384;
        let vectors: Vec<Vec<f32>> = (0..3000).map(|s| unit(s, dim)).collect();
        let mut idx = FlatIndex::new(dim as usize);
        for (slot, v) in vectors.iter().enumerate() {
            idx.insert(slot as u32, v);
        }
        idx.remove(17);
        let queries: Vec<Vec<f32>> = (0..5).map(|q| unit(100_000 + q, dim)).collect();
        let all = |_: u32| true;
        let even = |s: u32| s.is_multiple_of(2);
        let accepts: Vec<&dyn Fn(u32) -> bool> = vec![&all, &even, &all, &even, &all];
        let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let batched = idx.search_many(&refs, 10, &accepts);
        for (i, q) in refs.iter().enumerate() {
            assert_eq!(batched[i], idx.search(q, 10, accepts[i]), "query {i}: batch and single differ");
            let mut exact: Vec<(u32, f32)> = (0..vectors.len() as u32)
                .filter(|&s| s != 17 && accepts[i](s))
                .map(|s| (s, exact_dot(&vectors[s as usize], q)))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            assert_eq!(batched[i].len(), 10);
            for (rank, ((slot, score), (_, exact_score))) in batched[i].iter().zip(&exact).enumerate() {
                let own = exact_dot(&vectors[*slot as usize], q);
                assert!((score - own).abs() < 1e-3, "query {i}: slot {slot} scored {score}, exact {own}");
                // Another slot may take this rank only if the two are within rounding of each other.
                assert!((score - exact_score).abs() < 2e-3, "query {i} rank {rank}: {score} vs exact {exact_score}");
            }
            assert!(!batched[i].iter().any(|h| h.0 == 17));
        }
        assert!(batched[1].iter().all(|h| h.0 % 2 == 0));
    }

    #[test]
    fn score_and_vector_round_trip_within_half_precision() {
        let mut idx = FlatIndex::new(384);
        let v = unit(3, 384);
        idx.insert(9, &v);
        let back = idx.vector(9).unwrap();
        assert!(back.iter().zip(&v).all(|(a, b)| (a - b).abs() <= b.abs() / 1024.0 + 1e-7));
        assert!((idx.score(9, &v).unwrap() - 1.0).abs() < 1e-3);
        assert_eq!(idx.score(8, &v), None);
        assert_eq!(idx.score(9, &v[..10]), None, "a query of the wrong dimension scores nothing");
    }

    #[test]
    fn slots_across_blocks_keep_their_vectors() {
        let mut idx = FlatIndex::new(4);
        let far = (BLOCK_ROWS * 2 + 5) as u32;
        idx.insert(far, &[0.0, 0.0, 1.0, 0.0]);
        idx.insert(3, &[1.0, 0.0, 0.0, 0.0]);
        idx.insert(BLOCK_ROWS as u32, &[0.0, 1.0, 0.0, 0.0]);
        assert_eq!(idx.vector(far), Some(vec![0.0, 0.0, 1.0, 0.0]));
        assert_eq!(idx.vector(4), None);
        assert_eq!(idx.search(&[0.0, 0.0, 1.0, 0.0], 1, &|_| true), vec![(far, 1.0)]);
        assert_eq!(idx.search(&[0.0, 1.0, 0.0, 0.0], 1, &|_| true), vec![(BLOCK_ROWS as u32, 1.0)]);
        assert_eq!(idx.search(&[1.0, 0.0, 0.0, 0.0], 3, &|_| true).len(), 3);
    }

    #[test]
    fn dot_matches_naive() {
        for len in [0, 1, 15, 16, 17, 384, 1000] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-3, "len {len}");
            assert!((dot_lanes(&a, &b, |x, y, acc| acc + x * y) - naive).abs() < 1e-3, "portable, len {len}");
        }
    }
}
