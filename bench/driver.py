"""The rollout's driver (issue 20), on a local project: how long `swiftdeploy abort`
from another process takes to bring the canary to 0% at the router, and how long a
driver killed with SIGKILL takes to make its next look once its supervisor restarts it.

Each repetition starts a rollout (`rollout VERSION --detach`) whose steps do not end on
their own, then:
- abort: the time from starting `swiftdeploy abort` (a new process: its start-up counts)
  to nginx's admin `/routes` saying the canary's weight is 0 (polled every 10 ms), and
  of that, the driver's part: from its request file appearing in `.swiftdeploy/requests`;
- restart: the time from the driver's SIGKILL to the `ts` of the next `decision` record
  a driver writes to the trail (the new driver's first look).

    .venv/bin/python bench/driver.py [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.host import generous_host_gate  # noqa: E402

from swiftdeploy.lock import lock_holder  # noqa: E402
from swiftdeploy.ports import free_port  # noqa: E402

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))
TIMEOUT_S = 120.0


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / ".swiftdeploy"
        self.manifest = root / "swiftdeploy.yaml"

    def cli(self, *argv: str) -> None:
        subprocess.run(
            [SWIFTDEPLOY, *argv, "-f", str(self.manifest)],
            cwd=self.root, check=True, capture_output=True, timeout=TIMEOUT_S,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "state.json").read_text()))

    def canary_weight(self) -> int:
        transport = httpx.HTTPTransport(uds=str(self.state_dir / "nginx" / "admin.sock"))
        with httpx.Client(transport=transport, timeout=5.0) as client:
            routes = client.get("http://nginx/routes").json()["routes"]
        return int(routes["weights"]["canary"])

    def driver_pid(self) -> int | None:
        try:
            info = json.loads((self.state_dir / "driver.json").read_text())
        except (OSError, ValueError):
            return None
        holds = not info["exited"] and lock_holder(self.state_dir) == info["pid"]
        return int(info["pid"]) if holds else None

    def decisions_after(self, line: int) -> list[dict[str, Any]]:
        lines = (self.state_dir / "history.jsonl").read_text().splitlines()[line:]
        records = [json.loads(text) for text in lines]
        return [r for r in records if r["kind"] == "decision"]

    def trail_lines(self) -> int:
        return len((self.state_dir / "history.jsonl").read_text().splitlines())


def wait_for(predicate: Callable[[], object], what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def new_project() -> Project:
    """init's project, its steps long enough never to end on their own, under the
    rollout's own load (100 req/s) so that every look has traffic to count."""
    root = Path(tempfile.mkdtemp(prefix="sd-bench-", dir="/tmp"))
    subprocess.run(
        [SWIFTDEPLOY, "init", str(root), "--listen", f"127.0.0.1:{free_port()}"],
        check=True, capture_output=True,
    )  # fmt: skip
    project = Project(root)
    manifest = yaml.safe_load(project.manifest.read_text())
    canary = manifest["strategy"]["canary"]
    canary["steps"] = [{"weight": 20}, {"weight": 50}]
    canary["analysis"] = {
        "min_duration": "10m",
        "max_duration": "20m",
        "load": {"rps": 100, "concurrency": 4},
        "warmup": {"time": "4s", "requests": 50},
    }
    project.manifest.write_text(yaml.safe_dump(manifest))
    generous_host_gate(project.manifest)  # a busy machine must not refuse it
    project.cli("deploy")
    return project


def start(project: Project, version: str) -> int:
    """A rollout of `version` handed to its driver, at step 1; the driver's pid."""
    project.cli("rollout", version, "--detach")
    wait_for(lambda: project.state()["canary_weight"] == 20, "step 1")
    wait_for(lambda: project.canary_weight() == 20, "the router at 20%")
    pid = project.driver_pid()
    assert pid is not None
    return pid


def abort_s(project: Project, version: str) -> tuple[float, float]:
    """(from `abort` started, from its request filed) to the canary at 0% at the router."""
    start(project, version)
    requests = project.state_dir / "requests"
    started = time.monotonic()
    aborting = subprocess.Popen(
        [SWIFTDEPLOY, "abort", "-f", str(project.manifest)],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    filed: list[float] = []

    def at_zero() -> bool:
        if not filed and requests.exists() and any(requests.iterdir()):
            filed.append(time.monotonic())
        return project.canary_weight() == 0

    wait_for(at_zero, "the canary at 0%", every=0.005)
    done = time.monotonic()
    if aborting.wait(timeout=TIMEOUT_S) != 0:
        raise SystemExit("swiftdeploy abort failed")
    return done - started, done - (filed[0] if filed else done)


def restart_s(project: Project, version: str) -> float:
    driver = start(project, version)
    # (its first look, so that the next is a look of the restarted driver)
    wait_for(lambda: project.state()["last_look"], "a first look")
    seen = project.trail_lines()
    # its load generator (hey) outlives it for the rest of max_duration: stopped below
    children = ["pgrep", "-P", str(driver)]
    orphans = subprocess.run(children, check=False, capture_output=True, text=True)
    killed_at = time.time()
    os.kill(driver, signal.SIGKILL)
    found: list[dict[str, Any]] = []

    def next_look() -> bool:
        found[:] = [d for d in project.decisions_after(seen) if d["actor"]["pid"] != driver]
        return bool(found)

    wait_for(next_look, "the restarted driver's first look", every=0.02)
    looked_at = datetime.fromisoformat(found[0]["ts"].replace("Z", "+00:00")).timestamp()
    wait_for(project.driver_pid, "the restarted driver")
    project.cli("abort")
    for pid in orphans.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
    return looked_at - killed_at


def summary(name: str, values: list[float], goal: float) -> str:
    median, worst = statistics.median(values), max(values)
    met = "yes" if worst <= goal else "no"
    return f"| {name} | {len(values)} | {median:.2f} s | {worst:.2f} s | <= {goal:g} s | {met} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    project = new_project()
    aborts: list[float] = []
    driver_parts: list[float] = []
    restarts: list[float] = []
    try:
        for run in range(args.runs):
            whole, part = abort_s(project, f"v{2 * run + 2}")
            aborts.append(whole)
            driver_parts.append(part)
            restarts.append(restart_s(project, f"v{2 * run + 3}"))
            print(
                f"run {run + 1}: abort {whole:.2f} s (the driver's part {part:.2f} s),"
                f" restart {restarts[-1]:.2f} s"
            )
    finally:
        subprocess.run(
            [SWIFTDEPLOY, "teardown", "-f", str(project.manifest)],
            cwd=project.root, capture_output=True, check=False,
        )  # fmt: skip
        shutil.rmtree(project.root, ignore_errors=True)
    print()
    print("| measured | runs | median | max | goal | met |")
    print("|---|---|---|---|---|---|")
    print(summary("`abort` in another process to the canary at 0% (router)", aborts, 2))
    print(summary("of which: its request filed to the canary at 0%", driver_parts, 2))
    print(summary("driver SIGKILLed to its next look", restarts, 5))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
