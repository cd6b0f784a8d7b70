# Entry points. Everything runs on 127.0.0.1 with binaries built from source (see docs/development.md).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/kaito-rs/target

.PHONY: demo test down crds lint

## demo: start the local control plane and deploy an example Workspace (leaves the cluster running; `make down` stops it)
demo:
	hack/demo.sh

## test: lint, unit, integration and end-to-end tests against a fresh local control plane
test:
	hack/test.sh

## down: stop the demo control plane
down:
	hack/cluster-down.sh

## crds: regenerate config/crd from the Rust types (and the Helm chart's copy)
crds:
	cargo run -q -p kaito-api --bin crdgen
	cp config/crd/*.yaml charts/kaito/crds/

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --features kaito-tests/cluster -- -D warnings
