//! Our embeddings (candle and ONNX Runtime back-ends) match sentence-transformers' for the same
//! sentences.

mod common;

use std::sync::Arc;

use kaito_rag::embed::{Backend, LocalEmbedder, LocalOptions, Pooling, QueryEncoder};
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
        ..LocalOptions::default()
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

fn reference() -> Reference {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json");
    serde_json::from_str(&std::fs::read_to_string(fixture).expect("fixture")).expect("json")
}

fn onnx_options(query_encoder: QueryEncoder) -> LocalOptions {
    LocalOptions {
        backend: Backend::Onnx,
        onnxruntime_lib: Some(common::onnxruntime_lib()),
        query_encoder,
        ..LocalOptions::default()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn quantized_query_encoder_finds_what_the_full_model_finds() {
    let dir = common::onnx_model_dir();
    let embedder = Arc::new(LocalEmbedder::load("m", &dir, onnx_options(QueryEncoder::Auto)).expect("load"));
    assert_eq!(embedder.query_encoder_file(), Some(dir.join("model_quantized.onnx").as_path()));
    let reference = reference();
    // Documents are embedded by the full model; each sentence, asked as a query through the int8
    // encoder, must stay close to its full-precision vector and find itself first.
    for (i, sentence) in reference.sentences.iter().enumerate() {
        let query = embedder.embed_query(sentence.clone()).await.expect("embed query");
        let norm: f32 = query.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "query {i} not normalised: {norm}");
        let own = cosine(&query, &reference.vectors[i]);
        assert!(own >= 0.97, "sentence {i}: int8 query vs full-precision cosine {own}");
        let best = (0..reference.vectors.len())
            .max_by(|&a, &b| cosine(&query, &reference.vectors[a]).total_cmp(&cosine(&query, &reference.vectors[b])))
            .expect("sentences");
        assert_eq!(best, i, "sentence {i} as a query found sentence {best} first");
    }
    // Asked all at once, the queries are shared among the workers and batched: every answer must
    // still be its own query's vector.
    let alone: Vec<Vec<f32>> = {
        let mut v = Vec::new();
        for s in &reference.sentences {
            v.push(embedder.embed_query(s.clone()).await.expect("embed query"));
        }
        v
    };
    let together =
        futures::future::join_all(reference.sentences.iter().cycle().take(4 * reference.sentences.len()).map(|s| {
            let embedder = Arc::clone(&embedder);
            let s = s.clone();
            async move { embedder.embed_query(s).await.expect("embed query") }
        }))
        .await;
    for (i, v) in together.iter().enumerate() {
        let expected = &alone[i % alone.len()];
        assert!(cosine(v, expected) > 0.9999, "query {i} got another query's vector");
    }
}

#[tokio::test]
async fn same_query_encoder_gives_document_vectors() {
    let embedder =
        Arc::new(LocalEmbedder::load("m", &common::onnx_model_dir(), onnx_options(QueryEncoder::Same)).expect("load"));
    assert_eq!(embedder.query_encoder_file(), None);
    let sentence = reference().sentences[0].clone();
    let query = embedder.embed_query(sentence.clone()).await.expect("embed query");
    let document = embedder.embed(&[sentence.as_str()]).expect("embed");
    assert!(cosine(&query, &document[0]) > 0.99999);
}

#[test]
fn missing_query_encoder_file_is_a_clear_error() {
    let options = onnx_options(QueryEncoder::File("/nonexistent/q.onnx".into()));
    let err = LocalEmbedder::load("m", &common::onnx_model_dir(), options).expect_err("no such file");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/q.onnx") && msg.contains("RAG_QUERY_ENCODER=same"), "{msg}");
}

fn check_against_reference(embedder: &LocalEmbedder) {
    let reference = reference();
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
