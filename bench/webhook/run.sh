#!/usr/bin/env bash
# Admission webhook latency (p50/p99), in-process and over HTTPS; results go to docs/benchmarks.md (section "Admission webhook").
# Usage: bench/webhook/run.sh [N]   (default 10000 reviews)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/kaito-rs/target}
cargo run -q --release -p kaito-controller --example webhook_bench -- "${1:-10000}"
