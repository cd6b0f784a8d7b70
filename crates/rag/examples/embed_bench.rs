//! Benchmark baseline: our embedding engine alone (no HTTP, no index).
//!
//! Chunks a corpus exactly as the service does, keeps every `stride`-th chunk, writes those
//! chunks to a JSONL file (for the sentence-transformers baseline) and embeds them in batches
//! as the service does, reporting chunks/s and tokens/s as JSON.
//!
//! Usage: embed_bench MODEL_DIR CORPUS.jsonl STRIDE OUT_CHUNKS.jsonl
//!
//! The service's environment variables choose the back-end: `RAG_EMBED_BACKEND`,
//! `RAG_ONNXRUNTIME_LIB`, `RAG_EMBED_BATCH_TOKENS`.

use std::io::{BufRead, Write};
use std::time::Instant;

use kaito_rag::chunk::{Chunker, Sizer};
use kaito_rag::embed::{LocalEmbedder, LocalOptions};
use serde_json::{Value, json};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: embed_bench MODEL_DIR CORPUS.jsonl STRIDE OUT_CHUNKS.jsonl");
    let stride: usize = args[3].parse()?;
    let mut opts = LocalOptions::default();
    if let Some(t) = std::env::var("RAG_EMBED_BATCH_TOKENS").ok().and_then(|v| v.parse().ok()) {
        opts.batch_tokens = t;
    }
    if let Ok(b) = std::env::var("RAG_EMBED_BACKEND") {
        opts.backend = <kaito_rag::embed::Backend as clap::ValueEnum>::from_str(&b, true)
            .map_err(|e| anyhow::anyhow!("RAG_EMBED_BACKEND: {e}"))?;
    }
    let embedder = LocalEmbedder::load("bench", std::path::Path::new(&args[1]), opts)?;
    let batch_tokens = embedder.batch_tokens();
    let chunker = Chunker::new(Sizer::Tokens(embedder.sizing_tokenizer()), embedder.max_seq_length() - 2, 32)?;
    let started = Instant::now();
    let mut chunks: Vec<String> = Vec::new();
    let mut n = 0usize;
    for line in std::io::BufReader::new(std::fs::File::open(&args[2])?).lines() {
        let doc: Value = serde_json::from_str(&line?)?;
        let text = doc["text"].as_str().unwrap_or_default();
        let meta = doc["metadata"].as_object().cloned().unwrap_or_default();
        for span in chunker.split(text, &meta)? {
            if n.is_multiple_of(stride) {
                chunks.push(text[span.start as usize..span.end as usize].to_owned());
            }
            n += 1;
        }
    }
    let chunking_s = started.elapsed().as_secs_f64();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[4])?);
    for c in &chunks {
        writeln!(out, "{}", json!({"text": c}))?;
    }
    out.flush()?;
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let tokens: usize = refs.iter().map(|c| embedder.count_tokens(c).min(254) + 2).sum();
    let started = Instant::now();
    // Same request granularity as the service under the benchmark (batches of chunks).
    for batch in refs.chunks(256) {
        embedder.embed(batch)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "backend": embedder.backend_name(),
            "total_chunks": n,
            "chunking_seconds_all": chunking_s,
            "sample_chunks": chunks.len(),
            "sample_tokens": tokens,
            "seconds": secs,
            "chunks_per_s": chunks.len() as f64 / secs,
            "tokens_per_s": tokens as f64 / secs,
            "batch_tokens": batch_tokens,
            "peak_rss_mb": std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kb| kb / 1024.0),
        })
    );
    Ok(())
}
