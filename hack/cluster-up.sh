#!/usr/bin/env bash
# Starts a real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (client-certificate auth, RBAC),
# kube-controller-manager, kube-scheduler and kwok (which keeps fake nodes and their pods Running).
# No container runtime, no network beyond loopback. Fails loudly, and stops what it started, when a step fails.
#
# Usage: hack/cluster-up.sh            (binaries from hack/k8s-bins.sh; state in $KAITO_RUN_DIR, default .k8s-run)
# Then:  source .k8s-run/env            (exports KUBECONFIG and PATH with kubectl/helm)
#        hack/cluster-down.sh
# Environment: KAITO_NODE_MONITOR_GRACE_PERIOD (default 40s): how long kube-controller-manager waits for a node
#              heartbeat before it marks the node NotReady and its pods not ready (kwok never makes such a pod
#              ready again). Benchmarks that load the machine raise it so late heartbeats strand nothing.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUN=${KAITO_RUN_DIR:-$REPO/.k8s-run}
BINS=$("$REPO/hack/k8s-bins.sh" | tail -n 1)

log() { printf '[cluster-up] %s\n' "$*" >&2; }
fail() {
  printf '[cluster-up] ERROR: %s\n' "$*" >&2
  for f in "$RUN"/logs/*.log; do
    [ -f "$f" ] || continue
    printf '\n----- last lines of %s -----\n' "$f" >&2
    tail -n 30 "$f" >&2
  done
  "$REPO/hack/cluster-down.sh" >&2 || true
  exit 1
}

if [ -f "$RUN/pids/kube-apiserver.pid" ] && kill -0 "$(cat "$RUN/pids/kube-apiserver.pid")" 2>/dev/null; then
  fail "a control plane is already running from $RUN; run hack/cluster-down.sh first"
fi
rm -rf "$RUN/etcd" "$RUN/pki" "$RUN/pids"
mkdir -p "$RUN"/{pki,logs,pids,etcd}
: > "$RUN/logs/.keep"
rm -f "$RUN"/logs/*.log
start_time=$(date +%s)

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port); API_PORT=$(free_port)
KCM_PORT=$(free_port); SCHED_PORT=$(free_port); KWOK_PORT=$(free_port)
cat > "$RUN/ports.env" <<EOF
ETCD_PORT=$ETCD_PORT
API_PORT=$API_PORT
KCM_PORT=$KCM_PORT
SCHED_PORT=$SCHED_PORT
KWOK_PORT=$KWOK_PORT
EOF

# --- certificates ---------------------------------------------------------------------------------------
(
  cd "$RUN/pki"
  openssl genrsa -out ca.key 2048
  openssl req -x509 -new -nodes -key ca.key -subj "/CN=kaito-test-ca" -days 3650 -out ca.crt
  openssl genrsa -out apiserver.key 2048
  openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out apiserver.crt -extfile apiserver.ext
  # client certificate in group system:masters, used by the control-plane components, kwok and the tests
  openssl genrsa -out admin.key 2048
  openssl req -new -key admin.key -subj "/O=system:masters/CN=kaito-test-admin" -out admin.csr
  printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out admin.crt -extfile client.ext
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
) > "$RUN/logs/pki.log" 2>&1 || fail "creating certificates with openssl"

cat > "$RUN/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kaito-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $RUN/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $RUN/pki/admin.crt
    client-key: $RUN/pki/admin.key
contexts:
- name: kaito-test
  context: {cluster: kaito-test, user: admin}
current-context: kaito-test
EOF

start() { # name, then command; logs to $RUN/logs/name.log, pid to $RUN/pids/name.pid
  local name=$1; shift
  "$@" > "$RUN/logs/$name.log" 2>&1 &
  echo $! > "$RUN/pids/$name.pid"
}
wait_for() { # what, seconds, name of the process that must stay alive, then the check command
  local what=$1 limit=$2 proc=$3; shift 3
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$RUN/pids/$proc.pid")" 2>/dev/null || fail "$proc exited while waiting for $what (see $RUN/logs/$proc.log)"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what not ready after ${limit}s"
    sleep 0.5
  done
  log "$what ready after $(( $(date +%s) - start_time ))s"
}

# --- etcd ----------------------------------------------------------------------------------------------
start etcd "$BINS/etcd" --name=node0 --data-dir="$RUN/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="node0=http://127.0.0.1:$ETCD_PEER_PORT" \
  --auto-compaction-retention=1 --quota-backend-bytes=8589934592 --unsafe-no-fsync=true
wait_for etcd 20 etcd curl -fs "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver -------------------------------------------------------------------------------------
advertise=()
ip route show default 2>/dev/null | grep -q . || advertise=(--advertise-address=203.0.113.10)  # never contacted
start kube-apiserver "$BINS/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" --etcd-prefix=/registry \
  --bind-address=127.0.0.1 --secure-port="$API_PORT" "${advertise[@]}" \
  --endpoint-reconciler-type=none \
  --tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
  --client-ca-file="$RUN/pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$RUN/pki/sa.pub" --service-account-signing-key-file="$RUN/pki/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=Node,RBAC --allow-privileged=true \
  --enable-priority-and-fairness=false --max-requests-inflight=0 --max-mutating-requests-inflight=0
CURL_API=(curl -fs --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key")
wait_for kube-apiserver 90 kube-apiserver "${CURL_API[@]}" "https://127.0.0.1:$API_PORT/readyz"

# --- controller-manager and scheduler -----------------------------------------------------------------
start kube-controller-manager "$BINS/kube-controller-manager" --kubeconfig="$RUN/admin.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --leader-elect=false \
  --root-ca-file="$RUN/pki/ca.crt" --service-account-private-key-file="$RUN/pki/sa.key" \
  --use-service-account-credentials=true \
  --node-monitor-period=5s --node-monitor-grace-period="${KAITO_NODE_MONITOR_GRACE_PERIOD:-40s}"
start kube-scheduler "$BINS/kube-scheduler" --kubeconfig="$RUN/admin.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
  --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --leader-elect=false
wait_for kube-controller-manager 60 kube-controller-manager curl -fsk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for kube-scheduler 60 kube-scheduler curl -fsk "https://127.0.0.1:$SCHED_PORT/healthz"

# --- kwok: keeps nodes annotated kwok.x-k8s.io/node=fake Ready, and their pods Running ---------------
STAGE="$BINS/kwok-stage"
{
  # a config file replaces kwok's built-in defaults, so every parallelism must be given
  printf 'apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  cidr: 10.244.0.0/16\n  nodeLeaseDurationSeconds: 40\n  nodeLeaseParallelism: 4\n  podPlayStageParallelism: 4\n  nodePlayStageParallelism: 4\n  podsOnNodeSyncParallelism: 2\n  enablePodsOnNodeSyncListPager: true\n  enablePodsOnNodeSyncStreamWatch: false\n'
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$STAGE/$f" ] || fail "kwok stage file $STAGE/$f is missing; rebuild with hack/k8s-bins.sh"
    echo '---'
    if [ "$f" = pod/fast/pod-ready.yaml ]; then
      # pods with simulated failures (hack/kwok-stages) must never become Ready
      awk '{print} /^    matchExpressions:$/ && !done {print "    - key: '"'"'.metadata.annotations[\"kaito.sh/simulate-container-state\"]'"'"'"; print "      operator: '"'"'DoesNotExist'"'"'"; done=1}' "$STAGE/$f"
    else
      cat "$STAGE/$f"
    fi
  done
  # project stages: failure injection for pods (see docs/development.md)
  for f in "$REPO"/hack/kwok-stages/*.yaml; do [ -f "$f" ] && { echo '---'; cat "$f"; }; done
} > "$RUN/kwok.yaml"
start kwok "$BINS/kwok" --kubeconfig="$RUN/admin.kubeconfig" --config="$RUN/kwok.yaml" \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --server-address="127.0.0.1:$KWOK_PORT" \
  --cidr=10.244.0.0/16 --node-lease-duration-seconds=40
wait_for kwok 30 kwok curl -fs "http://127.0.0.1:$KWOK_PORT/healthz"

cat > "$RUN/env" <<EOF
export KUBECONFIG=$RUN/admin.kubeconfig
export PATH=$BINS:\$PATH
export KAITO_K8S_BINS=$BINS
EOF
export KUBECONFIG=$RUN/admin.kubeconfig
KUBECTL="$BINS/kubectl"

# --- probe: a fake node must go Ready and lose the not-ready taint (proves KCM + kwok) ----------------
"$REPO/hack/add-gpu-node.sh" kaito-probe-node Standard_NC24ads_A100_v4 >/dev/null || fail "creating the probe node"
node_ready() {
  [ "$("$KUBECTL" get node kaito-probe-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
    ! "$KUBECTL" get node kaito-probe-node -o jsonpath='{.spec.taints[*].key}' | grep -q node.kubernetes.io/not-ready
}
wait_for "fake node Ready without the not-ready taint" 60 kwok node_ready
"$KUBECTL" delete node kaito-probe-node --wait=true >/dev/null || fail "deleting the probe node"
# the default ServiceAccount must exist before pods can be created
wait_for "default ServiceAccount" 60 kube-controller-manager "$KUBECTL" get serviceaccount default -n default

log "control plane up in $(( $(date +%s) - start_time ))s; run: source $RUN/env"
