"""End-to-end time to roll back a bad canary, measured on the real stack.

About 50 requests/s in total through nginx (hey, bounded), the canary at 10%, then 5%
errors injected into the canary. The clock runs from the injection until nginx's
admin endpoint says the canary gets 0% (weight 0 or no canary endpoints).

    .venv/bin/python bench/e2e_detection.py [--runs 5] [--interval 2s]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.host import generous_host_gate  # noqa: E402

from swiftdeploy.loadgen import LoadRun  # noqa: E402
from swiftdeploy.ports import free_port  # noqa: E402

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def sd(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWIFTDEPLOY, *args], cwd=root, capture_output=True, text=True, check=check
    )


def one_run(interval: str) -> float:
    root = Path(tempfile.mkdtemp(prefix="sd-bench-", dir="/tmp"))
    port = free_port()
    try:
        sd(root, "init", ".", "--listen", f"127.0.0.1:{port}")
        path = root / "swiftdeploy.yaml"
        manifest = yaml.safe_load(path.read_text())
        manifest["strategy"]["canary"]["steps"] = [{"weight": 10}]
        manifest["strategy"]["canary"]["analysis"] = {
            "interval": interval,
            "min_duration": "10s",
            "max_duration": "10m",
        }
        path.write_text(yaml.safe_dump(manifest))
        generous_host_gate(path)  # a busy machine must not refuse the deploy or rollout
        sd(root, "deploy")
        url = f"http://127.0.0.1:{port}/"
        load = LoadRun(url, seconds=120, connections=5, rate_per_connection=10)
        rollout = subprocess.Popen(
            [SWIFTDEPLOY, "rollout", "v2"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            state_path = root / ".swiftdeploy" / "state.json"
            while not any(
                r["track"] == "canary" and r["ready"]
                for r in json.loads(state_path.read_text())["replicas"]
            ):
                time.sleep(0.05)
            admin = httpx.HTTPTransport(uds=str(root / ".swiftdeploy" / "nginx" / "admin.sock"))
            time.sleep(3)  # the canary takes traffic, healthy, before the fault
            sd(root, "chaos", "--error-rate", "0.05")
            injected = time.monotonic()
            with httpx.Client(transport=admin, trust_env=False) as client:
                while time.monotonic() - injected < 110:
                    routes = client.get("http://nginx/routes").json()["routes"]
                    if routes["weights"]["canary"] == 0 or not routes["endpoints"]["canary"]:
                        return time.monotonic() - injected
                    time.sleep(0.05)
            raise RuntimeError("the canary was not rolled back within 110 s")
        finally:
            rollout.wait(timeout=60)
            load.stop()
    finally:
        sd(root, "teardown", check=False)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", default="2s", help="analysis interval")
    args = parser.parse_args()
    times = []
    for run in range(args.runs):
        took = one_run(args.interval)
        times.append(took)
        print(f"run {run + 1}: {took:.1f} s from injection to 0% canary", flush=True)
    print(f"\ncommand: .venv/bin/python bench/e2e_detection.py --runs {args.runs} "
          f"--interval {args.interval}")  # fmt: skip
    print("| runs | interval | median s | min s | max s | goal |")
    print("|---:|---|---:|---:|---:|---|")
    print(
        f"| {len(times)} | {args.interval} | {statistics.median(times):.1f} | {min(times):.1f} "
        f"| {max(times):.1f} | <= 20 s |"
    )


if __name__ == "__main__":
    main()
