#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, unit tests, then integration and end-to-end tests against a real
# local control plane that this script starts and always stops (also when a test fails).
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/kaito-rs/target, outside the clone so CI reuses it),
#              KAITO_SKIP_LINT=1 skips fmt/clippy.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaito-rs/target}
export KAITO_RUN_DIR=${KAITO_RUN_DIR:-$REPO/.k8s-run-test}
export CARGO_TERM_COLOR=never

t0=$(date +%s)
phase() { printf '\n==> %s (t=%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

phase "control-plane binaries"
hack/k8s-bins.sh >/dev/null

if [ -x hack/rag-test-env.sh ]; then
  phase "RAG test environment (Python venv with the test embedding model and the openai client)"
  eval "$(hack/rag-test-env.sh)"
fi

if [ "${KAITO_SKIP_LINT:-0}" != 1 ]; then
  phase "cargo fmt --check"
  cargo fmt --all -- --check
  phase "cargo clippy -D warnings"
  cargo clippy --workspace --all-targets --features kaito-tests/cluster -- -D warnings
fi

phase "build tests"
cargo test --workspace --features kaito-tests/cluster --no-run

phase "start the local control plane"
trap 'hack/cluster-down.sh' EXIT
hack/cluster-up.sh
source "$KAITO_RUN_DIR/env"

phase "cargo test (unit, service, integration, end-to-end)"
cargo test --workspace --features kaito-tests/cluster

phase "done"
