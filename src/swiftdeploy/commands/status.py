"""`swiftdeploy status`: versions, weights, replicas, health and requests per second."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from swiftdeploy.errors import TrafficError
from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.state import State
from swiftdeploy.traffic.base import RouterStatus


@dataclass(frozen=True)
class TrackCounts:
    at: float
    requests: dict[str, float]
    errors: dict[str, float]


@dataclass(frozen=True)
class ReplicaStatus:
    name: str
    track: str
    version: str
    endpoint: str
    process: str
    pid: int
    healthy: bool
    routed: bool


@dataclass(frozen=True)
class StatusReport:
    state: State
    router: RouterStatus | None
    replicas: list[ReplicaStatus]
    rps: dict[str, float]
    error_rate: dict[str, float | None]
    sampled_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "phase": self.state.phase.value,
            "stable_version": self.state.stable_version,
            "canary_version": self.state.canary_version,
            "canary_weight": self.router.routes.canary_weight if self.router else None,
            "step_index": self.state.step_index,
            "rollout_id": self.state.rollout_id,
            "replicas": [r.__dict__ for r in self.replicas],
            "rps": self.rps,
            "error_rate": self.error_rate,
            "sampled_s": round(self.sampled_s, 3),
        }


def read_counts(fleet: Fleet) -> TrackCounts | None:
    """Per-track totals from nginx's own counters; None when nginx is not up."""
    metrics_text = getattr(fleet.router, "metrics_text", None)
    if metrics_text is None:
        return None
    try:
        text = metrics_text()
    except TrafficError:
        return None
    requests: dict[str, float] = {"stable": 0.0, "canary": 0.0}
    errors: dict[str, float] = {"stable": 0.0, "canary": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name != "swiftdeploy_nginx_requests":
            continue
        for sample in family.samples:
            track = sample.labels["track"]
            requests[track] += sample.value
            if sample.labels["code_class"] == "5xx":
                errors[track] += sample.value
    return TrackCounts(at=time.monotonic(), requests=requests, errors=errors)


def collect_status(
    fleet: Fleet, previous: TrackCounts | None, sample_s: float
) -> tuple[StatusReport, TrackCounts | None]:
    """One status snapshot; rates come from two counter reads and the real time between."""
    state = fleet.store.load()
    router: RouterStatus | None
    try:
        router = fleet.router.current()
    except TrafficError:
        router = None
    if previous is None and router is not None and sample_s > 0:
        previous = read_counts(fleet)
        time.sleep(sample_s)
    current = read_counts(fleet) if router is not None else None
    rps: dict[str, float] = {}
    error_rate: dict[str, float | None] = {}
    elapsed = 0.0
    if previous and current:
        elapsed = current.at - previous.at
        for track in ("stable", "canary"):
            served = current.requests[track] - previous.requests[track]
            failed = current.errors[track] - previous.errors[track]
            rps[track] = served / elapsed if elapsed > 0 else 0.0
            error_rate[track] = failed / served if served > 0 else None
    processes = {p.name: p for p in fleet.runtime.processes()}
    routed = set(router.routes.stable + router.routes.canary) if router else set()
    down = set(router.down) if router else set()
    replicas = []
    for replica in state.replicas:
        info = processes.get(replica.name)
        replicas.append(
            ReplicaStatus(
                name=replica.name,
                track=replica.track,
                version=replica.version,
                endpoint=replica.endpoint,
                process=info.state if info else "ABSENT",
                pid=info.pid if info else 0,
                healthy=_healthy(fleet, replica.endpoint) and replica.endpoint not in down,
                routed=replica.endpoint in routed,
            )
        )
    return StatusReport(state, router, replicas, rps, error_rate, elapsed), current


def _healthy(fleet: Fleet, endpoint: str) -> bool:
    try:
        url = f"http://{endpoint}{fleet.loaded.manifest.service.health}"
        return fleet.http.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
