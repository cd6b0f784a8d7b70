//! Our candle embeddings match sentence-transformers' for the same sentences.

mod common;

use kaito_rag::embed::{LocalEmbedder, LocalOptions, Pooling};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    tokens: Vec<usize>,
    vectors: Vec<Vec<f32>>,
}

#[test]
fn vectors_match_sentence_transformers() {
    let dir = common::model_dir();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json");
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    // Small batches force several forward passes with different padding.
    let embedder = LocalEmbedder::load(
        "sentence-transformers/all-MiniLM-L6-v2",
        &dir,
        LocalOptions { batch_size: 4, batch_tokens: 8192 },
    )
    .expect("load model");
    assert_eq!(embedder.dim(), 384);
    assert_eq!(embedder.max_seq_length(), 256);
    assert_eq!(embedder.pooling(), Pooling::Mean);
    assert!(reference.tokens.iter().any(|&t| t > 256), "fixture needs a long sentence");
    let refs: Vec<&str> = reference.sentences.iter().map(String::as_str).collect();
    let ours = embedder.embed(&refs).expect("embed");
    for (i, (a, b)) in ours.iter().zip(&reference.vectors).enumerate() {
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "sentence {i} not normalised: {norm}");
        assert!(cos >= 0.999, "sentence {i} {:?}: cosine {cos}", reference.sentences[i]);
    }
    // Embedding one at a time gives the same vectors as batching.
    let single = embedder.embed(&refs[2..3]).expect("embed one");
    let cos: f32 = single[0].iter().zip(&ours[2]).map(|(x, y)| x * y).sum();
    assert!(cos > 0.99999, "batched vs single: {cos}");
}

#[test]
fn missing_model_is_a_clear_error() {
    let err = kaito_rag::embed::resolve_model_dir(
        "BAAI/bge-small-en-v1.5",
        None,
        &[std::path::PathBuf::from("/nonexistent-models")],
    )
    .expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("BAAI/bge-small-en-v1.5"), "{msg}");
    assert!(msg.contains("/nonexistent-models/BAAI/bge-small-en-v1.5"), "{msg}");
    assert!(msg.contains("RAG_MODEL_DIR"), "{msg}");
}
