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
# shellcheck source=scripts/go-build.sh
source "$(dirname "$0")/go-build.sh"
dest="$(abs_dir "${1:?usage: install-flagger.sh DEST_DIR}")"
want="flagger $FLAGGER_VERSION"
bin="$dest/bin/flagger"
up_to_date "$dest" "$want" "$bin" "$dest/crds/crd.yaml" && exit 0

go_begin flagger Flagger
# The module proxy is the only source: never let go fetch another toolchain.
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
say "building Flagger $FLAGGER_VERSION with $(go version | cut -d' ' -f3) (first time about 6 minutes on 2 cores; a rebuild reuses Go's cache and takes seconds)"

say "downloading github.com/fluxcd/flagger@$FLAGGER_VERSION"
src="$(moddir "github.com/fluxcd/flagger@$FLAGGER_VERSION")"
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
go_done "$dest" "$want" \
  "source: go module proxy, github.com/fluxcd/flagger@$FLAGGER_VERSION, built with $(go version | cut -d' ' -f3)" \
  "$("$bin" -version)"
