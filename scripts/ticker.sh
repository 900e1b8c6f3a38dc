# Sourced by the install scripts: a line a minute while a long build runs, so a cold
# `make test` does not look hung. Needs `say` and `start` (a $SECONDS mark) defined.
# start_ticker WHAT: prints "still WHAT, N min" every minute until the script exits.
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
