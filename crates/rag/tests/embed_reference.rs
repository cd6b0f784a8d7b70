//! Our embeddings (candle and ONNX Runtime back-ends) match sentence-transformers' for the same
//! sentences.

mod common;

use kaito_rag::embed::{Backend, LocalEmbedder, LocalOptions, Pooling};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    tokens: Vec<usize>,
    vectors: Vec<Vec<f32>>,
}

#[test]
fn candle_vectors_match_sentence_transformers() {
    let options =
        LocalOptions { batch_size: 4, batch_tokens: 8192, backend: Backend::Candle, ..LocalOptions::default() };
    let embedder = LocalEmbedder::load("sentence-transformers/all-MiniLM-L6-v2", &common::model_dir(), options)
        .expect("load model");
    assert_eq!(embedder.backend_name(), "candle");
    check_against_reference(&embedder);
}

#[test]
fn onnx_runtime_vectors_match_sentence_transformers() {
    let options = LocalOptions {
        batch_size: 4,
        batch_tokens: 8192,
        backend: Backend::Onnx,
        onnxruntime_lib: Some(common::onnxruntime_lib()),
        threads: 2,
    };
    let embedder = LocalEmbedder::load("sentence-transformers/all-MiniLM-L6-v2", &common::onnx_model_dir(), options)
        .expect("load ONNX model");
    assert_eq!(embedder.backend_name(), "onnxruntime");
    check_against_reference(&embedder);
}

#[test]
fn onnx_backend_without_an_export_is_a_clear_error() {
    let options = LocalOptions {
        backend: Backend::Onnx,
        onnxruntime_lib: Some(common::onnxruntime_lib()),
        ..LocalOptions::default()
    };
    let err = LocalEmbedder::load("m", &common::model_dir(), options).expect_err("no model.onnx there");
    assert!(err.to_string().contains("RAG_EMBED_BACKEND=onnx") && err.to_string().contains("model.onnx"), "{err}");
    let options = LocalOptions {
        backend: Backend::Onnx,
        onnxruntime_lib: Some("/nonexistent/libonnxruntime.so".into()),
        ..LocalOptions::default()
    };
    let err = LocalEmbedder::load("m", &common::onnx_model_dir(), options).expect_err("no runtime there");
    assert!(err.to_string().contains("RAG_ONNXRUNTIME_LIB"), "{err}");
}

#[test]
fn auto_backend_falls_back_to_candle_without_an_export() {
    let options = LocalOptions { onnxruntime_lib: Some(common::onnxruntime_lib()), ..LocalOptions::default() };
    let embedder = LocalEmbedder::load("m", &common::model_dir(), options).expect("load");
    assert_eq!(embedder.backend_name(), "candle");
}

fn check_against_reference(embedder: &LocalEmbedder) {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json");
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json");
    // Small batches (batch_size 4) force several forward passes with different padding.
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
