#!/usr/bin/env bash
# Builds a pinned OPA into a project-local bin directory from the Go module proxy.
# First `go install module@version`; when a release's go.mod carries replace
# directives (which `go install pkg@version` refuses), the module is downloaded
# with `go mod download` and built from a writable copy instead. The binary is
# cached: a re-run with the same version does nothing.
set -euo pipefail
version="${1:?usage: install-opa.sh VERSION BINDIR}"
bindir="${2:?usage: install-opa.sh VERSION BINDIR}"
mkdir -p "$bindir"
bindir="$(cd "$bindir" && pwd)"
target="$bindir/opa"
# Output is captured before it is matched: with pipefail, a reader that stops early
# (grep -q, head) makes opa die of SIGPIPE and the whole pipeline fail (exit 141).
if [ -x "$target" ] && [[ "$("$target" version 2>/dev/null)" == *"Version: ${version#v}"$'\n'* ]]; then
  exit 0
fi
export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "install-opa: Go is needed to build OPA; install golang-go or put an opa binary at $target" >&2; exit 1; }
module=github.com/open-policy-agent/opa
echo "swiftdeploy setup: building OPA $version with $(go version | cut -d' ' -f3) (first time only, about 2 minutes)"
if GOBIN="$bindir" CGO_ENABLED=0 go install "$module@$version" 2>/tmp/opa-install.$$; then
  rm -f /tmp/opa-install.$$
else
  echo "install-opa: go install failed ($(tail -n1 /tmp/opa-install.$$)); building from the downloaded module" >&2
  rm -f /tmp/opa-install.$$
  dir="$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  work="$(mktemp -d)"
  trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  (cd "$work" && CGO_ENABLED=0 go build -o "$target" .)
fi
printf '%s\n' "source: go module proxy, $module@$version, built with $(go version | cut -d' ' -f3)" > "$bindir/opa.source"
installed="$("$target" version)"
echo "${installed%%$'\n'*}"
