"""The kubernetes runtime against a real control plane (kwok nodes), as the user bound to
the Role `swiftdeploy kube rbac` prints:

    .venv/bin/python bench/kube.py [--repeats 20]

- rollout to canary ready at step 1: from starting `swiftdeploy rollout v2` (the CLI's
  start-up included) until the HTTPRoute on the API server gives the canary the first
  step's weight, which happens only once its Deployment is ready; the rollout is run
  by the driver in the cluster (a host process with its ServiceAccount's token, as in
  its pod), started once before the runs;
- a weight change reaching the API server: `apply_split` (one server-side apply) until
  the HTTPRoute reads back at the new weight;
- a rollback decision to the route at 0%: from calling `roll_back` until the API
  server's HTTPRoute gives the canary 0;
- API calls per look: what `track_healthy` (asked at every look) costs with 1 to 16
  canary replicas.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.cluster_driver import project_driver  # noqa: E402
from bench.support.kube import KubeCluster, start_cluster  # noqa: E402
from bench.support.kubeproject import CANARY_NAME, new_project  # noqa: E402

from swiftdeploy.commands.context import command_context  # noqa: E402
from swiftdeploy.manifest import load_manifest  # noqa: E402
from swiftdeploy.ports import free_port  # noqa: E402
from swiftdeploy.rollout.actions import roll_back  # noqa: E402
from swiftdeploy.runtime.kubernetes import kube_of  # noqa: E402


def ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sd-bench-kube-") as tmp:  # etcd's data: 60 MB
        work = Path(tmp)
        started = time.monotonic()
        cluster = start_cluster(work / "cluster")
        print(f"control plane up in {time.monotonic() - started:.1f} s")
        try:
            run(cluster, work, args.repeats)
        finally:
            cluster.stop()


def run(cluster: KubeCluster, work: Path, repeats: int) -> None:
    cluster.create_namespace("bench")
    project = new_project(cluster, "bench", work / "p", f"http://127.0.0.1:{free_port()}")
    os.environ["KUBECONFIG"] = str(project.kubeconfig)
    project.cli("deploy")

    # rollout -> canary ready at step 1, through the CLI and the driver in the cluster
    ready: list[float] = []
    applied: list[float] = []  # of which: until the canary's Deployment exists
    driver = project_driver(cluster, "bench", project.manifest, work / "pod")
    try:
        for _ in range(max(1, repeats // 4)):
            begin = time.monotonic()
            running = project.popen("rollout", "v2")
            project.wait_for("the canary's Deployment", lambda: project.deployment("canary"), 60)
            applied.append(time.monotonic() - begin)
            project.wait_for("step 1", lambda: project.weights().get(CANARY_NAME) == 10, 60)
            ready.append(time.monotonic() - begin)
            running.terminate()  # the follower only: the driver carries the rollout on
            running.communicate(timeout=30)
            project.cli("rollback")
            project.wait_for("the canary to go", lambda: project.deployment("canary") is None, 60)
    finally:
        driver.stop()  # the rest drives the fleet by hand, which its Lease would refuse

    loaded = load_manifest(project.manifest)
    with command_context(loaded, lambda message: None) as context:
        fleet = context.fleet
        kube = kube_of(loaded)
        state = fleet.tracks.ensure_track(fleet.store.load(), "canary", "v2", 1)
        state = fleet.store.save(state.model_copy(update={"canary_version": "v2"}))

        # a weight change -> the API server
        changes: list[float] = []
        for i in range(repeats):
            weight = 10 + (i % 5) * 10
            begin = time.monotonic()
            fleet.tracks.apply_split(state.model_copy(update={"canary_weight": weight}))
            project.wait_for("the weight", lambda w=weight: project.weights().get(CANARY_NAME) == w)
            changes.append(time.monotonic() - begin)

        # a rollback decision -> the route at 0%
        to_zero: list[float] = []
        for _ in range(max(1, repeats // 4)):
            state = fleet.tracks.ensure_track(fleet.store.load(), "canary", "v2", 1)
            state = fleet.store.save(state.model_copy(update={"canary_weight": 50}))
            fleet.apply_routes(state)
            begin = time.monotonic()
            worker = threading.Thread(target=roll_back, args=(fleet, state, "bench"))
            worker.start()
            while CANARY_NAME in project.weights():  # read back as fast as the API answers
                assert time.monotonic() - begin < 30, "the route never reached 0%"
            to_zero.append(time.monotonic() - begin)
            worker.join()

        # API calls per look
        calls: dict[int, int] = {}
        for replicas in (1, 4, 16):
            state = fleet.tracks.ensure_track(fleet.store.load(), "canary", "v2", replicas)
            before = kube.calls
            assert fleet.tracks.track_healthy(state, "canary")
            calls[replicas] = kube.calls - before

    command = "python bench/kube.py " + shlex.join(sys.argv[1:])
    print(f"\n{command}\n")
    print("| measure | result |")
    print("| --- | --- |")
    print(f"| `rollout` to canary ready at step 1 ({len(ready)} runs) | {ms(ready)} |")
    print(f"| of which: until the canary's Deployment exists | {ms(applied)} |")
    print(f"| a weight change to the API server ({len(changes)} runs) | {ms(changes)} |")
    print(f"| rollback decision to the route at 0% ({len(to_zero)} runs) | {ms(to_zero)} |")
    for replicas, count in calls.items():
        print(f"| API calls per look, {replicas} canary replicas | {count} |")


if __name__ == "__main__":
    main()
