#!/usr/bin/env bash
# The local demo: a real control plane on 127.0.0.1, KAITO's CRDs, and an example Workspace.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaito-rs/target}
RUN=${KAITO_RUN_DIR:-$REPO/.k8s-run}

if [ -f "$RUN/env" ] && [ -f "$RUN/pids/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/pids/kube-apiserver.pid")" 2>/dev/null; then
  echo "[demo] reusing the running control plane in $RUN (make down stops it)"
else
  hack/cluster-up.sh
fi
source "$RUN/env"

echo "[demo] installing CRDs from config/crd"
kubectl apply --server-side --field-manager=kaito-demo -f config/crd/ >/dev/null
kubectl wait --for condition=established --timeout=30s crd/workspaces.kaito.sh crd/ragengines.kaito.sh crd/inferencesets.kaito.sh >/dev/null

echo "[demo] applying examples/inference/kaito_workspace_phi_4_mini.yaml"
kubectl apply -f examples/inference/kaito_workspace_phi_4_mini.yaml
echo
kubectl get workspace
echo
echo "[demo] the control plane keeps running: source $RUN/env to use kubectl; make down stops it"
