#!/usr/bin/env bash
# Installs the system parts SwiftDeploy drives: nginx with Debian's lua module,
# lua-cjson, Prometheus, hey, the Go toolchain (to build OPA and the
# Kubernetes control plane) and Chromium (to render
# the audit report in tests).
# It only calls apt when something is missing, and `apt-get update`
# at most once, so a re-run on a ready machine costs a few `command -v` checks.
set -euo pipefail
source "$(dirname "$0")/apt-install.sh"

missing=()
need_bin() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_file() { [ -e "$1" ] || missing+=("$2"); }

need_bin nginx nginx
need_file /usr/lib/nginx/modules/ngx_http_lua_module.so libnginx-mod-http-lua
need_file /usr/share/lua/5.1/resty/core.lua lua-resty-core
need_file /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so lua-cjson
need_bin prometheus prometheus
need_bin hey hey
need_bin chromium chromium   # renders the HTML audit report in tests
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then missing+=(golang-go); fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
apt_install "${missing[@]}"
# Debian starts the packaged nginx and Prometheus services on install; SwiftDeploy
# runs its own instances on ports it picks, so the system ones are stopped.
for svc in nginx prometheus; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
