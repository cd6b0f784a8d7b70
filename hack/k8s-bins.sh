#!/usr/bin/env bash
# Builds the local control-plane binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok, helm) from the Go module proxy at pinned versions, into a cache directory outside the
# repository keyed by every version. A second run with the same key builds nothing.
#
# Prints the directory that holds the binaries on its last line of stdout.
# Environment:
#   KAITO_K8S_BINS   use binaries already built in this directory (skips everything; checked, not trusted)
#   KAITO_CACHE_DIR  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/kaito-rs)
set -euo pipefail

K8S_VERSION=1.36.3
ETCD_VERSION=3.6.16
KWOK_VERSION=0.8.0
HELM_VERSION=3.21.4
HELM_K8S_MINOR=36   # minor of helm's own client-go, as helm's Makefile stamps it
KARPENTER_VERSION=1.14.1  # only its CRDs (NodeClaim, NodePool) are used

log() { printf '[k8s-bins] %s\n' "$*" >&2; }
die() { printf '[k8s-bins] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH; install Go >= 1.26 (https://go.dev/doc/install)"

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)

check_dir() { # dir -> 0 when every binary is there and the apiserver reports the pinned version
  local d=$1 b
  for b in "${BINARIES[@]}"; do [ -x "$d/$b" ] || return 1; done
  [ -f "$d/karpenter-crds/karpenter.sh_nodeclaims.yaml" ] || return 1
  "$d/kube-apiserver" --version 2>/dev/null | grep -q "Kubernetes v$K8S_VERSION" || return 1
}

if [ -n "${KAITO_K8S_BINS:-}" ]; then
  check_dir "$KAITO_K8S_BINS" || die "KAITO_K8S_BINS=$KAITO_K8S_BINS lacks one of ${BINARIES[*]} or is not Kubernetes v$K8S_VERSION"
  log "using prebuilt binaries from KAITO_K8S_BINS"
  echo "$KAITO_K8S_BINS"; exit 0
fi

CACHE=${KAITO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kaito-rs}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_$(go env GOVERSION)_$(go env GOARCH)"
OUT="$CACHE/bins/$KEY"
BUILD="$CACHE/build"
if ! [ -f "$OUT/karpenter-crds/karpenter.sh_nodeclaims.yaml" ] && [ -x "$OUT/kube-apiserver" ]; then
  mkdir -p "$BUILD"
  src=$(cd "$BUILD" && go mod download -json "sigs.k8s.io/karpenter@v$KARPENTER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  mkdir -p "$OUT/karpenter-crds" && cp "$src"/pkg/apis/crds/karpenter.sh_node{claims,pools}.yaml "$OUT/karpenter-crds/" && chmod -R u+w "$OUT/karpenter-crds"
fi
if check_dir "$OUT"; then
  log "cache hit: $OUT"
  echo "$OUT"; exit 0
fi

BUILD="$CACHE/build"
TMP="$OUT.tmp"
mkdir -p "$BUILD" "$TMP"
step_start=0
step() { step_start=$(date +%s); log "$*"; }
step_done() { log "  done in $(( $(date +%s) - step_start ))s"; }

# --- kube-apiserver, kube-controller-manager, kube-scheduler, kubectl --------------------------------
if ! [ -x "$TMP/kube-apiserver" ] || ! [ -x "$TMP/kubectl" ]; then
  step "building Kubernetes v$K8S_VERSION (apiserver, controller-manager, scheduler, kubectl)"
  SV="v0.${K8S_VERSION#1.}"; MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
  rm -rf "$BUILD/k8sbins"; mkdir -p "$BUILD/k8sbins"; cd "$BUILD/k8sbins"
  go mod init local/k8sbins >/dev/null 2>&1
  UPSTREAM_GOMOD=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
  [ -f "$UPSTREAM_GOMOD" ] || die "could not download k8s.io/kubernetes@v$K8S_VERSION from the Go module proxy"
  # every staging module k8s.io/kubernetes replaces with ./staging/... must be pinned to the same v0.N.P.
  # Only replace lines: a require line would force downloading staging modules outside the build graph,
  # and some (k8s.io/sample-cli-plugin) are not served by the proxy.
  mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$UPSTREAM_GOMOD" | sort -u)
  [ -n "$mods" ] || die "found no staging modules in $UPSTREAM_GOMOD"
  args=()
  for m in $mods; do args+=("-replace=$m=$m@$SV"); done
  go mod edit "${args[@]}"
  go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@v$K8S_VERSION" >&2
  LDF="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    LDF="$LDF -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$MINOR -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go build -trimpath -ldflags "$LDF" -o "$TMP/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  "$TMP/kube-apiserver" --version | grep -q "Kubernetes v$K8S_VERSION" || die "kube-apiserver reports the wrong version"
  step_done
fi

# --- etcd (its module has replace directives, so it needs a wrapper module) --------------------------
if ! [ -x "$TMP/etcd" ]; then
  step "building etcd v$ETCD_VERSION"
  rm -rf "$BUILD/etcdbuild"; mkdir -p "$BUILD/etcdbuild"; cd "$BUILD/etcdbuild"
  go mod init local/etcdbuild >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3
  "$TMP/etcd" --version | grep -q "$ETCD_VERSION" || die "etcd reports the wrong version"
  step_done
fi

# --- kwok and helm ------------------------------------------------------------------------------------
if ! [ -x "$TMP/kwok" ]; then
  step "building kwok v$KWOK_VERSION"
  GOBIN="$TMP" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  step_done
fi
if ! [ -x "$TMP/helm" ]; then
  step "building helm v$HELM_VERSION"
  GOBIN="$TMP" go install -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  step_done
fi

add_karpenter_crds() { # dir: Karpenter's CRDs, from its Go module (the project does not vendor them)
  local src
  src=$(cd "$BUILD" && go mod download -json "sigs.k8s.io/karpenter@v$KARPENTER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  [ -f "$src/pkg/apis/crds/karpenter.sh_nodeclaims.yaml" ] || die "Karpenter CRDs not found in sigs.k8s.io/karpenter@v$KARPENTER_VERSION"
  rm -rf "$1/karpenter-crds"; mkdir -p "$1/karpenter-crds"
  cp "$src/pkg/apis/crds/karpenter.sh_nodeclaims.yaml" "$src/pkg/apis/crds/karpenter.sh_nodepools.yaml" "$1/karpenter-crds/"
  chmod -R u+w "$1/karpenter-crds"
}
add_karpenter_crds "$TMP"

# kwok's stage definitions ship in its module source; keep a copy beside the binaries
KWOK_SRC="$(go env GOMODCACHE)/sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
[ -d "$KWOK_SRC" ] || (cd "$BUILD" && go mod download "sigs.k8s.io/kwok@v$KWOK_VERSION")
[ -d "$KWOK_SRC" ] || die "kwok stage files not found at $KWOK_SRC"
rm -rf "$TMP/kwok-stage"; cp -r "$KWOK_SRC" "$TMP/kwok-stage"; chmod -R u+w "$TMP/kwok-stage"

check_dir "$TMP" || die "built binaries in $TMP failed the final check"
rm -rf "$OUT"; mv "$TMP" "$OUT"
log "binaries ready in $OUT"
echo "$OUT"
