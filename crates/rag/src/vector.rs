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
    /// [`VectorIndex::search_many`] without filters. An index may answer it approximately
    /// (the flat index does above its exact limit); the default is exact.
    fn search_many_unfiltered(&self, queries: &[&[f32]], k: usize) -> Vec<Vec<(u32, f32)>> {
        let all: &dyn Fn(u32) -> bool = &|_| true;
        self.search_many(queries, k, &vec![all; queries.len()])
    }
    /// Bytes held.
    fn memory_bytes(&self) -> usize;
}

#[inline(always)]
fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Dot products of `row` with each of `queries` (all of `row`'s length), into `out`.
///
/// AVX2 and FMA are detected at run time (the portable build targets baseline x86-64: SSE2,
/// 4-wide, no FMA, which made the scan compute-bound). With them every query has four
/// accumulators (an FMA's latency is four cycles, so one accumulator chain would run at a quarter
/// of the core's rate, which the first version did), and queries are taken two at a time so each
/// load of the row feeds two of them. Every query
/// goes through the same sequence of operations whatever its batch, so its scores do not depend
/// on what else was asked at the same moment.
#[inline]
pub fn dot_many(row: &[f32], queries: &[&[f32]], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the target features `dot_many_avx2_fma` is compiled for were detected on this CPU.
        return unsafe { dot_many_avx2_fma(row, queries, out) };
    }
    for (q, o) in queries.iter().zip(out.iter_mut()) {
        *o = dot_portable(row, q);
    }
}

/// Floats per step of the AVX2 kernels: four 8-lane accumulators per query.
#[cfg(target_arch = "x86_64")]
const STEP: usize = 32;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_many_avx2_fma(row: &[f32], queries: &[&[f32]], out: &mut [f32]) {
    let n = row.len();
    let mut pairs = queries.chunks_exact(2);
    let mut outs = out.chunks_exact_mut(2);
    for (q, o) in (&mut pairs).zip(&mut outs) {
        if q[0].len() < n || q[1].len() < n {
            o[0] = dot_portable(row, q[0]);
            o[1] = dot_portable(row, q[1]);
        } else {
            o.copy_from_slice(&dot_group::<2>(row, [q[0], q[1]]));
        }
    }
    for (q, o) in pairs.remainder().iter().zip(outs.into_remainder()) {
        *o = if q.len() < n { dot_portable(row, q) } else { dot_group::<1>(row, [*q])[0] };
    }
}

/// Dot products of `row` with `Q` queries at least as long, kept in registers: a fixed `Q` lets
/// the compiler hold all `4 * Q` accumulators in ymm registers (a loop over a run-time count
/// kept them on the stack).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn dot_group<const Q: usize>(row: &[f32], queries: [&[f32]; Q]) -> [f32; Q] {
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    let n = row.len();
    let body = n - n % STEP;
    assert!(queries.iter().all(|q| q.len() >= n));
    let mut acc: [[__m256; 4]; Q] = [[_mm256_setzero_ps(); 4]; Q];
    let mut d = 0;
    while d < body {
        // SAFETY: d + STEP <= body <= n, and `row` and every query hold at least n floats.
        unsafe {
            let r = row.as_ptr().add(d);
            let rows =
                [_mm256_loadu_ps(r), _mm256_loadu_ps(r.add(8)), _mm256_loadu_ps(r.add(16)), _mm256_loadu_ps(r.add(24))];
            for j in 0..Q {
                let p = queries[j].as_ptr().add(d);
                for lane in 0..4 {
                    acc[j][lane] = _mm256_fmadd_ps(rows[lane], _mm256_loadu_ps(p.add(lane * 8)), acc[j][lane]);
                }
            }
        }
        d += STEP;
    }
    std::array::from_fn(|j| hsum(&acc[j]) + tail_dot(&row[body..], &queries[j][body..n]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hsum(acc: &[std::arch::x86_64::__m256; 4]) -> f32 {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_storeu_ps};
    let mut lanes = [0f32; 8];
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

/// Widens a row of half floats to `f32` (`dst` must be at least as long as `src`).
///
/// `half`'s slice conversion detects F16C on every call and converts 8 values per non-inlined
/// call; in the scan, which widens every row, that dispatch cost more than the dot products.
#[inline]
fn widen(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") && std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the target features `widen_f16c` is compiled for were detected on this CPU.
        return unsafe { widen_f16c(src, dst) };
    }
    src.convert_to_f32_slice(&mut dst[..src.len()]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
fn widen_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let dst = &mut dst[..src.len()];
    let mut out = dst.chunks_exact_mut(8);
    let mut input = src.chunks_exact(8);
    for (o, i) in (&mut out).zip(&mut input) {
        // SAFETY: `i` holds 8 f16 (16 bytes) and `o` 8 f32 (32 bytes); both intrinsics are
        // unaligned loads/stores.
        unsafe {
            let halves = _mm_loadu_si128(i.as_ptr().cast::<__m128i>());
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(halves));
        }
    }
    for (o, i) in out.into_remainder().iter_mut().zip(input.remainder()) {
        *o = i.to_f32();
    }
}

/// Dot product of a half-float `row` with `query`, the row widened in registers rather than
/// through memory (in the clustered search, the separate widening took as long as the dot
/// products). The operations are those of [`widen`] then [`dot_many`] with one query, so the
/// score is the same bit for bit.
#[inline]
fn dot_half(row: &[f16], query: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
        && query.len() >= row.len()
    {
        // SAFETY: the target features `dot_half_avx2` is compiled for were detected on this CPU.
        return unsafe { dot_half_avx2(row, query) };
    }
    let mut wide = vec![0f32; row.len()];
    widen(row, &mut wide);
    let mut out = [0f32];
    dot_many(&wide, &[query], &mut out);
    out[0]
}

/// [`dot_group`] for one query and a half-float row (`query` at least as long as `row`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_half_avx2(row: &[f16], query: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
    };
    let n = row.len();
    let body = n - n % STEP;
    assert!(query.len() >= n);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut d = 0;
    while d < body {
        // SAFETY: d + STEP <= body <= n; `row` holds n halves (2 bytes each, so 8 per __m128i)
        // and `query` at least n floats; all loads are unaligned.
        unsafe {
            let r = row.as_ptr().add(d).cast::<__m128i>();
            let q = query.as_ptr().add(d);
            for (lane, a) in acc.iter_mut().enumerate() {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(r.add(lane)));
                *a = _mm256_fmadd_ps(x, _mm256_loadu_ps(q.add(lane * 8)), *a);
            }
        }
        d += STEP;
    }
    let tail: f32 = row[body..].iter().zip(&query[body..n]).map(|(x, y)| x.to_f32() * y).sum();
    hsum(&acc) + tail
}

/// The dot product without AVX2: 16 independent lanes the compiler vectorises with SSE2.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
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
///
/// Above its exact limit ([`FlatIndex::with_exact_limit`]) of live vectors, searches without a
/// filter are approximate: see [`Clusters`].
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    blocks: Vec<Vec<f16>>,
    live: Vec<bool>,
    live_rows: usize,
    exact_limit: usize,
    clusters: Option<Clusters>,
}

/// Live vectors up to which every search scans them all (see [`FlatIndex::with_exact_limit`]).
pub const DEFAULT_EXACT_LIMIT: usize = 20_000;

impl FlatIndex {
    /// Empty index of `dim`-dimensional vectors, exact up to [`DEFAULT_EXACT_LIMIT`] vectors.
    pub fn new(dim: usize) -> Self {
        Self::with_exact_limit(dim, DEFAULT_EXACT_LIMIT)
    }

    /// Empty index of `dim`-dimensional vectors that scans every vector while it holds at most
    /// `exact_limit` of them, and clusters them for approximate search above (`usize::MAX`:
    /// always exact).
    ///
    /// An exact scan costs about 40 ns per vector per query on one core: 0.8 ms at 20,000
    /// vectors, 1.6 ms at 40,000 (10,000 documents of several KB), which on two cores was a
    /// third of the service's CPU per `/retrieve`.
    pub fn with_exact_limit(dim: usize, exact_limit: usize) -> Self {
        Self { dim, blocks: Vec::new(), live: Vec::new(), live_rows: 0, exact_limit, clusters: None }
    }

    /// Whether searches without a filter are currently approximate.
    pub fn is_clustered(&self) -> bool {
        self.clusters.is_some()
    }

    fn live_rows_iter(&self) -> impl Iterator<Item = (usize, &[f16])> {
        self.rows().filter(|(s, _)| self.live[*s])
    }

    /// (Re)clusters the rows when the index has outgrown exact search or its clusters.
    fn maybe_recluster(&mut self) {
        if self.live_rows == 0 || (self.clusters.is_some() && self.live_rows <= self.exact_limit / 2) {
            self.clusters = None;
            return;
        }
        let due = match &self.clusters {
            None => self.live_rows > self.exact_limit,
            Some(c) => self.live_rows >= 2 * c.trained_rows || c.stale > self.live_rows,
        };
        if due {
            let started = std::time::Instant::now();
            self.clusters = Some(Clusters::train(self));
            tracing::debug!(rows = self.live_rows, ms = started.elapsed().as_millis() as u64, "clustered vectors");
        }
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
        if !self.live[s] {
            self.live_rows += 1;
        }
        self.live[s] = true;
        if self.clusters.is_some() {
            let mut wide = vec![0f32; self.dim];
            widen(self.row(s), &mut wide);
            if let Some(clusters) = &mut self.clusters {
                clusters.assign(slot, &wide);
            }
        }
        self.maybe_recluster();
    }

    fn remove(&mut self, slot: u32) {
        if let Some(l) = self.live.get_mut(slot as usize)
            && *l
        {
            *l = false;
            self.live_rows -= 1;
            if let Some(c) = &mut self.clusters {
                c.stale += 1;
            }
            self.maybe_recluster();
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
        Some(dot_half(self.row(s), query))
    }

    fn search(&self, query: &[f32], k: usize, accept: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        self.search_many(&[query], k, &[accept]).pop().unwrap_or_default()
    }

    fn search_many_unfiltered(&self, queries: &[&[f32]], k: usize) -> Vec<Vec<(u32, f32)>> {
        let Some(clusters) = &self.clusters else {
            let all: &dyn Fn(u32) -> bool = &|_| true;
            return self.search_many(queries, k, &vec![all; queries.len()]);
        };
        let mut results: Vec<Vec<(u32, f32)>> = queries.iter().map(|q| clusters.search(self, q, k)).collect();
        // A query the probed clusters could not fill (a tiny index part, or a malformed query)
        // falls back to the exact scan, so approximation never returns fewer results.
        let short: Vec<usize> = (0..queries.len()).filter(|&i| results[i].len() < k.min(self.live_rows)).collect();
        if !short.is_empty() {
            let all: &dyn Fn(u32) -> bool = &|_| true;
            let redo: Vec<&[f32]> = short.iter().map(|&i| queries[i]).collect();
            for (i, r) in short.into_iter().zip(self.search_many(&redo, k, &vec![all; redo.len()])) {
                results[i] = r;
            }
        }
        results
    }

    fn search_many(&self, queries: &[&[f32]], k: usize, accepts: &[&dyn Fn(u32) -> bool]) -> Vec<Vec<(u32, f32)>> {
        let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        // Queries of another dimension match nothing; the rest are scored together.
        let usable: Vec<usize> = (0..queries.len()).filter(|&i| queries[i].len() == self.dim).collect();
        if self.dim == 0 || usable.is_empty() {
            return tops.into_iter().map(TopK::into_sorted).collect();
        }
        let batch: Vec<&[f32]> = usable.iter().map(|&i| queries[i]).collect();
        // Row-major over the matrix, queries inside: each row is read from memory and widened
        // to f32 once, then stays in L1 while every query of the batch scores it, so a batch
        // reads the matrix once instead of once per query.
        let mut wide = vec![0f32; self.dim];
        let mut scores = vec![0f32; batch.len()];
        let mut wanted = vec![false; batch.len()];
        for (s, row) in self.rows() {
            if !self.live[s] {
                continue;
            }
            let slot = s as u32;
            let mut any = false;
            for (w, &i) in wanted.iter_mut().zip(&usable) {
                *w = accepts[i](slot);
                any |= *w;
            }
            if !any {
                continue;
            }
            widen(row, &mut wide);
            dot_many(&wide, &batch, &mut scores);
            for ((&i, &w), &score) in usable.iter().zip(&wanted).zip(&scores) {
                if w {
                    tops[i].push(slot, score);
                }
            }
        }
        tops.into_iter().map(TopK::into_sorted).collect()
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.capacity() * size_of::<f16>()).sum::<usize>()
            + self.live.capacity()
            + self.clusters.as_ref().map_or(0, Clusters::memory_bytes)
    }
}

/// Coarse clusters of a [`FlatIndex`]'s rows for approximate search (an inverted file, "IVF").
///
/// Spherical k-means over a sample of the rows gives about √N centroids; every row is listed
/// under its nearest centroid. A query scores the centroids, then only the rows listed under its
/// [`Clusters::probes`] best ones (about a sixteenth of the index). Text embeddings cluster by
/// topic, so a query's nearest rows sit in its nearest clusters; the benchmark's hit@5 measures
/// what is lost (docs/benchmarks-rag.md). The rows themselves stay where they are: a list holds
/// slot numbers only (4 bytes per vector).
///
/// Rows inserted later join their nearest centroid's list; removed rows stay listed until the
/// next clustering and are skipped. The index reclusters when it has doubled since the last
/// clustering or when stale entries outnumber the live rows, and drops its clusters (back to
/// exact search) when it shrinks to half its exact limit.
#[derive(Debug, Clone)]
pub struct Clusters {
    dim: usize,
    /// `k` × `dim` unit vectors.
    centroids: Vec<f32>,
    /// Slots listed under each centroid (may hold stale entries; `home` decides).
    lists: Vec<Vec<u32>>,
    /// The list each slot currently belongs to (`u32::MAX`: none).
    home: Vec<u32>,
    /// Live rows when clustered.
    trained_rows: usize,
    /// Removals since clustering (upper bound on stale list entries).
    stale: usize,
}

/// Rows sampled per centroid to train the clustering.
const SAMPLE_PER_CENTROID: usize = 32;
/// k-means iterations (the assignment barely changes after a handful).
const KMEANS_ROUNDS: usize = 6;

impl Clusters {
    /// Clusters the live rows of `index` (which holds at least one, of a non-zero dimension).
    fn train(index: &FlatIndex) -> Self {
        let dim = index.dim;
        let rows: Vec<(usize, &[f16])> = index.live_rows_iter().collect();
        debug_assert!(dim > 0 && !rows.is_empty());
        let k = ((rows.len() as f64).sqrt().round() as usize).clamp(1, 4096);
        // A deterministic sample spread over the whole index (by stride, not at random, so the
        // same data always gives the same clusters).
        let sample_len = (k * SAMPLE_PER_CENTROID).min(rows.len());
        let stride = rows.len() as f64 / sample_len.max(1) as f64;
        let mut sample = vec![0f32; sample_len * dim];
        for (i, chunk) in sample.chunks_exact_mut(dim.max(1)).enumerate() {
            widen(rows[(i as f64 * stride) as usize].1, chunk);
        }
        let mut centroids: Vec<f32> =
            (0..k).flat_map(|c| sample[(c * sample_len / k) * dim..][..dim].to_vec()).collect();
        let mut nearest = vec![0u32; sample_len];
        for _ in 0..KMEANS_ROUNDS {
            {
                let refs: Vec<&[f32]> = centroids.chunks_exact(dim).collect();
                let mut scores = vec![0f32; k];
                for (row, slot) in sample.chunks_exact(dim).zip(nearest.iter_mut()) {
                    dot_many(row, &refs, &mut scores);
                    *slot = argmax(&scores);
                }
            }
            let mut sums = vec![0f32; k * dim];
            let mut counts = vec![0usize; k];
            for (row, &c) in sample.chunks_exact(dim).zip(&nearest) {
                counts[c as usize] += 1;
                for (s, x) in sums[c as usize * dim..][..dim].iter_mut().zip(row) {
                    *s += x;
                }
            }
            for c in 0..k {
                // An empty cluster keeps its centroid rather than collapsing to zero.
                if counts[c] > 0 {
                    let mean = &mut sums[c * dim..][..dim];
                    crate::embed::normalize(mean);
                    centroids[c * dim..][..dim].copy_from_slice(mean);
                }
            }
        }
        let mut clusters =
            Self { dim, centroids, lists: vec![Vec::new(); k], home: Vec::new(), trained_rows: rows.len(), stale: 0 };
        let mut wide = vec![0f32; dim];
        for (slot, row) in rows {
            widen(row, &mut wide);
            clusters.assign(slot as u32, &wide);
        }
        clusters
    }

    fn nearest(&self, vector: &[f32]) -> u32 {
        let refs: Vec<&[f32]> = self.centroids.chunks_exact(self.dim).collect();
        let mut scores = vec![0f32; refs.len()];
        dot_many(vector, &refs, &mut scores);
        argmax(&scores)
    }

    /// Lists `slot` (holding `vector`) under its nearest centroid.
    fn assign(&mut self, slot: u32, vector: &[f32]) {
        let c = self.nearest(vector);
        let s = slot as usize;
        if self.home.len() <= s {
            self.home.resize(s + 1, u32::MAX);
        }
        if self.home[s] != u32::MAX && self.home[s] != c {
            // The slot was reused: its entry in the other list is stale now.
            self.stale += 1;
        }
        self.home[s] = c;
        // A list may still hold this slot from an earlier life; one entry is enough (lists hold
        // about √N entries, so the check is cheap next to the centroid scoring above).
        if !self.lists[c as usize].contains(&slot) {
            self.lists[c as usize].push(slot);
        }
    }

    /// Clusters each query probes: a sixteenth of them, at least 8. An eighth cost 6 % more
    /// service CPU per retrieval for the same hit@5 (docs/benchmarks-rag.md).
    fn probes(&self) -> usize {
        (self.lists.len() / 16).max(8).min(self.lists.len())
    }

    fn search(&self, index: &FlatIndex, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut top = TopK::new(k);
        if query.len() != self.dim {
            return Vec::new();
        }
        let refs: Vec<&[f32]> = self.centroids.chunks_exact(self.dim).collect();
        let mut scores = vec![0f32; refs.len()];
        dot_many(query, &refs, &mut scores);
        let mut probe = TopK::new(self.probes());
        for (c, &score) in scores.iter().enumerate() {
            probe.push(c as u32, score);
        }
        for (c, _) in probe.into_sorted() {
            let list = &self.lists[c as usize];
            for (i, &slot) in list.iter().enumerate() {
                // Listed rows are scattered over the matrix, beyond the hardware prefetcher's
                // reach: ask for the row two entries ahead while this one is scored.
                if let Some(&ahead) = list.get(i + 2)
                    && index.live.get(ahead as usize) == Some(&true)
                {
                    prefetch(index.row(ahead as usize));
                }
                let s = slot as usize;
                if self.home.get(s) == Some(&c) && index.live.get(s) == Some(&true) {
                    top.push(slot, dot_half(index.row(s), query));
                }
            }
        }
        top.into_sorted()
    }

    fn memory_bytes(&self) -> usize {
        self.centroids.capacity() * 4
            + self.lists.iter().map(|l| l.capacity() * 4).sum::<usize>()
            + self.home.capacity() * 4
    }
}

/// Hints the CPU to load `row` into cache (a no-op off x86-64).
#[inline]
fn prefetch(row: &[f16]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for line in row.chunks(32) {
            // SAFETY: a prefetch is only a hint; it never faults, and the pointer is in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best as u32
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
            let mut out = [f32::NAN];
            dot_many(&a, &[&b], &mut out);
            assert!((out[0] - naive).abs() < 1e-3, "len {len}");
            assert!((dot_portable(&a, &b) - naive).abs() < 1e-3, "portable, len {len}");
        }
    }

    #[test]
    fn widen_matches_the_portable_conversion() {
        for len in [0, 1, 7, 8, 9, 384, 1001] {
            let halves: Vec<f16> = (0..len).map(|i| f16::from_f32((i as f32 * 0.37).sin() * 3.0)).collect();
            let mut fast = vec![f32::NAN; len + 3];
            widen(&halves, &mut fast);
            let portable: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
            assert_eq!(&fast[..len], &portable[..], "len {len}");
            assert!(fast[len..].iter().all(|x| x.is_nan()), "wrote past the row, len {len}");
        }
    }

    #[test]
    fn half_row_dot_equals_widening_then_dot_bit_for_bit() {
        // The clustered search scores rows with dot_half and the exact scan widens them first; a
        // document must score the same either way (fusion and ties depend on it).
        for dim in [0, 1, 7, 31, 32, 33, 384, 1001] {
            let row: Vec<f16> = (0..dim).map(|i| f16::from_f32((i as f32 * 0.37).sin())).collect();
            let query: Vec<f32> = (0..dim + 2).map(|i| (i as f32 * 0.05).cos()).collect();
            let mut wide = vec![0f32; dim];
            widen(&row, &mut wide);
            let mut out = [f32::NAN];
            dot_many(&wide, &[&query[..dim]], &mut out);
            assert_eq!(dot_half(&row, &query[..dim]).to_bits(), out[0].to_bits(), "dim {dim}");
            assert_eq!(dot_half(&row, &query).to_bits(), out[0].to_bits(), "dim {dim}, longer query");
        }
    }

    #[test]
    fn dot_many_matches_dot_for_every_group_size() {
        for dim in [3, 16, 31, 384] {
            let row: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).sin()).collect();
            let queries: Vec<Vec<f32>> =
                (0..11).map(|q| (0..dim).map(|i| ((i * (q + 2)) as f32 * 0.07).cos()).collect()).collect();
            for n in 0..=queries.len() {
                let refs: Vec<&[f32]> = queries[..n].iter().map(Vec::as_slice).collect();
                let mut out = vec![f32::NAN; n];
                dot_many(&row, &refs, &mut out);
                for (q, got) in refs.iter().zip(&out) {
                    let naive: f32 = row.iter().zip(*q).map(|(x, y)| x * y).sum();
                    assert!((got - naive).abs() < 1e-3, "dim {dim}, {n} queries: {got} vs {naive}");
                }
            }
        }
    }

    /// Points scattered around `topics` random directions, like embeddings around subjects.
    fn clustered(n: usize, topics: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let centers: Vec<Vec<f32>> = (0..topics).map(|_| (0..dim).map(|_| next()).collect()).collect();
        (0..n)
            .map(|i| {
                let mut v: Vec<f32> = centers[i % topics].iter().map(|c| c + 0.6 * next()).collect();
                crate::embed::normalize(&mut v);
                v
            })
            .collect()
    }

    #[test]
    fn clustered_search_finds_what_the_exact_scan_finds() {
        let (dim, k) = (48, 10);
        let points = clustered(6000, 40, dim, 7);
        let mut approx = FlatIndex::with_exact_limit(dim, 2000);
        let mut exact = FlatIndex::with_exact_limit(dim, usize::MAX);
        for (slot, p) in points.iter().enumerate() {
            approx.insert(slot as u32, p);
            exact.insert(slot as u32, p);
        }
        assert!(approx.is_clustered() && !exact.is_clustered());
        let queries = clustered(200, 40, dim, 99);
        let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let got = approx.search_many_unfiltered(&refs, k);
        let want = exact.search_many_unfiltered(&refs, k);
        let mut found = 0;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), k);
            let mut slots: Vec<u32> = g.iter().map(|h| h.0).collect();
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), k, "a slot listed twice");
            found += w.iter().filter(|h| g.contains(h)).count();
        }
        let recall = found as f64 / (k * queries.len()) as f64;
        assert!(recall >= 0.9, "recall@{k} {recall}");
        // Filtered searches scan exactly.
        let all: &dyn Fn(u32) -> bool = &|_| true;
        assert_eq!(approx.search_many(&refs[..3], k, &[all; 3]), want[..3].to_vec());
    }

    #[test]
    fn clustered_index_forgets_removed_and_replaced_rows_and_shrinks_back_to_exact() {
        let dim = 32;
        let points = clustered(3000, 20, dim, 3);
        let mut idx = FlatIndex::with_exact_limit(dim, 1000);
        for (slot, p) in points.iter().enumerate() {
            idx.insert(slot as u32, p);
        }
        assert!(idx.is_clustered());
        // Remove the even slots, then reuse some of them for other vectors.
        for slot in (0..3000u32).step_by(2) {
            idx.remove(slot);
        }
        let moved = clustered(300, 20, dim, 11);
        for (i, p) in moved.iter().enumerate() {
            idx.insert((i * 2) as u32, p);
        }
        let queries: Vec<&[f32]> = points[..50].iter().chain(&moved[..50]).map(Vec::as_slice).collect();
        for hits in idx.search_many_unfiltered(&queries, 20) {
            let mut slots: Vec<u32> = hits.iter().map(|h| h.0).collect();
            assert_eq!(slots.len(), 20);
            assert!(slots.iter().all(|&s| s % 2 == 1 || (s as usize) < 600), "a removed row was returned");
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), 20, "a slot listed twice");
        }
        // A moved row is found under its new vector, with its new score.
        let top = &idx.search_many_unfiltered(&[moved[5].as_slice()], 1)[0][0];
        assert_eq!(top.0, 10);
        assert!((top.1 - 1.0).abs() < 1e-3);
        for slot in (1..3000u32).step_by(2) {
            idx.remove(slot);
        }
        assert!(!idx.is_clustered(), "300 rows left: back to exact search");
    }

    #[test]
    fn clustering_from_the_first_vector_survives_emptying_and_refilling() {
        let points = clustered(40, 4, 8, 5);
        let mut idx = FlatIndex::with_exact_limit(8, 0);
        for round in 0..2 {
            for (slot, p) in points.iter().enumerate() {
                idx.insert(slot as u32, p);
            }
            assert!(idx.is_clustered(), "round {round}");
            assert_eq!(idx.search_many_unfiltered(&[points[3].as_slice()], 1)[0][0].0, 3);
            for slot in 0..points.len() as u32 {
                idx.remove(slot);
            }
            assert!(!idx.is_clustered());
            assert!(idx.search_many_unfiltered(&[points[3].as_slice()], 1)[0].is_empty());
        }
    }
}
