#!/usr/bin/env bash
# Builds Flagger (the canary controller) the judge's Flagger end-to-end test starts against
# the test control plane, from the Go module proxy, and copies its CRDs (the module's
# artifacts/flagger/crd.yaml) next to it.
#
# Flagger's go.mod has no replace directives and asks for Go 1.21, so a plain
# `go install ...@version` with the machine's Go builds it. A stamp records what was
# built: a re-run with the same version only compares the stamp. Go's build cache is
# kept, so a rebuild on the same machine takes seconds rather than the ~6 minutes of a
# cold build (343 s measured at nice 19 on 2 busy cores).
set -euo pipefail
FLAGGER_VERSION=v1.36.1
dest="${1:?usage: install-flagger.sh DEST_DIR}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
stamp="$dest/VERSION"
want="flagger $FLAGGER_VERSION"
bin="$dest/bin/flagger"
if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dest/crds/crd.yaml" ]; then
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "install-flagger: Go is needed to build Flagger; install golang-go" >&2; exit 1; }
# The module proxy is the only source: never let go fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# shellcheck source=scripts/ticker.sh
source "$(dirname "$0")/ticker.sh"
say() { echo "swiftdeploy setup: flagger: $*"; }
start=$SECONDS
say "building Flagger $FLAGGER_VERSION with $(go version | cut -d' ' -f3) (first time about 6 minutes on 2 cores; a rebuild reuses Go's cache and takes seconds)"

say "downloading github.com/fluxcd/flagger@$FLAGGER_VERSION"
src="$(go mod download -json "github.com/fluxcd/flagger@$FLAGGER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
[ -n "$src" ] && [ -f "$src/artifacts/flagger/crd.yaml" ] || {
  echo "install-flagger: the module proxy did not give github.com/fluxcd/flagger@$FLAGGER_VERSION" >&2
  exit 1
}
say "compiling flagger (progress: one line per minute)"
start_ticker compiling
mkdir -p "$dest/bin"
GOBIN="$dest/bin" go install -trimpath -ldflags "-s -w" "github.com/fluxcd/flagger/cmd/flagger@$FLAGGER_VERSION"
stop_ticker

say "copying the CRDs"
mkdir -p "$dest/crds"
install -m 0644 "$src/artifacts/flagger/crd.yaml" "$dest/crds/crd.yaml"
printf 'source: go module proxy, github.com/fluxcd/flagger@%s, built with %s\n' \
  "$FLAGGER_VERSION" "$(go version | cut -d' ' -f3)" > "$dest/SOURCE"
echo "$want" > "$stamp"
say "done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $("$bin" -version)"
