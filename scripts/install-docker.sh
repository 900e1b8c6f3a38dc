#!/usr/bin/env bash
# The Docker engine for `runtime: docker`: Debian's docker.io (dockerd, containerd,
# runc) and debootstrap (which builds the demo image's base without a registry).
# These machines have no systemd, so dockerd is started here as a background process
# when nothing answers on its socket.
#
#   install-docker.sh          install what is missing, then start dockerd if needed
#   install-docker.sh start    only start dockerd if needed (what a test session calls)
#
# A re-run on a ready machine costs a few `command -v` checks and one ping.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

SOCKET=/var/run/docker.sock
LOG=/var/log/swiftdeploy-dockerd.log

engine_answers() {
  [ -S "$SOCKET" ] && curl -sf --max-time 2 --unix-socket "$SOCKET" http://localhost/_ping >/dev/null 2>&1
}

install_missing() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

start_engine() {
  engine_answers && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "swiftdeploy setup: the Docker engine does not answer on $SOCKET; start dockerd as root" >&2
    exit 1
  fi
  echo "swiftdeploy setup: starting dockerd (log: $LOG)"
  # setsid: the daemon outlives this script and make's process group.
  setsid dockerd >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 1 300); do
    engine_answers && return 0
    sleep 0.1
  done
  echo "swiftdeploy setup: dockerd did not answer on $SOCKET within 30s; see $LOG" >&2
  exit 1
}

case "${1:-all}" in
  start) start_engine ;;
  all) install_missing; start_engine ;;
  *) echo "usage: $0 [start]" >&2; exit 2 ;;
esac
