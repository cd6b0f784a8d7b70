#!/usr/bin/env bash
# The local demo: a real control plane on 127.0.0.1 with simulated GPU nodes, the KAITO controller and the
# kwok node provisioner, and an example Workspace driven to WorkspaceSucceeded=True.
#
# Usage: hack/demo.sh [WORKSPACE_YAML]   (default examples/inference/kaito_workspace_phi_4_mini.yaml)
# The control plane, controller and provisioner keep running afterwards; `make down` stops them all.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaito-rs/target}
RUN=${KAITO_RUN_DIR:-$REPO/.k8s-run}
export KAITO_RUN_DIR=$RUN
EXAMPLE=${1:-examples/inference/kaito_workspace_phi_4_mini.yaml}
t0=$(date +%s)
step() { printf '\n[demo] %s (t=%ss)\n' "$*" "$(( $(date +%s) - t0 ))"; }

step "building kaito-controller and kaito-provisioner"
cargo build -q -p kaito-controller -p kaito-provisioner -p kaito-cli
BIN="$CARGO_TARGET_DIR/debug"

if [ -f "$RUN/pids/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/pids/kube-apiserver.pid")" 2>/dev/null; then
  step "reusing the running control plane in $RUN"
else
  step "starting the local control plane"
  hack/cluster-up.sh
fi
source "$RUN/env"

step "installing the KAITO CRDs and Karpenter's NodeClaim CRD"
kubectl apply --server-side --field-manager=kaito-demo -f config/crd/ -f "$KAITO_K8S_BINS/karpenter-crds/" >/dev/null
kubectl wait --for condition=established --timeout=30s crd/workspaces.kaito.sh crd/nodeclaims.karpenter.sh >/dev/null

start() { # name, command...: a background process that cluster-down.sh stops
  local name=$1; shift
  if [ -f "$RUN/pids/$name.pid" ] && kill -0 "$(cat "$RUN/pids/$name.pid")" 2>/dev/null; then
    kill "$(cat "$RUN/pids/$name.pid")"; sleep 1
  fi
  "$@" > "$RUN/logs/$name.log" 2>&1 &
  echo $! > "$RUN/pids/$name.pid"
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
CONTROLLER_PORT=$(free_port); PROVISIONER_PORT=$(free_port)
step "starting kaito-provisioner (simulated cloud: kwok nodes) and kaito-controller"
start kaito-provisioner "$BIN/kaito-provisioner" --cloud-provider kwok --metrics-addr "127.0.0.1:$PROVISIONER_PORT"
start kaito-controller "$BIN/kaito-controller" --node-provisioner azure-gpu-provisioner --metrics-addr "127.0.0.1:$CONTROLLER_PORT"
for port in "$PROVISIONER_PORT" "$CONTROLLER_PORT"; do
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null || { tail -n 30 "$RUN"/logs/kaito-*.log; echo "[demo] an operator did not start" >&2; exit 1; }
done

NAME=$(sed -n 's/^  name: *//p' "$EXAMPLE" | head -n 1)
step "the sizing plan, before any GPU is bought"
"$BIN/kaito" validate -f "$EXAMPLE" || true
MODEL=$(sed -n 's/^    name: *//p' "$EXAMPLE" | head -n 1)
SKU=$(sed -n 's/^  instanceType: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' "$EXAMPLE" | head -n 1)
[ -n "$MODEL" ] && [ -n "$SKU" ] && "$BIN/kaito" plan "$MODEL" --instance-type "$SKU" || true

step "applying $EXAMPLE"
kubectl apply -f "$EXAMPLE"
if ! kubectl wait --for=condition=WorkspaceSucceeded --timeout=120s "workspace/$NAME"; then
  kubectl get workspace "$NAME" -o yaml
  tail -n 30 "$RUN"/logs/kaito-*.log
  exit 1
fi

step "what the operator made"
kubectl get workspace,nodeclaims,nodes,statefulsets,services
echo
echo "[demo] time from creation to each phase (status.phases):"
kubectl get workspace "$NAME" -o jsonpath='{range .status.phases[*]}  {.name}: {.secondsSinceCreation}s{"\n"}{end}'
echo
echo "[demo] controller metrics: http://127.0.0.1:$CONTROLLER_PORT/metrics   provisioner: http://127.0.0.1:$PROVISIONER_PORT/metrics"
echo "[demo] source $RUN/env to use kubectl; make down stops everything"
