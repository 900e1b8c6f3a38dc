"""Soak: rollouts in a row (promoted and rolled back, alternating) under steady
keepalive load. Reports total and failed requests, processes and open file
descriptors after each rollout (they should stay flat), and the RSS of nginx and the CLI.

    .venv/bin/python bench/soak.py [--rollouts 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.host import generous_host_gate  # noqa: E402

from swiftdeploy.loadgen import LoadRun  # noqa: E402
from swiftdeploy.ports import free_port  # noqa: E402

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def descendants(pid: int) -> set[int]:
    family = {pid}
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    for child in out.stdout.split():
        family |= descendants(int(child))
    return family


def open_fds(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            continue
    return total


def rss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def nginx_pids(root: Path) -> set[int]:
    master = int((root / ".swiftdeploy" / "nginx" / "nginx.pid").read_text())
    return descendants(master)


def rollout(root: Path, version: str, chaos: bool) -> tuple[int, int]:
    """Run one rollout; (exit code, the CLI's peak RSS in KiB)."""
    process = subprocess.Popen(
        [SWIFTDEPLOY, "rollout", version],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0
    injected = not chaos
    state_path = root / ".swiftdeploy" / "state.json"
    while process.poll() is None:
        peak = max(peak, rss_kib({process.pid}))
        if not injected:
            state = json.loads(state_path.read_text())
            if any(r["track"] == "canary" and r["ready"] for r in state["replicas"]):
                subprocess.run(
                    [SWIFTDEPLOY, "chaos", "--error-rate", "0.1"],
                    cwd=root,
                    check=True,
                    capture_output=True,
                )
                injected = True
        time.sleep(0.1)
    return process.returncode, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rollouts", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sd-soak-", dir="/tmp"))
    port = free_port()

    def sd(*argv: str) -> None:
        subprocess.run([SWIFTDEPLOY, *argv], cwd=root, check=True, capture_output=True)

    rows = []
    try:
        sd("init", ".", "--listen", f"127.0.0.1:{port}")
        path = root / "swiftdeploy.yaml"
        manifest = yaml.safe_load(path.read_text())
        manifest["strategy"]["canary"]["steps"] = [{"weight": 20}, {"weight": 50}]
        manifest["strategy"]["canary"]["analysis"] = {
            "interval": "500ms",
            "min_duration": "2s",
            "max_duration": "40s",
            "load": {"rps": 200, "concurrency": 8},
            "warmup": {"time": "4s", "requests": 50},  # as the tests' fast rollouts
        }
        manifest["policy"]["statistics"] = {"margin": 0.05}
        path.write_text(yaml.safe_dump(manifest))
        generous_host_gate(path)  # a busy machine must not refuse the deploy or rollouts
        sd("deploy")
        manager = int((root / ".swiftdeploy" / "supervisord.pid").read_text())
        load = LoadRun(
            f"http://127.0.0.1:{port}/", seconds=3600, connections=8, rate_per_connection=10
        )
        started = time.monotonic()
        try:
            for n in range(args.rollouts):
                chaos = n % 2 == 1
                code, cli_peak = rollout(root, f"v{n + 2}", chaos)
                expected = 3 if chaos else 0
                family = descendants(manager)
                rows.append(
                    (
                        n + 1,
                        "rolled back" if code == 3 else "promoted" if code == 0 else f"exit {code}",
                        code == expected,
                        len(family),
                        open_fds(family),
                        rss_kib(nginx_pids(root)) // 1024,
                        cli_peak // 1024,
                    )
                )
                print(rows[-1], flush=True)
        finally:
            result = load.finish()
        elapsed = time.monotonic() - started
    finally:
        subprocess.run([SWIFTDEPLOY, "teardown"], cwd=root, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ncommand: .venv/bin/python bench/soak.py --rollouts {args.rollouts}")
    print(
        f"steady load: {result.total} requests in {elapsed:.0f} s, "
        f"{result.failed} failed ({result.statuses}, errors {result.errors})\n"
    )
    print(
        "| rollout | outcome | as expected | processes | open fds | nginx RSS MiB "
        "| CLI peak RSS MiB |"
    )
    print("|---:|---|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
