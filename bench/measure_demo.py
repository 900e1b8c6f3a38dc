"""One full `measure()` on the demo: 3 stable replicas + 1 canary (4 replicas), under
light load, for each provider that needs no extra server (scrape, nginx), side by side.

Each round measures both tracks (2 measure() calls); the table reports the time of one
measure() call (scrape every target of the track, parse, window, quantiles).

    .venv/bin/python bench/measure_demo.py [--rounds 300]
"""

from __future__ import annotations

import argparse
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

from swiftdeploy.commands.context import command_context  # noqa: E402
from swiftdeploy.loadgen import LoadRun  # noqa: E402
from swiftdeploy.manifest import load_manifest  # noqa: E402
from swiftdeploy.metrics import ProviderDeps, create_provider  # noqa: E402
from swiftdeploy.ports import free_port  # noqa: E402

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sd-bench-", dir="/tmp"))
    port = free_port()

    def sd(*argv: str) -> None:
        subprocess.run([SWIFTDEPLOY, *argv], cwd=root, check=True, capture_output=True)

    try:
        sd("init", ".", "--listen", f"127.0.0.1:{port}")
        manifest = yaml.safe_load((root / "swiftdeploy.yaml").read_text())
        manifest["service"]["replicas"] = 3
        (root / "swiftdeploy.yaml").write_text(yaml.safe_dump(manifest))
        generous_host_gate(root / "swiftdeploy.yaml")  # a busy machine must not refuse it
        sd("deploy")
        sd("canary", "v2", "--weight", "25")
        loaded = load_manifest(root / "swiftdeploy.yaml")
        with command_context(loaded, lambda message: None) as context:
            fleet = context.fleet
            load = LoadRun(
                f"http://127.0.0.1:{port}/", seconds=600, connections=4, rate_per_connection=25
            )
            client = httpx.Client(trust_env=False)
            providers = {
                name: create_provider(
                    name,
                    ProviderDeps(
                        settings=fleet.loaded.manifest.metrics,
                        app_targets=fleet.metrics_targets,
                        router_metrics=fleet.router.read_metrics,
                        router_history=fleet.router.read_history,
                        prometheus_url=lambda: "",
                        client=client,
                        min_requests=0,
                        state_dir=root,
                        keep_history=False,
                    ),
                )
                for name in ("scrape", "nginx")
            }
            timings: dict[str, list[float]] = {name: [] for name in providers}
            try:
                time.sleep(2)
                for provider in providers.values():
                    for track in ("stable", "canary"):
                        provider.mark(track)
                time.sleep(1)
                for _ in range(args.rounds):
                    for name, provider in providers.items():  # interleaved: same noise for both
                        for track in ("stable", "canary"):
                            started = time.perf_counter()
                            measurement = provider.measure(track, 30)
                            timings[name].append((time.perf_counter() - started) * 1000)
                            assert measurement.status != "provider_error", measurement.detail
                    time.sleep(0.02)
            finally:
                load.stop()
                client.close()
        print(f"command: .venv/bin/python bench/measure_demo.py --rounds {args.rounds}")
        print("| provider | targets per track | calls | p50 ms | p99 ms | goal |")
        print("|---|---|---:|---:|---:|---|")
        for name, values in timings.items():
            targets = "3 stable / 1 canary replicas" if name == "scrape" else "nginx, 1 per track"
            print(
                f"| {name} | {targets} | {len(values)} | {statistics.median(values):.2f} "
                f"| {percentile(values, 0.99):.2f} | p99 < 20 ms |"
            )
    finally:
        subprocess.run([SWIFTDEPLOY, "teardown"], cwd=root, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
