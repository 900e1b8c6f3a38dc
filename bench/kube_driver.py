"""The driver in the cluster (issue 21), on the test control plane (bench/support/kube.py:
a real kube-apiserver, etcd and kwok): operators on two machines, the driver a host
process with its ServiceAccount's token, as in its pod.

Each repetition starts a rollout from machine A (`rollout v2 --detach`) whose step does
not end on its own (a Prometheus nothing answers: every look holds), then:
- restart: the driver is killed with SIGKILL and a new one started (a new pod, minus
  the kubelet's part); the time from the kill to the state's `last_look.at` of the
  new driver's first look, read from the API server;
- abort: machine B's `swiftdeploy abort` (a new process: its start-up counts) timed from
  its start to the HTTPRoute giving the canary 0% (the route polled every 20 ms), and
  of that, the driver's part: from B's request ConfigMap first being seen.

    .venv/bin/python bench/kube_driver.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.cluster_driver import (  # noqa: E402
    Driver,
    Machine,
    lease_holder,
    pod_machine,
    prepare,
    start_driver,
    wait_for,
)
from bench.support.kube import KubeCluster, start_cluster  # noqa: E402
from bench.support.kubeproject import SERVICE, KubeProject, manifest_text  # noqa: E402
from kubernetes import client  # noqa: E402

from swiftdeploy.ports import free_port  # noqa: E402

CANARY = f"{SERVICE}-canary"
POLL_S = 0.02


def _canary_weight(read: KubeProject) -> int:
    return read.weights().get(CANARY, 0)


def _last_look(cluster: KubeCluster, namespace: str) -> float:
    found = client.CoreV1Api(cluster.api).read_namespaced_config_map(
        f"{SERVICE}-swiftdeploy-state", namespace
    )
    look = json.loads(found.data["state.json"]).get("last_look") or {}
    return float(look.get("at") or 0.0)


def _requests_seen(cluster: KubeCluster, namespace: str) -> bool:
    found = client.CoreV1Api(cluster.api).list_namespaced_config_map(
        namespace, label_selector=f"swiftdeploy.dev/service={SERVICE},swiftdeploy.dev/part=request"
    )
    phases = [(item.metadata.labels or {}).get("swiftdeploy.dev/request") for item in found.items]
    return "pending" in phases or "taken" in phases


def _driver(root: Path, platform: Machine, cluster: KubeCluster, namespace: str) -> Driver:
    driver = start_driver(pod_machine(root, platform))
    wait_for(
        "the driver's Lease",
        lambda: f"/{driver.pid}/" in lease_holder(cluster, namespace),
        driver=driver,
    )
    return driver


def run(runs: int, work: Path) -> dict[str, list[float]]:
    cluster = start_cluster(work / "kube")
    namespace = f"b-{secrets.token_hex(4)}"
    cluster.create_namespace(namespace)
    found: dict[str, list[float]] = {"restart": [], "abort": [], "abort_driver": []}
    driver: Driver | None = None
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        a, b, platform = prepare(
            cluster, namespace, work, manifest_text(namespace, dead, max_duration="300s")
        )
        read = KubeProject(a.root, namespace, cluster.admin_kubeconfig, cluster)
        platform.cli("deploy")
        driver = _driver(work / "pod-0", platform, cluster, namespace)
        for n in range(runs):
            a.cli("rollout", "v2", "--detach")
            wait_for("step 1 at 10%", lambda: _canary_weight(read) == 10, driver=driver)
            before = _last_look(cluster, namespace)
            wait_for("a look", lambda b=before: _last_look(cluster, namespace) > b, driver=driver)

            killed = time.time()
            driver.kill()
            driver = start_driver(pod_machine(work / f"pod-{n + 1}", platform))
            wait_for(
                "the new driver's first look",
                lambda k=killed: _last_look(cluster, namespace) > k,
                timeout=120,
                driver=driver,
            )
            found["restart"].append(_last_look(cluster, namespace) - killed)

            started = time.monotonic()
            aborting = b.popen("abort")
            seen = None
            while _canary_weight(read) != 0:
                if seen is None and _requests_seen(cluster, namespace):
                    seen = time.monotonic()
                assert time.monotonic() - started < 60, "abort did not reach 0% in 60 s"
                time.sleep(POLL_S)
            done = time.monotonic()
            aborting.communicate(timeout=60)
            found["abort"].append(done - started)
            found["abort_driver"].append(done - (seen or done))
            read.wait_for("the canary to go", lambda: read.deployment("canary") is None, 60)
            print(
                f"run {n + 1}: restart to next look {found['restart'][-1]:.2f}s, abort to 0%"
                f" {found['abort'][-1]:.2f}s (driver's part {found['abort_driver'][-1]:.2f}s)",
                flush=True,
            )
    finally:
        if driver is not None:
            driver.stop()
        cluster.delete_namespace(namespace)
        cluster.stop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sd-bench-kube-") as tmp:
        found = run(args.runs, Path(tmp))
    for name, values in found.items():
        print(
            f"{name}: median {statistics.median(values):.2f}s, max {max(values):.2f}s"
            f" ({len(values)} runs)"
        )


if __name__ == "__main__":
    main()
