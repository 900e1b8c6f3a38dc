"""`swiftdeploy status`: versions, weights, replicas, health and requests per second."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from swiftdeploy.commands.context import metrics_provider
from swiftdeploy.commands.driver import (
    DriverStatus,
    driver_status,
    driving,
    in_cluster,
    notified_trail,
    outbox_text,
)
from swiftdeploy.fleet import Fleet
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.notify.deliver import selected
from swiftdeploy.notify.outbox import Standing, load, standings
from swiftdeploy.review.events import Since, read_events
from swiftdeploy.rollout.statistics import Settings, StepProgress, assess, step_progress
from swiftdeploy.runtime import backend
from swiftdeploy.runtime.base import ReplicaView
from swiftdeploy.state import State

# Bumped when a field changes meaning or goes; new fields do not bump it.
STATUS_SCHEMA_VERSION = 1
TRAFFIC_FIELDS = {"status", "requests", "errors", "error_rate", "rps", "quantiles", "elapsed_s"}


@dataclass(frozen=True)
class StatusReport:
    state: State
    weight: int | None  # the canary weight the router applies; None: it cannot be asked
    replicas: list[ReplicaView]
    traffic: dict[str, Measurement]
    # who drives the rollout; None when no rollout needs a driver (or the CLI drives)
    driver: DriverStatus | None = None
    # the current step's standing in numbers (what it still needs, ETA); None: no step
    step: StepProgress | None = None
    # what does not add up (Kubernetes: a state the driver refuses, versions that differ)
    warnings: tuple[str, ...] = ()
    # each notification sink: delivered up to, pending, dead letters (the outbox)
    notifications: tuple[Standing, ...] = ()

    def as_dict(self) -> dict[str, object]:
        driver = self.driver
        return {
            "schema_version": STATUS_SCHEMA_VERSION,
            "phase": self.state.phase.value,
            "stable_version": self.state.stable_version,
            "canary_version": self.state.canary_version,
            "canary_weight": self.weight,
            "step_index": self.state.step_index,
            "rollout_id": self.state.rollout_id,
            "message": self.state.message,
            # the gating hooks a step waits for (docs/notifications.md), and their answers
            "awaiting": self.state.awaiting.model_dump() if self.state.awaiting else None,
            "hooks": {name: a.model_dump() for name, a in self.state.hooks.items()},
            "last_look": self.state.last_look.model_dump() if self.state.last_look else None,
            "step": self.step.as_json() if self.step is not None else None,
            "driver": None
            if driver is None
            else {
                "running": driver.alive,
                "pid": driver.pid,
                "since": driver.since,
                "restarts": driver.restarts,
                "last_look_age_s": None
                if driver.last_look_at is None
                else round(time.time() - driver.last_look_at, 3),
                "exited": driver.exited,
                "holder": driver.holder,  # a driver in the cluster: its Lease identity
            },
            "warnings": list(self.warnings),
            "notifications": [sink.model_dump(mode="json") for sink in self.notifications],
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
    weight = fleet.tracks.routed_weight()
    traffic: dict[str, Measurement] = {}
    if meter is not None and weight is not None:
        traffic = meter.measure(window_s)
    step = None
    if state.evidence.current is not None and state.track("canary"):
        settings = Settings.of(fleet.loaded.manifest.policy)
        step = step_progress(assess(state.evidence, settings), state.evidence)
    driver = None
    if in_cluster(fleet.loaded) or (
        driving(state) and backend(fleet.loaded.manifest.runtime).HOST_DRIVER
    ):
        driver = driver_status(fleet.loaded, state)  # in a cluster, between rollouts too
    warnings: tuple[str, ...] = ()
    if fleet.loaded.manifest.runtime == "kubernetes":
        from swiftdeploy.commands.cluster_trail import state_warnings

        warnings = tuple(state_warnings(fleet.loaded, state))
    split = split_warning(state, weight)
    if split is not None:
        warnings = (*warnings, split)
    return StatusReport(
        state,
        weight,
        fleet.tracks.replicas(),
        traffic,
        driver,
        step,
        warnings,
        tuple(notification_status(fleet.loaded)),
    )


def notification_status(loaded: LoadedManifest) -> list[Standing]:
    """Each sink's standing: its cursor and dead letters from the outbox, and its
    events in the trail after the cursor (pending: the driver delivers them)."""
    sinks = loaded.manifest.notifications.sinks
    if not sinks:
        return []
    outbox = load(outbox_text(loaded))
    after = min((c.seq for c in outbox.sinks.values()), default=None)
    pending: dict[str, int] = {}
    if after is not None:
        for event in read_events(notified_trail_for_status(loaded), loaded.manifest.service.name,
                                 since=Since(seq=after)):  # fmt: skip
            for sink in sinks:
                cursor = outbox.sinks.get(sink.name)
                if cursor is not None and event["seq"] > cursor.seq and selected(sink, event):
                    pending[sink.name] = pending.get(sink.name, 0) + 1
    return standings([(sink.name, sink.kind) for sink in sinks], outbox, pending)


def notified_trail_for_status(loaded: LoadedManifest) -> Path:
    """The trail a person's `status` reads: on Kubernetes, the cluster's copied here."""
    if in_cluster(loaded):
        from swiftdeploy.commands.cluster_trail import sync

        return sync(loaded).path
    return notified_trail(loaded)


def split_warning(state: State, weight: int | None) -> str | None:
    """The router's weight when it is not the state's (someone edited the route since
    the last look): the rollout's next look restores it and restarts the step's
    evidence."""
    canary = any(r.ready for r in state.track("canary"))
    expected = state.canary_weight if canary else 0
    if weight is None or weight == expected:
        return None
    return (
        f"the route sends the canary {weight}% but the rollout's state says {expected}%: "
        "a running rollout's next look restores it and starts the step's evidence again"
    )
