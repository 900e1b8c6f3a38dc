#!/usr/bin/env bash
# Builds the Kubernetes control plane the kubernetes tests start: kube-apiserver,
# kube-controller-manager and kube-scheduler, plus kwok (fake nodes), from the Go module
# proxy, and copies kwok's stage definitions and the Gateway API standard CRDs next to
# them. etcd comes from Debian's etcd-server (scripts/install-system.sh).
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
GATEWAY_API_VERSION=v1.6.3
dest="${1:?usage: install-kube.sh DEST_DIR}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
stamp="$dest/VERSION"
want="kubernetes $KUBE_VERSION kwok $KWOK_VERSION gateway-api $GATEWAY_API_VERSION"
bins=(kube-apiserver kube-controller-manager kube-scheduler kwok)
ready=1
for b in "${bins[@]}"; do [ -x "$dest/bin/$b" ] || ready=0; done
if [ "$ready" = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "install-kube: Go is needed to build the control plane; install golang-go" >&2; exit 1; }
# The module proxy is the only source: never let go fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
say() { echo "swiftdeploy setup: kube: $*"; }
start=$SECONDS
say "building Kubernetes $KUBE_VERSION and kwok $KWOK_VERSION with $(go version | cut -d' ' -f3) (first time about 15 minutes on 2 cores; a rebuild reuses Go's cache)"

moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'; }
say "downloading k8s.io/kubernetes@$KUBE_VERSION"
kube_src="$(moddir "k8s.io/kubernetes@$KUBE_VERSION")"
# The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/<name>; each is
# published on the proxy at the matching v0.x version.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*#\1#p' "$kube_src/go.mod")
[ "${#staging[@]}" -gt 20 ] || { echo "install-kube: found only ${#staging[@]} staging modules in $kube_src/go.mod; the replace block changed shape" >&2; exit 1; }
say "${#staging[@]} staging modules pinned at $STAGING_VERSION"

work="$dest/build"
mkdir -p "$work"
{
  echo "module swiftdeploy.local/kubebuild"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
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
(while sleep 60; do say "still compiling, $(( (SECONDS - start) / 60 )) min"; done) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null || true' EXIT
# Without the version stamps the server reports v0.0.0-master and clients refuse it.
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
mkdir -p "$dest/bin"
(cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$dest/bin/" "${pkgs[@]}")
kill "$ticker" 2>/dev/null || true

say "copying kwok stages and Gateway API $GATEWAY_API_VERSION CRDs"
kwok_src="$(cd "$work" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
mkdir -p "$dest/stages"
for s in node-initialize node-heartbeat-with-lease pod-ready pod-complete pod-delete; do
  f="$(find "$kwok_src/kustomize/stage" -name "$s.yaml" | head -n1)"
  [ -n "$f" ] || { echo "install-kube: kwok $KWOK_VERSION has no stage $s.yaml under kustomize/stage" >&2; exit 1; }
  install -m 0644 "$f" "$dest/stages/$s.yaml"
done
gw_src="$(moddir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
rm -rf "$dest/gateway-api-crds"
mkdir -p "$dest/gateway-api-crds"
install -m 0644 "$gw_src"/config/crd/standard/*.yaml "$dest/gateway-api-crds/"

printf 'source: go module proxy, k8s.io/kubernetes@%s (staging %s), sigs.k8s.io/kwok@%s, sigs.k8s.io/gateway-api@%s, built with %s\n' \
  "$KUBE_VERSION" "$STAGING_VERSION" "$KWOK_VERSION" "$GATEWAY_API_VERSION" "$(go version | cut -d' ' -f3)" > "$dest/SOURCE"
echo "$want" > "$stamp"
say "done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $("$dest/bin/kube-apiserver" --version)"
