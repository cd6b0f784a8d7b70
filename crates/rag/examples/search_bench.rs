//! Index-only scale benchmark: hybrid search latency and memory at corpus scale.
//!
//! Chunks the whole corpus with the service's chunker, gives every chunk a random unit vector
//! (embedding tens of thousands of chunks takes an hour on two shared cores; the cost of an exact
//! scan does not depend on the values), indexes text for BM25, embeds the labelled queries with
//! the real model, then times `Index::search` (vector scan + BM25 + fusion, top 5) from 1 and 8
//! threads and reports the process's memory.
//!
//! Usage: search_bench MODEL_DIR CORPUS.jsonl QUERIES.jsonl SECONDS_8

use std::io::BufRead;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kaito_rag::chunk::{Chunker, Sizer};
use kaito_rag::embed::{LocalEmbedder, LocalOptions, normalize};
use kaito_rag::index::{DocRecord, Fusion, Index};
use serde_json::{Value, json};

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * p / 100.0).round() as usize).copied().unwrap_or(0.0)
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    anyhow::ensure!(a.len() == 5, "usage: search_bench MODEL_DIR CORPUS QUERIES SECONDS_8");
    let model = Arc::new(LocalEmbedder::load("bench", std::path::Path::new(&a[1]), LocalOptions::default())?);
    let chunker = Chunker::new(Sizer::Tokens(model.sizing_tokenizer()), model.max_seq_length() - 2, 32)?;
    let dim = model.dim();
    let mut index = Index::new(dim);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let t = Instant::now();
    let (mut docs, mut chunks) = (0usize, 0usize);
    for line in std::io::BufReader::new(std::fs::File::open(&a[2])?).lines() {
        let d: Value = serde_json::from_str(&line?)?;
        let text = d["text"].as_str().unwrap_or_default().to_owned();
        let metadata = d["metadata"].as_object().cloned().unwrap_or_default();
        let spans = chunker.split(&text, &metadata)?;
        let mut vectors = Vec::with_capacity(spans.len() * dim);
        for _ in 0..spans.len() {
            let mut v: Vec<f32> = (0..dim).map(|_| rnd()).collect();
            normalize(&mut v);
            vectors.extend(v);
        }
        chunks += spans.len();
        docs += 1;
        index.insert(DocRecord {
            doc_id: d["doc_id"].as_str().unwrap_or_default().to_owned(),
            text,
            metadata,
            seq: 0,
            spans,
            vectors,
        });
    }
    let build_s = t.elapsed().as_secs_f64();
    let queries: Vec<String> = std::io::BufReader::new(std::fs::File::open(&a[3])?)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter_map(|v| v["query"].as_str().map(str::to_owned))
        .collect();
    let mut embed_ms = Vec::new();
    let mut qvecs = Vec::new();
    for q in &queries {
        let t = Instant::now();
        qvecs.push(model.embed(&[q.as_str()])?.remove(0));
        embed_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let index = Arc::new(RwLock::new(index));
    let mut one = Vec::new();
    for (q, v) in queries.iter().zip(&qvecs) {
        let t = Instant::now();
        let g = index.read().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let hits = g.search(v, q, 5, None, Fusion::default());
        anyhow::ensure!(hits.len() == 5, "expected 5 hits");
        one.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let secs: f64 = a[4].parse()?;
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let qs = Arc::new((queries.clone(), qvecs.clone()));
    let handles: Vec<_> = (0..8)
        .map(|k| {
            let (index, qs) = (Arc::clone(&index), Arc::clone(&qs));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = k;
                while Instant::now() < stop {
                    let t = Instant::now();
                    if let Ok(g) = index.read() {
                        g.search(&qs.1[i % qs.1.len()], &qs.0[i % qs.0.len()], 5, None, Fusion::default());
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    i += 8;
                }
                lat
            })
        })
        .collect();
    let mut eight: Vec<f64> = handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect();
    let n8 = eight.len();
    println!(
        "{}",
        json!({
            "docs": docs, "chunks": chunks, "build_seconds": build_s,
            "vector_mb": index.read().map(|i| i.vector_bytes()).unwrap_or(0) as f64 / 1048576.0,
            "query_embed_ms": {"p50": pct(&mut embed_ms, 50.0), "p99": pct(&mut embed_ms, 99.0)},
            "search_1_thread_ms": {"p50": pct(&mut one, 50.0), "p99": pct(&mut one, 99.0)},
            "search_8_threads_ms": {"p50": pct(&mut eight, 50.0), "p99": pct(&mut eight, 99.0), "per_s": n8 as f64 / secs},
            "rss_mb": status_kb("VmRSS:") as f64 / 1024.0,
            "peak_rss_mb": status_kb("VmHWM:") as f64 / 1024.0,
        })
    );
    Ok(())
}
