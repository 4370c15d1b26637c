#!/usr/bin/env bash
# Build the real Kubernetes control plane (tools/kube, a Go module of its own) into OUT_DIR:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes v1.37.2),
# etcd (go.etcd.io/etcd/server/v3) and kwok (the fake-node controller). Reuses the default Go
# module and build caches; GOTOOLCHAIN=local so the go command never fetches another toolchain.
set -euo pipefail
out_dir=$(realpath -m "${1:?usage: build-kube.sh OUT_DIR}")
root=$(cd "$(dirname "$0")/.." && pwd)
go_bin=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$go_bin" ]; then echo "build-kube: no go command on PATH or at /usr/local/go/bin/go" >&2; exit 2; fi
kube_version=v1.37.2
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=37"
  version_flags+=" -X $pkg.gitTreeState=clean"
done
mkdir -p "$out_dir"
cd "$root/tools/kube"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
"$go_bin" build -trimpath -ldflags "-s -w$version_flags" -o "$out_dir/" \
  ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler ./cmd/kubectl \
  ./cmd/etcd ./cmd/kwok
