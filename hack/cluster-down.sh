#!/usr/bin/env bash
# Stops what hack/cluster-up.sh started, in reverse order, by the PIDs it recorded (never by name).
# Keeps the logs; removes etcd data and certificates.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RUN=${KAITO_RUN_DIR:-$REPO/.k8s-run}
[ -d "$RUN/pids" ] || exit 0

stop() {
  local pidfile="$RUN/pids/$1.pid" pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
}

# processes started by tests or the demo record their PIDs here too (controller, provisioner, ...)
for f in "$RUN"/pids/*.pid; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .pid)
  case $name in etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kwok) ;; *) stop "$name" ;; esac
done
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$name"; done
rm -rf "$RUN/etcd" "$RUN/pki"
echo "[cluster-down] stopped; logs kept in $RUN/logs" >&2
