"""The docker backend on the real engine and the demo image, behind the real nginx:
how long a replica takes to start and be routed, a weight change, a rollback from its
decision to 0%, and how many requests fail during whole rollouts under load.

    .venv/bin/python bench/docker_runtime.py [--runs 5] [--out bench/results/docker.md]

(Not bench/docker.py: a script's directory comes first on sys.path, and that name would
hide the `docker` package.) One project (`swiftdeploy init`'s manifest on `runtime:
docker`, 2 stable replicas, the e2e tests' short steps: 20% then 50%, 2 s minimum, the
rollout's own 300 req/s).

- replica start to routed: `ensure_track` of one canary container (create, start, up
  for 1 s, health check) plus `apply_split`, until a request forced to the canary
  (X-Canary: always) through nginx is answered by it; the track is retired after.
- weight change: `apply_split` with a new weight until nginx's admin API reports it.
- rollback decision to 0%: a rollout whose canary turns 300 ms slower; the time from
  the audit record of the decision (the transition to rolling-back) to the first time
  nginx's admin API, polled every 5 ms, reports the canary at 0%.
- failed requests: hey through nginx (8 keepalive connections, 80 req/s) across each
  whole rollout, healthy (promoted: every stable container replaced) and slow (rolled
  back); failed = transport errors + 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.project import fast_rollout, new_project, use_docker  # noqa: E402

from swiftdeploy.commands.context import command_context  # noqa: E402
from swiftdeploy.commands.demo_image import build_demo_image  # noqa: E402
from swiftdeploy.loadgen import LoadResult, LoadRun  # noqa: E402
from swiftdeploy.manifest import load_manifest  # noqa: E402
from swiftdeploy.runtime.docker import connect  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "docker.md"
COMMAND = [".venv/bin/python", "bench/docker_runtime.py"]
SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def sd(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWIFTDEPLOY, *args], cwd=root, capture_output=True, text=True, timeout=timeout, check=False
    )


def make_project(root: Path) -> int:
    """init's project on `runtime: docker` with the tests' short steps; its listen port."""
    project = new_project(root)
    use_docker(project)
    fast_rollout(project)
    return project.listen_port


def measure_tracks(root: Path, url: str, runs: int) -> tuple[list[float], list[float]]:
    """Replica start-to-routed times and weight change times, through the backend."""
    loaded = load_manifest(root / "swiftdeploy.yaml")
    starts: list[float] = []
    changes: list[float] = []
    with command_context(loaded, lambda line: None, lock=True, record_command=False) as context:
        fleet = context.fleet
        tracks, store = fleet.tracks, fleet.store
        try:
            for run in range(runs):
                state = store.load()
                started = time.perf_counter()
                state = tracks.ensure_track(state, "canary", "v2", 1)
                state = store.save(state.model_copy(update={"canary_weight": 10}))
                tracks.apply_split(state)
                wait_canary_answers(url, "v2")
                starts.append(time.perf_counter() - started)
                for weight in (20, 50, 10, 30, 0, 40) if run == 0 else (20, 50, 10, 0):
                    state = store.save(state.model_copy(update={"canary_weight": weight}))
                    started = time.perf_counter()
                    tracks.apply_split(state)
                    while tracks.routed_weight() != weight:
                        time.sleep(0.001)
                    changes.append(time.perf_counter() - started)
                state = tracks.retire_track(state, "canary")
                store.save(state.model_copy(update={"canary_weight": 0}))
        finally:
            fleet.close()
    return starts, changes


def wait_canary_answers(url: str, version: str) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(url, headers={"X-Canary": "always"})
                if response.headers.get("x-app-version") == version:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.002)
    raise SystemExit("the canary was never routed")


class WeightPoller(threading.Thread):
    """Polls nginx's admin API for the canary weight every 5 ms, with wall-clock times."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(daemon=True)
        self.state_dir = state_dir
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        transport = httpx.HTTPTransport(uds=str(self.state_dir / "nginx" / "admin.sock"))
        with httpx.Client(transport=transport, timeout=1.0) as client:
            while not self.done.is_set():
                try:
                    routes = client.get("http://nginx/routes").json()["routes"]
                    self.samples.append((time.time(), int(routes["weights"]["canary"])))
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(0.005)


def rollback_to_zero(root: Path, poller: WeightPoller, since_seq: int) -> float:
    """Seconds from the rollback decision's audit record to nginx reporting 0%."""
    records = [json.loads(line) for line in (root / ".swiftdeploy" / "history.jsonl").open()]
    decision = next(
        r
        for r in records
        if r["seq"] > since_seq
        and r["kind"] == "transition"
        and r.get("phase_after") == "rolling-back"
    )
    decided = datetime.fromisoformat(decision["ts"].replace("Z", "+00:00")).timestamp()
    zero = next(t for t, weight in poller.samples if t >= decided and weight == 0)
    return zero - decided


def last_seq(root: Path) -> int:
    lines = (root / ".swiftdeploy" / "history.jsonl").read_text().splitlines()
    return int(json.loads(lines[-1])["seq"]) if lines else 0


def canary_ready(root: Path) -> bool:
    state = json.loads((root / ".swiftdeploy" / "state.json").read_text())
    return any(r["track"] == "canary" and r["ready"] for r in state["replicas"])


def rollout(root: Path, url: str, version: str, slow: bool) -> tuple[int, LoadResult, float]:
    """One whole rollout under hey load; (exit code, load result, seconds)."""
    load = LoadRun(url, seconds=240, connections=8, rate_per_connection=10)
    started = time.perf_counter()
    try:
        process = subprocess.Popen(
            [SWIFTDEPLOY, "rollout", version],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if slow:
            deadline = time.monotonic() + 60
            while not canary_ready(root) and time.monotonic() < deadline:
                time.sleep(0.05)
            sd(root, "chaos", "--latency-ms", "300").check_returncode()
        code = process.wait(timeout=300)
        took = time.perf_counter() - started
        result = load.finish()
    finally:
        load.stop()
    return code, result, took


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    worst = ordered[-1]
    return f"{p50 * 1000:.0f} ms | {worst * 1000:.0f} ms | {len(values)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    client = connect()
    versions = [f"r{i}" for i in range(2 * args.runs)]
    build_demo_image(["v1", "v2", *versions], print)
    root = Path(tempfile.mkdtemp(prefix="sd-bench-docker-", dir="/tmp"))
    port = make_project(root)
    url = f"http://127.0.0.1:{port}/"
    rollouts: list[tuple[str, int, LoadResult, float, float | None]] = []
    try:
        sd(root, "deploy").check_returncode()
        starts, changes = measure_tracks(root, url, args.runs)
        poller = WeightPoller(root / ".swiftdeploy")
        poller.start()
        for run in range(args.runs):
            healthy, bad = versions[2 * run], versions[2 * run + 1]
            code, result, took = rollout(root, url, healthy, slow=False)
            rollouts.append(("healthy", code, result, took, None))
            since = last_seq(root)
            code, result, took = rollout(root, url, bad, slow=True)
            rollouts.append(
                ("300 ms slower", code, result, took, rollback_to_zero(root, poller, since))
            )
        poller.done.set()
    finally:
        sd(root, "teardown")
        shutil.rmtree(root, ignore_errors=True)
    engine = client.version()
    lines = [
        "# Docker backend",
        "",
        f"`{shlex.join([*COMMAND, '--runs', str(args.runs)])}` on "
        f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores), Docker engine "
        f"{engine.get('Version')}, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
        "",
        "| measure | median | worst | runs |",
        "|---|---:|---:|---:|",
        f"| replica start to routed (up 1 s, healthy, then routed) | {summary(starts)} |",
        f"| weight change (apply until nginx reports it) | {summary(changes)} |",
        f"| rollback decision to 0% (audit record to nginx) | "
        f"{summary([r[4] for r in rollouts if r[4] is not None])} |",
        "",
        "| rollout under hey load (80 req/s through nginx) | outcome | took | requests | failed |",
        "|---|---|---:|---:|---:|",
    ]
    outcomes = {0: "promoted", 3: "rolled back"}
    for kind, code, result, took, _ in rollouts:
        lines.append(
            f"| {kind} | {outcomes.get(code, f'exit {code}')} | {took:.1f} s | "
            f"{result.total} | {result.failed} |"
        )
    total = sum(r[2].total for r in rollouts)
    failed = sum(r[2].failed for r in rollouts)
    lines += ["", f"Failed requests over all {len(rollouts)} rollouts: {failed} of {total}.", ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
