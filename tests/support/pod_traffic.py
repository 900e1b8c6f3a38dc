"""What kwok's pods would serve, for a real Prometheus to scrape: kwok runs no
container, so a rollout controller's judge would see no traffic at all.

Every Ready pod serves `rps-per-pod` requests a second (default 100), failing
`error-share` of them, both read from the pod's annotations (so a new revision brings
its own behaviour), all answered in LATENCY_S. The counts are exported as a pod scrape
labels them: `namespace`, `pod`, and `rollouts_pod_template_hash` (Prometheus's usual
labelmap of Argo's pod label) when the pod has one. Scrape it with `honor_labels`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import urllib3
from bench.support.kube import KubeCluster
from kubernetes import client
from kubernetes.client.rest import ApiException

RPS = "e2e.swiftdeploy.dev/rps-per-pod"
ERRORS = "e2e.swiftdeploy.dev/error-share"
HASH_LABEL = "rollouts-pod-template-hash"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_S = 0.02
TICK_S = 0.25


@dataclass
class _Served:
    labels: str
    ok: float = 0.0
    failed: float = 0.0


class PodTraffic:
    """Counts every Ready pod's requests on a thread until close()."""

    def __init__(self, cluster: KubeCluster) -> None:
        self._api = cluster.api_client(cluster.admin_kubeconfig)
        self._core = client.CoreV1Api(self._api)
        self._served: dict[str, _Served] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._count, daemon=True)
        self._thread.start()

    def _count(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(TICK_S):
            try:
                pods = self._core.list_pod_for_all_namespaces(_request_timeout=5).items
            except (ApiException, urllib3.exceptions.HTTPError):
                continue  # counted at the next tick, over the longer span
            now = time.monotonic()
            span, last = now - last, now
            served = {}
            with self._lock:
                for pod in pods:
                    if not _ready(pod):
                        continue
                    meta = pod.metadata
                    key = f"{meta.namespace}/{meta.name}"
                    counted = self._served.get(key) or _Served(_labels(pod))
                    notes = meta.annotations or {}
                    rate = float(notes.get(RPS, "100"))
                    share = float(notes.get(ERRORS, "0"))
                    counted.ok += rate * span * (1 - share)
                    counted.failed += rate * span * share
                    served[key] = counted
                # A pod gone (or not Ready) is no longer scraped: its series end.
                self._served = served

    def exposition(self) -> bytes:
        """The counters as Prometheus text."""
        lines = ["# TYPE http_requests_total counter"]
        histogram = ["# TYPE http_request_duration_seconds histogram"]
        with self._lock:
            served = [(s.labels, int(s.ok), int(s.failed)) for s in self._served.values()]
        for labels, ok, failed in served:
            total = ok + failed
            lines.append(f'http_requests_total{{{labels},code="200"}} {ok}')
            lines.append(f'http_requests_total{{{labels},code="500"}} {failed}')
            bucket = f"http_request_duration_seconds_bucket{{{labels}"
            for bound in BUCKETS:
                histogram.append(f'{bucket},le="{bound}"}} {total if bound >= LATENCY_S else 0}')
            histogram.append(f'{bucket},le="+Inf"}} {total}')
            histogram.append(f"http_request_duration_seconds_count{{{labels}}} {total}")
            histogram.append(f"http_request_duration_seconds_sum{{{labels}}} {total * LATENCY_S}")
        return ("\n".join(lines + histogram) + "\n").encode()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api.close()


def _ready(pod: client.V1Pod) -> bool:
    if pod.metadata.deletion_timestamp is not None or pod.status is None:
        return False
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _labels(pod: client.V1Pod) -> str:
    meta = pod.metadata
    labels = f'namespace="{meta.namespace}",pod="{meta.name}"'
    pod_hash = (meta.labels or {}).get(HASH_LABEL)
    return f'{labels},rollouts_pod_template_hash="{pod_hash}"' if pod_hash else labels
