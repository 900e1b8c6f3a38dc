"""`swiftdeploy status`: versions, weights, replicas, health and requests per second."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from swiftdeploy.errors import TrafficError
from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.state import State
from swiftdeploy.traffic.base import RouterStatus
from swiftdeploy.wiring import metrics_provider

TRAFFIC_FIELDS = {"status", "requests", "errors", "error_rate", "rps", "quantiles", "elapsed_s"}


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
    traffic: dict[str, Measurement]

    def as_dict(self) -> dict[str, object]:
        return {
            "phase": self.state.phase.value,
            "stable_version": self.state.stable_version,
            "canary_version": self.state.canary_version,
            "canary_weight": self.router.routes.canary_weight if self.router else None,
            "step_index": self.state.step_index,
            "rollout_id": self.state.rollout_id,
            "message": self.state.message,
            "last_look": self.state.last_look.model_dump() if self.state.last_look else None,
            "replicas": [r.__dict__ for r in self.replicas],
            "traffic": {
                track: m.model_dump(mode="json", include=TRAFFIC_FIELDS)
                for track, m in self.traffic.items()
            },
        }


class TrafficMeter:
    """The manifest's provider, as `metrics` uses it, without saved history: status
    shows the same numbers and never disturbs a running rollout's."""

    def __init__(self, fleet: Fleet) -> None:
        self.provider = metrics_provider(fleet, keep_history=False)

    def measure(self, window_s: float) -> dict[str, Measurement]:
        return {track: self.provider.measure(track, window_s) for track in ("stable", "canary")}


def collect_status(fleet: Fleet, meter: TrafficMeter | None, window_s: float) -> StatusReport:
    """One status snapshot, with each track's traffic over the last `window_s` seconds;
    without a meter there are no rates."""
    state = fleet.store.load()
    router: RouterStatus | None
    try:
        router = fleet.router.current()
    except TrafficError:
        router = None
    traffic: dict[str, Measurement] = {}
    if meter is not None and router is not None:
        traffic = meter.measure(window_s)
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
    return StatusReport(state, router, replicas, traffic)


def _healthy(fleet: Fleet, endpoint: str) -> bool:
    try:
        url = f"http://{endpoint}{fleet.loaded.manifest.service.health}"
        return fleet.http.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
