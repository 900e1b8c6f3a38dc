#!/usr/bin/env bash
# Builds the Kubernetes control plane the kubernetes tests start: kube-apiserver,
# kube-controller-manager and kube-scheduler, kwok (fake nodes) and etcd, from the Go
# module proxy, and copies kwok's stage definitions and the Gateway API standard CRDs
# next to them. etcd is 3.6, not Debian's 3.4.23: the API server needs etcd's watch
# progress notifications (3.4.31+) for watch lists, and without them kwok notices new
# pods only on a relist, seconds late.
#
# `go install k8s.io/kubernetes/cmd/...@v` is refused (its go.mod has replace
# directives), so the script writes a scratch module that requires k8s.io/kubernetes and
# repeats its replace block with the staging modules' published versions, then builds
# all four binaries in one `go build`. A stamp records what was built: a re-run with
# the same versions only compares the stamp. Go's build cache is kept, so a rebuild on
# the same machine takes a minute rather than the ~15 of a cold build.
set -euo pipefail
KUBE_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
KWOK_VERSION=v0.8.0
ETCD_VERSION=v3.6.16
GATEWAY_API_VERSION=v1.6.3
# shellcheck source=scripts/go-build.sh
source "$(dirname "$0")/go-build.sh"
dest="$(abs_dir "${1:?usage: install-kube.sh DEST_DIR}")"
want="kubernetes $KUBE_VERSION kwok $KWOK_VERSION etcd $ETCD_VERSION gateway-api $GATEWAY_API_VERSION"
bins=(kube-apiserver kube-controller-manager kube-scheduler kwok etcd)
up_to_date "$dest" "$want" "${bins[@]/#/$dest/bin/}" && exit 0

go_begin kube "the control plane"
# The module proxy is the only source: never let go fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
say "building Kubernetes $KUBE_VERSION, kwok $KWOK_VERSION and etcd $ETCD_VERSION with $(go version | cut -d' ' -f3) (first time about 15 minutes on 2 cores; a rebuild reuses Go's cache)"

say "downloading k8s.io/kubernetes@$KUBE_VERSION"
kube_src="$(moddir "k8s.io/kubernetes@$KUBE_VERSION")"
need="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$kube_src/go.mod" | head -n1)"
have="$(go env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "install-kube: Kubernetes $KUBE_VERSION needs Go >= $need but $(command -v go) is Go $have; install a newer Go under /usr/local/go and re-run" >&2
  exit 1
fi
# The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/<name>; each is
# published on the proxy at the matching v0.x version.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*#\1#p' "$kube_src/go.mod")
[ "${#staging[@]}" -gt 20 ] || { echo "install-kube: found only ${#staging[@]} staging modules in $kube_src/go.mod; the replace block changed shape" >&2; exit 1; }
say "${#staging[@]} staging modules pinned at $STAGING_VERSION"

# A scratch module per build: go.mod, go.sum and the go get log (the sources stay in
# Go's module cache, the objects in its build cache).
scratch() {
  echo "module swiftdeploy.local/$(basename "$1")build"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
}
work="$dest/build/kube"
etcd_work="$dest/build/etcd"
mkdir -p "$work" "$etcd_work"
{
  scratch "$work"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} > "$work/go.mod"
rm -f "$work/go.sum"
pkgs=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  sigs.k8s.io/kwok/cmd/kwok
)
say "resolving modules"
(cd "$work" && go get "k8s.io/kubernetes@$KUBE_VERSION" "sigs.k8s.io/kwok@$KWOK_VERSION" >/dev/null 2>"$work/get.log") \
  || { cat "$work/get.log" >&2; exit 1; }
say "compiling ${bins[*]} (progress: one line per minute)"
start_ticker compiling
# Without the version stamps the server reports v0.0.0-master and clients refuse it.
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
mkdir -p "$dest/bin"
(cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$dest/bin/" "${pkgs[@]}")

# etcd's own module graph differs from Kubernetes' (it would move etcd's client to the
# 3.7 the API server requires), so it is built in a module of its own.
scratch "$etcd_work" > "$etcd_work/go.mod"
say "compiling etcd $ETCD_VERSION"
(cd "$etcd_work" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>"$etcd_work/get.log") \
  || { cat "$etcd_work/get.log" >&2; exit 1; }
(cd "$etcd_work" && go build -trimpath -ldflags "-s -w" -o "$dest/bin/etcd" go.etcd.io/etcd/server/v3)
stop_ticker

say "copying kwok stages and Gateway API $GATEWAY_API_VERSION CRDs"
kwok_src="$(cd "$work" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
mkdir -p "$dest/stages"
# The "fast" stages: a node becomes Ready at once, pods Running and Ready at once.
for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
  pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  install -m 0644 "$kwok_src/kustomize/stage/$s.yaml" "$dest/stages/${s##*/}.yaml"
done
gw_src="$(moddir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
rm -rf "$dest/gateway-api-crds"
mkdir -p "$dest/gateway-api-crds"
install -m 0644 "$gw_src"/config/crd/standard/*.yaml "$dest/gateway-api-crds/"

go_done "$dest" "$want" \
  "source: go module proxy, k8s.io/kubernetes@$KUBE_VERSION (staging $STAGING_VERSION), sigs.k8s.io/kwok@$KWOK_VERSION, go.etcd.io/etcd/server/v3@$ETCD_VERSION, sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION, built with $(go version | cut -d' ' -f3)" \
  "$("$dest/bin/kube-apiserver" --version)"
