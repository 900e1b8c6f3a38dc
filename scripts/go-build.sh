# Sourced by the install scripts that build tools from the Go module proxy
# (install-kube.sh, install-argo.sh, install-flagger.sh): their shared opening (the
# destination, the stamp check, Go on PATH, `say`), a line a minute while a long build
# runs, so a cold `make test` does not look hung, and their shared closing.

# abs_dir DIR: creates DIR and prints its absolute path.
abs_dir() {
  mkdir -p "$1" && (cd "$1" && pwd)
}

# up_to_date DEST WANT PATH...: true when DEST/VERSION reads WANT and every PATH exists,
# so a re-run with the same versions only compares the stamp.
up_to_date() {
  local dest=$1 want=$2 path
  shift 2
  [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$want" ] || return 1
  for path in "$@"; do [ -e "$path" ] || return 1; done
}

# go_begin NAME WHAT: Go on PATH (or one line saying to install it), `say` prefixed with
# NAME, and the `start` mark the ticker and go_done count from.
go_begin() {
  setup_name=$1
  export PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || { echo "install-$1: Go is needed to build $2; install golang-go" >&2; exit 1; }
  start=$SECONDS
}

say() { echo "swiftdeploy setup: $setup_name: $*"; }

# moddir MODULE@VERSION: downloads the module from the proxy and prints its directory.
moddir() { go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p'; }

# go_done DEST WANT SOURCE VERSION: records where the build came from and the stamp, and
# says how long it took and what the built tool says its version is.
go_done() {
  printf '%s\n' "$3" > "$1/SOURCE"
  echo "$2" > "$1/VERSION"
  say "done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $4"
}

# start_ticker WHAT: prints "still WHAT, N min" every minute until stop_ticker or the
# script exits.
start_ticker() {
  # The ticker kills its own sleep when stopped: a stray sleep would hold a piped stdout open.
  (
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 60 &
      nap=$!
      wait "$nap"
      say "still $1, $(( (SECONDS - start) / 60 )) min"
    done
  ) &
  ticker=$!
  trap 'kill "$ticker" 2>/dev/null || true' EXIT
}

stop_ticker() {
  kill "$ticker" 2>/dev/null || true
}
