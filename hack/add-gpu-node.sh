#!/usr/bin/env bash
# Adds a fake GPU node that kwok keeps Ready: instance-type label, nvidia.com/gpu capacity, NVIDIA GPU Feature
# Discovery labels, and the sku=gpu:NoSchedule taint GPU nodes carry.
#
# Usage: hack/add-gpu-node.sh NAME [INSTANCE_TYPE] [GPU_COUNT] [GPU_MEMORY_MIB] [extra label k=v ...]
#   defaults: Standard_NC24ads_A100_v4, 1 GPU, 81920 MiB (A100 80GB)
# Needs KUBECONFIG (source .k8s-run/env).
set -euo pipefail

NAME=${1:?usage: add-gpu-node.sh NAME [INSTANCE_TYPE] [GPU_COUNT] [GPU_MEMORY_MIB] [k=v ...]}
SKU=${2:-Standard_NC24ads_A100_v4}
GPUS=${3:-1}
MEM_MIB=${4:-81920}
shift $(( $# < 4 ? $# : 4 ))

REPO=$(cd "$(dirname "$0")/.." && pwd)
KUBECTL=kubectl
command -v kubectl >/dev/null || KUBECTL="$("$REPO/hack/k8s-bins.sh" | tail -n 1)/kubectl"

extra=""
for kv in "$@"; do extra="$extra    \"${kv%%=*}\": \"${kv#*=}\"\n"; done

printf '%b' "apiVersion: v1
kind: Node
metadata:
  name: $NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: \"0\"
  labels:
    kubernetes.io/hostname: $NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    node.kubernetes.io/instance-type: $SKU
    nvidia.com/gpu.present: \"true\"
    nvidia.com/gpu.product: NVIDIA-A100-PCIE-80GB
    nvidia.com/gpu.count: \"$GPUS\"
    nvidia.com/gpu.memory: \"$MEM_MIB\"
$extra
spec:
  taints:
  - {key: sku, value: gpu, effect: NoSchedule}
status:
  capacity: {cpu: \"24\", memory: 220Gi, ephemeral-storage: 1Ti, pods: \"110\", nvidia.com/gpu: \"$GPUS\"}
  allocatable: {cpu: \"24\", memory: 220Gi, ephemeral-storage: 1Ti, pods: \"110\", nvidia.com/gpu: \"$GPUS\"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake,
             containerRuntimeVersion: fake, kernelVersion: fake, osImage: '', machineID: '', systemUUID: '', bootID: ''}
  phase: Running
" | "$KUBECTL" apply -f -
