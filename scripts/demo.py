"""`make demo`: the main job end to end on the embedded defaults, in build/demo/.

1. deploy v1 (2 replicas behind nginx)
2. roll out v2, healthy: promoted automatically
3. roll out v3 with 10% errors injected into its canary: rolled back automatically
4. a summary table, the audit trail verified, and the audit report's path

Every step is a real `swiftdeploy` command. The manifest is `swiftdeploy init`'s with
one change, the "demo load" profile: the rollout generates 300 req/s of its own
traffic (analysis.load), because a demo has no users. Every decision setting (steps,
durations, alpha, beta, what to detect) is init's default. It takes about three
minutes. The project is torn down at the end, whatever happens.

`scripts/demo.py --runtime docker` (`make demo-docker`) runs the same on `runtime:
docker`: the replicas are containers of the demo image, which `swiftdeploy demo-image`
builds first (no registry; cached after the first build).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from swiftdeploy.durations import format_duration
from swiftdeploy.ports import free_port

ROOT = Path(__file__).resolve().parent.parent / "build" / "demo"
SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))
console = Console(highlight=False)


def sd(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    console.print(f"\n[bold]$ swiftdeploy {' '.join(args)}[/]")
    done = subprocess.run([SWIFTDEPLOY, *args], cwd=ROOT, text=True, check=False)
    if done.returncode != expect:
        raise SystemExit(f"demo failed: `swiftdeploy {' '.join(args)}` exited {done.returncode}")
    return done


def demo_load() -> None:
    """The demo load profile: init's manifest, plus the rollout's own 300 req/s."""
    path = ROOT / "swiftdeploy.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["strategy"]["canary"]["analysis"]["load"] = {"rps": 300, "concurrency": 10}
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def use_docker() -> None:
    """The manifest on `runtime: docker`: the demo image instead of the demo command."""
    path = ROOT / "swiftdeploy.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["runtime"] = "docker"
    del manifest["service"]["command"]
    manifest["service"]["image"] = "swiftdeploy-demo:{version}"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))


def rollout_with_chaos(version: str, error_rate: str) -> int:
    """Roll out `version` and inject errors into its canary once it takes traffic."""
    console.print(f"\n[bold]$ swiftdeploy rollout {version}[/]  (chaos: {error_rate} errors)")
    rollout = subprocess.Popen([SWIFTDEPLOY, "rollout", version], cwd=ROOT, text=True)
    state_path = ROOT / ".swiftdeploy" / "state.json"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and rollout.poll() is None:
        state = json.loads(state_path.read_text())
        if any(r["track"] == "canary" and r["ready"] for r in state["replicas"]):
            break
        time.sleep(0.1)
    subprocess.run(
        [SWIFTDEPLOY, "chaos", "--error-rate", error_rate], cwd=ROOT, check=True, text=True
    )
    return rollout.wait(timeout=300)


def summary() -> None:
    trail = ROOT / ".swiftdeploy" / "history.jsonl"
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    table = Table(title="Rollouts")
    for column in ("rollout", "version", "outcome", "looks", "took", "why"):
        table.add_column(column)
    rollouts: dict[str, list[dict[str, object]]] = {}
    for record in records:
        if record.get("rollout_id"):
            rollouts.setdefault(str(record["rollout_id"]), []).append(record)
    for rollout_id, items in rollouts.items():
        transitions = [r for r in items if r["kind"] == "transition"]
        looks = [r for r in items if r["kind"] == "decision"]
        if not looks:
            continue
        last = transitions[-1]
        started = _epoch(str(transitions[0]["ts"]))
        ended = _epoch(str(last["ts"]))
        version = next(str(t["canary_version"]) for t in transitions if t.get("canary_version"))
        ending = [t for t in transitions if t["phase_after"] in ("rolling-back", "promoting")]
        why = str(ending[0].get("reason", "")) if ending else ""
        table.add_row(
            rollout_id,
            version,
            str(last["phase_after"]),
            str(len(looks)),
            format_duration(ended - started),
            why[:90],
        )
    console.print(table)


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description="make demo: the main job end to end")
    parser.add_argument("--runtime", choices=["local", "docker"], default="local")
    docker = parser.parse_args().runtime == "docker"
    started = time.monotonic()
    if (ROOT / ".swiftdeploy" / "supervisord.pid").exists():
        subprocess.run([SWIFTDEPLOY, "teardown"], cwd=ROOT, check=False)
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    listen = f"127.0.0.1:{free_port()}"
    try:
        sd("init", ".", "--listen", listen)
        demo_load()
        if docker:
            sd("demo-image", "v1", "v2", "v3")
            use_docker()
        sd("validate")
        sd("deploy")
        sd("rollout", "v2")
        code = rollout_with_chaos("v3", "0.1")
        if code != 3:
            raise SystemExit(f"demo failed: the v3 rollout exited {code}, expected 3")
        sd("status", "--window", "0")
        sd("audit", "why")
        sd("audit", "verify")
        sd("audit", "report")
        summary()
    finally:
        sd("teardown")
    console.print(
        f"\ndemo finished in {format_duration(time.monotonic() - started)}: v2 promoted,"
        " v3 rolled back; "
        f"report: {ROOT / '.swiftdeploy' / 'reports' / 'audit_report.html'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
