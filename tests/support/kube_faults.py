"""Faults of the test control plane: its API server stopped for a while and started again
(a restart, as on an upgrade), with the same flags, port and certificates, over the same
etcd; the other parts (controllers, kwok, the fake data plane) reconnect on their own.
And `ScriptedServer`, a loopback HTTP server that answers as an API server in trouble
would (429, 5xx, a lost answer), as scripted."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import httpx
import kubernetes.client
import urllib3
from bench.support.kube import ClusterError, KubeCluster, _spawn, _stop_processes
from kubernetes import client
from kubernetes.client.rest import ApiException

from swiftdeploy.runtime.kubernetes import api
from swiftdeploy.runtime.kubernetes.api import Kube

API_SERVER = "kube-apiserver"
READY_TIMEOUT_S = 120.0


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
    """Starts it again as it first ran; returns once /readyz passes and the controllers
    act again (their watches back off through the outage, for up to about 30 s after
    it), with the seconds that took."""
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
    _wait_controllers(cluster, started + READY_TIMEOUT_S)
    return time.monotonic() - started


def _wait_controllers(cluster: KubeCluster, deadline: float) -> None:
    """A namespace made now gets its default ServiceAccount (the controller manager
    watches again) and the fake node is Ready (kwok renews it again)."""
    core = client.CoreV1Api(cluster.api)
    probe = f"restarted-{secrets.token_hex(3)}"
    while True:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe)))
            break
        except (ApiException, urllib3.exceptions.HTTPError):
            _before(deadline, "the API server to take a namespace")
    try:
        while not _answers(lambda: core.read_namespaced_service_account("default", probe)):
            _before(deadline, "the controller manager to act again")
        while not _answers(lambda: _ready_node(core, cluster.node_name)):
            _before(deadline, f"node {cluster.node_name} to be Ready again")
    finally:
        cluster.delete_namespace(probe)


def _ready_node(core: client.CoreV1Api, name: str) -> None:
    conditions = core.read_node(name).status.conditions or []
    if not any(c.type == "Ready" and c.status == "True" for c in conditions):
        raise ApiException(status=0, reason="not Ready")


def _answers(read: Callable[[], object]) -> bool:
    try:
        read()
    except (ApiException, urllib3.exceptions.HTTPError):
        return False
    return True


def _before(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise ClusterError(f"timed out after a restart of the API server waiting for {what}")
    time.sleep(0.5)


@contextmanager
def api_server_stopped(cluster: KubeCluster) -> Iterator[None]:
    """The API server is down for the block, and back (ready) after it."""
    stop_api_server(cluster)
    try:
        yield
    finally:
        start_api_server(cluster)


FOUND = {"kind": "ConfigMap", "metadata": {"name": "demo", "resourceVersion": "7"}}


Answer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], Callable[[], object]]


class ScriptedServer:
    """Answers each request with the next (status, headers[, body]) of `script`, then
    200 with FOUND; a body is made when the request comes."""

    def __init__(self, script: list[Answer]) -> None:
        self.script = list(script)
        self.seen: list[tuple[str, float]] = []  # (method, monotonic time)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.command, time.monotonic()))
                status, headers, *made = outer.script.pop(0) if outer.script else (200, {})
                default = FOUND if status == 200 else {"message": f"said {status}"}
                body = json.dumps(made[0]() if made else default)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def kube_at(url: str) -> Kube:
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    return Kube(api.client_for(configuration), "team-a")
