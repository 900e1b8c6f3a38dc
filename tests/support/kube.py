"""What stands in for the pods of the test control plane (bench/support/kube.py).

No container runs behind a kwok pod, so `FakeDataPlane` stands in for the pods and the
Gateway data plane: host processes of the demo service per Deployment track, a real
Prometheus scraping them with the pods' labels, and a loader that splits requests by
the HTTPRoute's weights.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import urllib3
from bench.support.kube import (
    GATEWAY_GROUP,
    ClusterError,
    KubeCluster,
    _log_tail,
    _Process,
    _spawn,
    _stop_processes,
    _wait,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

from swiftdeploy.fsutil import atomic_write
from swiftdeploy.ports import free_port

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: kubernetes-pods
    metrics_path: /metrics
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: 1s
"""
DEMO = str(Path(sys.executable).with_name("swiftdeploy-demo"))
POLL_S = 0.25
# Bounds every API call of the data plane's threads, so close() never waits on a hung one.
API_TIMEOUT_S = 5.0
# What a call the threads retry on their next tick can raise: a refusal or a timeout.
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError)
SERVICE_CACHE_S = 2.0


@dataclass
class FakePod:
    """A host process standing in for a Deployment's pods (one process per Deployment)."""

    deployment: str
    track: str
    version: str
    pod: str
    port: int
    template_labels: dict[str, str]
    process: _Process
    chaos_token: str
    healthy: bool = False
    kube_ready: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class TrackCounts:
    sent: int = 0
    failed: int = 0


class FakeDataPlane:
    """Stands in for the containers behind kwok's pods and for the Gateway's data plane.

    (a) For every Deployment labelled app=<service> with replicas > 0, one host process
        of the demo service at the version after ':' in its image; restarted when the
        image changes, stopped when the Deployment is gone or scaled to 0.
    (b) A real Prometheus scraping those processes every `scrape_interval_s` with the
        labels a pod scrape has: namespace, app, track, pod.
    (c) A loader sending `rate_rps` requests a second split by the weights of the
        HTTPRoute named <service>, resolving each backendRef's Service selector to the
        process of the Deployment it selects. A backend is routed only when its process
        answers /healthz and its Deployment has a ready replica, as a Gateway routes only
        to ready endpoints. A request with nowhere to go (no route, no ready backend, or
        16 requests already in flight) is not sent and counted as `unrouted`.

    Everything is bounded and stopped by close().
    """

    def __init__(
        self,
        cluster: KubeCluster,
        namespace: str,
        service: str,
        *,
        rate_rps: float = 40.0,
        scrape_interval_s: float = 1.0,
        workdir: Path | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.service = service
        self.rate_rps = rate_rps
        self.workdir = workdir or cluster.workdir / f"dataplane-{namespace}-{service}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pods: dict[str, FakePod] = {}
        self._counts: dict[str, TrackCounts] = {}
        self.unrouted = 0
        self.route_reads = 0
        self._stop = threading.Event()
        self._closed = False
        self._targets = self.workdir / "targets.json"
        atomic_write(self._targets, "[]")
        port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        interval = f"{round(scrape_interval_s * 1000)}ms"
        atomic_write(
            self.workdir / "prometheus.yml",
            PROMETHEUS_CONFIG.format(interval=interval, targets=self._targets),
        )
        binary = shutil.which("prometheus")
        if binary is None:
            raise ClusterError("prometheus is not installed: run `make setup`")
        self._prometheus = _spawn(
            "prometheus",
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            self.workdir,
        )
        self._http = httpx.Client(timeout=2.0)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-gateway")
        self._threads: list[threading.Thread] = []
        try:
            _wait(
                "Prometheus to be ready",
                lambda: True if self._get_ok(f"{self.prometheus_url}/-/ready") else None,
                20,
                self._check_prometheus,
            )
            for target in (self._reconcile_loop, self._load_loop):
                thread = threading.Thread(target=target, daemon=True, name=target.__name__)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.close()
            raise

    # --- what tests read -------------------------------------------------------------

    def counts(self) -> dict[str, TrackCounts]:
        """Requests the loader sent and failed (5xx or no answer), by track."""
        with self._lock:
            return {track: TrackCounts(c.sent, c.failed) for track, c in self._counts.items()}

    def pods(self) -> dict[str, FakePod]:
        """The running stand-ins, by track."""
        with self._lock:
            return {pod.track: pod for pod in self._pods.values()}

    def chaos(self, track: str, error_rate: float = 0.0, latency_ms: float = 0.0) -> None:
        """Makes the track's process fail or slow down (the demo's /chaos endpoint)."""
        pod = self.pods()[track]
        response = self._http.post(
            f"{pod.url}/chaos",
            json={"error_rate": error_rate, "latency_ms": latency_ms},
            headers={"Authorization": f"Bearer {pod.chaos_token}"},
        )
        response.raise_for_status()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        response = self._http.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql})
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def request(self, headers: dict[str, str] | None = None) -> tuple[str, int] | None:
        """Routes one GET / as the Gateway would, headers included (say X-Canary: always):
        the track that answered and the status, or None when the rule has no ready
        backend. Not counted in counts()."""
        with self.cluster.api_client(self.cluster.admin_kubeconfig) as api:
            services: dict[str, dict[str, str]] = {}
            refs = self._read_route(
                client.CustomObjectsApi(api), client.CoreV1Api(api), services, headers or {}
            )
        refs = [(name, weight) for name, weight in refs if weight > 0]
        if not refs:
            return None
        name = random.choices([n for n, _ in refs], weights=[w for _, w in refs])[0]
        pod = self._routable(services.get(name, {}))
        if pod is None:
            return None
        return pod.track, self._http.get(f"{pod.url}/").status_code

    def __enter__(self) -> FakeDataPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            pods = list(self._pods.values())
            self._pods.clear()
        _stop_processes([*(p.process for p in pods), self._prometheus])
        self._http.close()

    # --- (a) processes per Deployment ------------------------------------------------

    def _reconcile_loop(self) -> None:
        with self.cluster.api_client(self.cluster.admin_kubeconfig) as api:
            apps = client.AppsV1Api(api)
            while not self._stop.wait(POLL_S):
                try:
                    deployments = apps.list_namespaced_deployment(
                        self.namespace,
                        label_selector=f"app={self.service}",
                        _request_timeout=API_TIMEOUT_S,
                    ).items
                except API_ERRORS:
                    continue  # e.g. the namespace is being deleted; try again next tick
                self._reconcile(deployments)

    def _reconcile(self, deployments: list[client.V1Deployment]) -> None:
        wanted = {}
        for d in deployments:
            if (d.spec.replicas or 0) > 0 and d.metadata.deletion_timestamp is None:
                wanted[d.metadata.name] = d
        changed = False
        with self._lock:
            current = dict(self._pods)
        for name, pod in current.items():
            d = wanted.get(name)
            if d is None or _version(d) != pod.version or pod.process.popen.poll() is not None:
                self._remove(name)
                changed = True
        for name, d in wanted.items():
            with self._lock:
                pod = self._pods.get(name)
            if pod is None:
                pod = self._start_pod(d)
                changed = True
            pod.kube_ready = (d.status.ready_replicas or 0) > 0
            if not pod.healthy:
                pod.healthy = self._get_ok(f"{pod.url}/healthz")
        if changed:
            self._write_targets()

    def _start_pod(self, d: client.V1Deployment) -> FakePod:
        name = d.metadata.name
        labels = dict(d.spec.template.metadata.labels or {})
        track = labels.get("track") or (d.metadata.labels or {}).get("track", "")
        version = _version(d)
        port = free_port()
        token = secrets.token_hex(16)
        env = {**os.environ, "SWIFTDEPLOY_CHAOS_TOKEN": token}
        process = _spawn(
            f"{name}-{version}",
            [DEMO, "--port", str(port), "--version", version],
            self.workdir,
            env,
        )
        # A fresh name per start, as a new ReplicaSet's pod would have.
        pod_name = f"{name}-{secrets.token_hex(3)}"
        pod = FakePod(name, track, version, pod_name, port, labels, process, token)
        with self._lock:
            self._pods[name] = pod
        return pod

    def _remove(self, name: str) -> None:
        with self._lock:
            pod = self._pods.pop(name, None)
        if pod is not None:
            _stop_processes([pod.process])

    def _write_targets(self) -> None:
        with self._lock:
            pods = list(self._pods.values())
        groups = [
            {
                "targets": [f"127.0.0.1:{pod.port}"],
                "labels": {
                    "namespace": self.namespace,
                    "app": self.service,
                    "track": pod.track,
                    "pod": pod.pod,
                },
            }
            for pod in pods
        ]
        atomic_write(self._targets, json.dumps(groups))

    # --- (c) the loader, split by the HTTPRoute ---------------------------------------

    def _load_loop(self) -> None:
        with self.cluster.api_client(self.cluster.admin_kubeconfig) as api:
            custom = client.CustomObjectsApi(api)
            core = client.CoreV1Api(api)
            services: dict[str, dict[str, str]] = {}
            services_read = 0.0
            refs: list[tuple[str, int]] = []
            current: dict[str, int] = {}
            interval = 1.0 / self.rate_rps
            next_route = next_send = time.monotonic()
            inflight = threading.BoundedSemaphore(16)
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_route:
                    next_route = now + POLL_S
                    if now - services_read > SERVICE_CACHE_S:
                        services, services_read = {}, now
                    refs = self._read_route(custom, core, services, {})
                    current = {name: current.get(name, 0) for name, _ in refs}
                if now < next_send:
                    self._stop.wait(min(next_send, next_route) - now)
                    continue
                next_send += interval
                if next_send < now - 1.0:
                    next_send = now  # fell behind (a slow tick): do not burst to catch up
                choice = _smooth_weighted_pick(refs, current)
                pod = self._routable(services.get(choice, {})) if choice else None
                if pod is None or not inflight.acquire(blocking=False):
                    with self._lock:
                        self.unrouted += 1
                    continue
                self._pool.submit(self._send, pod, inflight)

    def _read_route(
        self,
        custom: client.CustomObjectsApi,
        core: client.CoreV1Api,
        services: dict[str, dict[str, str]],
        headers: dict[str, str],
    ) -> list[tuple[str, int]]:
        """The weighted Services the rule for a GET / with `headers` sends to; `services`
        gains the selectors of those not in it yet."""
        try:
            route = custom.get_namespaced_custom_object(
                GATEWAY_GROUP,
                "v1",
                self.namespace,
                "httproutes",
                self.service,
                _request_timeout=API_TIMEOUT_S,
            )
        except API_ERRORS:
            return []
        with self._lock:
            self.route_reads += 1
        refs = [
            (ref["name"], int(ref.get("weight", 1)))
            for ref in _matching_rule(route, headers).get("backendRefs", [])
            if ref.get("kind", "Service") == "Service"
        ]
        for name, _ in refs:
            if name not in services:
                try:
                    service = core.read_namespaced_service(
                        name, self.namespace, _request_timeout=API_TIMEOUT_S
                    )
                    selector = service.spec.selector
                except API_ERRORS:
                    continue
                services[name] = dict(selector or {})
        return refs

    def _routable(self, selector: dict[str, str]) -> FakePod | None:
        if not selector:
            return None
        with self._lock:
            for pod in self._pods.values():
                selected = all(pod.template_labels.get(k) == v for k, v in selector.items())
                if selected and pod.healthy and pod.kube_ready:
                    return pod
        return None

    def _send(self, pod: FakePod, inflight: threading.BoundedSemaphore) -> None:
        try:
            failed = self._http.get(f"{pod.url}/").status_code >= 500
        except httpx.HTTPError:
            failed = True
        finally:
            inflight.release()
        with self._lock:
            counts = self._counts.setdefault(pod.track, TrackCounts())
            counts.sent += 1
            counts.failed += int(failed)

    # --- helpers ----------------------------------------------------------------------

    def _get_ok(self, url: str) -> bool:
        try:
            return self._http.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _check_prometheus(self) -> None:
        code = self._prometheus.popen.poll()
        if code is not None:
            log = _log_tail(self._prometheus.log)
            raise ClusterError(f"prometheus exited with code {code}:\n{log}")


def _version(d: client.V1Deployment) -> str:
    image: str = d.spec.template.spec.containers[0].image
    name = image.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[1] if ":" in name else "latest"


def _matching_rule(route: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The rule a GET / with `headers` takes: of the rules with a match whose path is / and
    whose header matches (Exact; names case-insensitive) all hold, the one with the most
    header matches, then the first (Gateway API's precedence, for this one path)."""
    given = {name.lower(): value for name, value in headers.items()}
    best: dict[str, Any] = {}
    best_headers = -1
    for rule in route.get("spec", {}).get("rules", []):
        for match in rule.get("matches") or [{}]:
            path = match.get("path", {"type": "PathPrefix", "value": "/"})
            if path.get("type", "PathPrefix") != "PathPrefix" or path.get("value") != "/":
                continue
            wanted = match.get("headers") or []
            holds = all(
                h.get("type", "Exact") == "Exact" and given.get(h["name"].lower()) == h["value"]
                for h in wanted
            )
            if holds and not match.get("queryParams") and len(wanted) > best_headers:
                best, best_headers = rule, len(wanted)
    return best


def _smooth_weighted_pick(refs: list[tuple[str, int]], current: dict[str, int]) -> str | None:
    """nginx's smooth weighted round robin: an exact split over every sum-of-weights picks."""
    total = sum(weight for _, weight in refs if weight > 0)
    if total == 0:
        return None
    best = None
    for name, weight in refs:
        if weight <= 0:
            continue
        current[name] = current.get(name, 0) + weight
        if best is None or current[name] > current[best]:
            best = name
    assert best is not None
    current[best] -= total
    return best
