"""Faults of the test control plane: its API server stopped for a while and started again
(a restart, as on an upgrade), with the same flags, port and certificates, over the same
etcd. The other parts (controllers, kwok, the fake data plane) reconnect on their own."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import httpx

from tests.support.kube import ClusterError, KubeCluster, _spawn, _stop_processes

API_SERVER = "kube-apiserver"
READY_TIMEOUT_S = 60.0


def _ready(cluster: KubeCluster) -> bool:
    pki = cluster.workdir / "pki"
    tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    try:
        with httpx.Client(verify=tls, timeout=2.0) as http:
            return http.get(f"{cluster.server}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def stop_api_server(cluster: KubeCluster) -> None:
    """SIGTERM (SIGKILL after the grace): from now on calls are refused."""
    _stop_processes([p for p in cluster._processes if p.name == API_SERVER])


def start_api_server(cluster: KubeCluster) -> float:
    """Starts it again as it first ran; returns the seconds until /readyz passed."""
    index, old = next((i, p) for i, p in enumerate(cluster._processes) if p.name == API_SERVER)
    if old.popen.poll() is None:
        raise ClusterError("the API server is running: stop it first")
    started = time.monotonic()
    cluster._processes[index] = _spawn(API_SERVER, cast(list[str], old.popen.args), cluster.workdir)
    while not _ready(cluster):
        cluster._check_alive()
        if time.monotonic() - started > READY_TIMEOUT_S:
            raise ClusterError(
                f"the API server was not ready {READY_TIMEOUT_S:.0f} s after a restart"
            )
        time.sleep(0.2)
    return time.monotonic() - started


@contextmanager
def api_server_stopped(cluster: KubeCluster) -> Iterator[None]:
    """The API server is down for the block, and back (ready) after it."""
    stop_api_server(cluster)
    try:
        yield
    finally:
        start_api_server(cluster)
