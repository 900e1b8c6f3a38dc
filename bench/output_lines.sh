#!/bin/bash
# What a non-terminal `swiftdeploy rollout` writes (stdout and stderr lines and bytes) for one
# healthy rollout of init's manifest with 10 s steps under the step's own 300 req/s load,
# and the trail it leaves. Run it for two checkouts at once to compare them side by side:
#   bash bench/output_lines.sh "$PWD/src" new 18752 & bash bench/output_lines.sh /tmp/old/src old 18751
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:?src dir of the code to measure, e.g. src}; NAME=${2:-lines}; PORT=${3:-18752}
rm -rf /tmp/$NAME; mkdir /tmp/$NAME; cd /tmp/$NAME
SD() { PYTHONPATH=$SRC $ROOT/.venv/bin/python -c "import sys; from swiftdeploy.cli import main; sys.argv[0]='swiftdeploy'; main()" "$@"; }
SD init . --listen 127.0.0.1:$PORT >/dev/null
ROOT=$ROOT $ROOT/.venv/bin/python - <<'PY'
import os, sys, yaml
from pathlib import Path
sys.path.insert(0, os.environ["ROOT"])
from bench.support.host import generous_host_gate
m=Path("swiftdeploy.yaml"); generous_host_gate(m)
d=yaml.safe_load(m.read_text())
c=d["strategy"]["canary"]
c["analysis"]["load"]={"rps":300,"concurrency":10}
c["analysis"]["min_duration"]="10s"
c["analysis"]["warmup"]={"time":"10s","requests":100}
m.write_text(yaml.safe_dump(d))
PY
SD deploy >/dev/null 2>&1
start=$(date +%s)
SD rollout v2 > out.txt 2> err.txt || true
end=$(date +%s)
echo "$NAME: $(cat out.txt err.txt | wc -l) lines, $(cat out.txt err.txt | wc -c) bytes, $((end-start)) s, trail $(stat -c %s .swiftdeploy/history.jsonl 2>/dev/null || stat -c %s history.jsonl 2>/dev/null) bytes; last: $(tail -1 out.txt)"
SD teardown >/dev/null 2>&1 || true
