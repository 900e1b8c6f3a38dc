"""Real rollout controllers against the test control plane (bench/support/kube.py):
Argo Rollouts and Flagger, built from the Go module proxy by scripts/install-argo.sh and
scripts/install-flagger.sh.

Each runs as a local process with the cluster's admin kubeconfig: no RBAC, no
webhooks, no leader election. Their CRDs are created with the Python client: a
client-side `kubectl apply` refuses Argo's (the last-applied annotation would be over
256 kB). Their HTTP ports listen on every interface (hard-coded), so they are picked
free on the wildcard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from bench.support.kube import (
    REPO,
    ClusterError,
    KubeCluster,
    _log_tail,
    _Process,
    _spawn,
    _stop_processes,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

from swiftdeploy.ports import free_port

ARGO_TOOLS = REPO / ".tools" / "argo"
FLAGGER_TOOLS = REPO / ".tools" / "flagger"
# The namespace Argo's controller believes it runs in (its config map would live there).
CONTROLLER_NAMESPACE = "argo-rollouts"
START_TIMEOUT_S = 30.0

T = TypeVar("T")


@dataclass
class Controller:
    """A running controller: its process, its custom resources' API group and version,
    and the cluster's admin API."""

    cluster: KubeCluster
    process: _Process
    group: str
    version: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.cluster.api)

    def alive(self) -> None:
        """Raises, with the end of its log, if the controller has exited."""
        code = self.process.popen.poll()
        if code is not None:
            raise ClusterError(
                f"{self.process.name} exited with code {code}; its log {self.process.log}:\n"
                f"{_log_tail(self.process.log, 30)}"
            )

    def logs(self, lines: int = 30) -> str:
        return (
            f"--- rollouts-controller ({self.process.log}):\n{_log_tail(self.process.log, lines)}"
        )

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            self.group, self.version, namespace, plural, name
        )
        return found

    def list(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            self.group, self.version, namespace, plural
        )["items"]
        return items

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            self.group, self.version, namespace, plural, body
        )

    def patch(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            self.group, self.version, namespace, plural, name, body
        )

    def wait(self, what: str, check: Callable[[], T | None], timeout: float) -> T:
        """Polls `check` every half second until it returns a value; the controller's log
        is in the message if it never does or the controller exits meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            value = check()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        _stop_processes([self.process])


def rollout_done(rollout: dict[str, Any]) -> bool:
    """`kubectl argo rollouts status`'s Healthy: the controller has seen this generation
    (status.observedGeneration is a string), the phase is Healthy, and the stable
    ReplicaSet is the current pod template's."""
    status = rollout.get("status") or {}
    return (
        status.get("observedGeneration") == str(rollout["metadata"]["generation"])
        and status.get("phase") == "Healthy"
        and bool(status.get("stableRS"))
        and status.get("stableRS") == status.get("currentPodHash")
    )


def install_crds(cluster: KubeCluster, directory: Path) -> list[str]:
    """Creates the CRDs in `directory` (those already there are kept) and waits until
    they serve."""
    crds = [
        document
        for path in sorted(directory.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "CustomResourceDefinition"
    ]
    if not crds:
        raise ClusterError(f"no CRDs in {directory}: run `make test-setup`")
    extensions = client.ApiextensionsV1Api(cluster.api)

    def create(crd: dict[str, Any]) -> None:
        try:
            # Not read back into the client's models: half a megabyte each, and unused.
            extensions.create_custom_resource_definition(crd, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, crds))
    deadline = time.monotonic() + START_TIMEOUT_S
    for crd in crds:
        name = crd["metadata"]["name"]
        while not (_established(extensions, name) and _served(cluster, crd)):
            if time.monotonic() > deadline:
                raise ClusterError(f"the CRD {name} was not served in {START_TIMEOUT_S} s")
            time.sleep(0.2)
    return [crd["metadata"]["name"] for crd in crds]


def _served(cluster: KubeCluster, crd: dict[str, Any]) -> bool:
    """Whether its resources can be listed: Established comes a moment before the API
    server routes them (a create right after answered 404 "page not found")."""
    spec = crd["spec"]
    version = next(v["name"] for v in spec["versions"] if v.get("served", True))
    try:
        client.CustomObjectsApi(cluster.api).list_cluster_custom_object(
            spec["group"], version, spec["names"]["plural"], limit=1
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    status = extensions.read_custom_resource_definition(name).status
    conditions = (status.conditions if status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def start_argo(cluster: KubeCluster, workdir: Path) -> Controller:
    """Installs Argo Rollouts' CRDs and starts its controller; returns once its /healthz
    answers. The caller stops it (`stop()`)."""
    metrics_port = free_port("0.0.0.0")
    healthz_port = free_port("0.0.0.0", avoid={metrics_port})
    return _start(
        cluster,
        workdir,
        ARGO_TOOLS,
        "rollouts-controller",
        [
            f"--kubeconfig={cluster.admin_kubeconfig}",
            "--leader-elect=false",
            f"--metricsPort={metrics_port}",
            f"--healthzPort={healthz_port}",
        ],
        healthz_port,
        ("argoproj.io", "v1alpha1"),
        {"POD_NAMESPACE": CONTROLLER_NAMESPACE},
    )


def start_flagger(cluster: KubeCluster, workdir: Path, prometheus: str) -> Controller:
    """Installs Flagger's CRDs and starts it with the `kubernetes` provider (blue/green:
    no mesh or ingress to shift weights with) and `prometheus` as its metrics server;
    returns once its /healthz answers. The caller stops it (`stop()`)."""
    port = free_port("0.0.0.0")
    return _start(
        cluster,
        workdir,
        FLAGGER_TOOLS,
        "flagger",
        [
            f"-kubeconfig={cluster.admin_kubeconfig}",
            "-mesh-provider=kubernetes",
            f"-metrics-server={prometheus}",
            f"-port={port}",
            "-log-level=info",
        ],
        port,
        ("flagger.app", "v1beta1"),
    )


def _start(
    cluster: KubeCluster,
    workdir: Path,
    tools: Path,
    name: str,
    args: list[str],
    healthz_port: int,
    api: tuple[str, str],
    env: dict[str, str] | None = None,
) -> Controller:
    binary = tools / "bin" / name
    if not os.access(binary, os.X_OK):
        raise ClusterError(f"{binary} is missing: run `make test-setup`")
    install_crds(cluster, tools / "crds")
    workdir.mkdir(parents=True, exist_ok=True)
    process = _spawn(name, [str(binary), *args], workdir, env={**os.environ, **(env or {})})
    controller = Controller(cluster, process, *api)
    try:
        controller.wait(f"{name} /healthz", lambda: _healthy(healthz_port), START_TIMEOUT_S)
    except BaseException:
        controller.stop()
        raise
    return controller


def _healthy(port: int) -> bool | None:
    try:
        return True if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200 else None
    except httpx.HTTPError:
        return None
