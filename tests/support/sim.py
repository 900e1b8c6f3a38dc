"""A simulated service behind a simulated router, for driving the real RolloutEngine
and the real shipped Rego policy without processes, in simulated time.

Traffic: Poisson arrivals at `total_rps`, split between the tracks exactly as the
nginx router does (a deterministic interleave: of every 100 requests, `weight` go to
the canary); each track's requests fail with its error rate (binomial) and take a
log-normal latency (median, sigma) plus a fixed extra, counted into the router's
histogram buckets. The metrics provider reads these cumulative counters like the
`nginx` provider reads nginx's, so the engine sees exactly what a real rollout would.
Used by the engine's unit tests and by bench/rollouts.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml
from scipy.stats import lognorm

from swiftdeploy.commands.deploy import deploy
from swiftdeploy.commands.init import init_project
from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.fleet import Fleet
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.rollout.engine import RolloutEngine, TickReport
from swiftdeploy.runtime.base import ProcessInfo, ReplicaView
from swiftdeploy.runtime.hosted import routes_for
from swiftdeploy.state import FileStateStore, Replica, State, StateStore, Track
from swiftdeploy.traffic.base import RouterStatus, Routes

# The nginx router's histogram bounds (swiftdeploy_router.lua), in seconds.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
          1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # fmt: skip
LABELS = (*(f"{b:g}" for b in BOUNDS), "+Inf")
TRACKS = ("canary", "stable")


@dataclass(frozen=True)
class TrackModel:
    """How one version behaves: its error rate and latency."""

    error_rate: float = 0.005
    latency_median_s: float = 0.02
    latency_sigma: float = 0.5
    extra_latency_s: float = 0.0

    def bucket_probabilities(self) -> np.ndarray:
        """The chance that a request lands in each bucket (non-cumulative, +Inf last)."""
        shifted = np.maximum(np.array(BOUNDS) - self.extra_latency_s, 0.0)
        cdf = lognorm.cdf(shifted, s=self.latency_sigma, scale=self.latency_median_s)
        cdf = np.concatenate([cdf, [1.0]])
        return np.diff(np.concatenate([[0.0], cdf]))


class SimClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(LABELS), dtype=np.int64))

    def copy(self) -> _Tally:
        return _Tally(self.requests, self.errors, self.buckets.copy())


class SimTraffic:
    """Both tracks' cumulative counters, advanced lazily to the clock's time."""

    def __init__(
        self,
        clock: SimClock,
        total_rps: float,
        stable: TrackModel,
        canary: TrackModel,
        rng: np.random.Generator,
    ) -> None:
        self.clock = clock
        self.total_rps = total_rps
        self.models = {"stable": stable, "canary": canary}
        self.rng = rng
        self.weight = 0
        self.arrivals = 0
        self.last = clock.now
        self.tallies = {track: _Tally() for track in TRACKS}
        self._probabilities = {t: m.bucket_probabilities() for t, m in self.models.items()}

    def advance(self) -> None:
        span = self.clock.now - self.last
        if span <= 0:
            return
        self.last = self.clock.now
        arrivals = int(self.rng.poisson(self.total_rps * span))
        before = self.arrivals * self.weight // 100
        self.arrivals += arrivals
        canary = self.arrivals * self.weight // 100 - before
        for track, count in (("canary", canary), ("stable", arrivals - canary)):
            if count <= 0:
                continue
            tally = self.tallies[track]
            tally.requests += count
            tally.errors += int(self.rng.binomial(count, self.models[track].error_rate))
            tally.buckets += self.rng.multinomial(count, self._probabilities[track])

    def set_weight(self, weight: int) -> None:
        self.advance()
        self.weight = weight

    def reading(self, track: str) -> _Tally:
        self.advance()
        return self.tallies[track].copy()


class SimProvider:
    """The metrics provider over SimTraffic: marks and increments, as `nginx` gives them."""

    name = "sim"
    resolution_s = 0.25

    def __init__(self, traffic: SimTraffic) -> None:
        self.traffic = traffic
        self.readings: dict[str, dict[float, _Tally]] = {track: {} for track in TRACKS}

    def mark(self, track: str) -> float | None:
        now = self.traffic.clock.now
        self.readings[track][now] = self.traffic.reading(track)
        return now

    def measure_since(self, track: str, since: float) -> Measurement:
        start = self.readings[track].get(since)
        self.mark(track)
        if start is None:
            now = self.traffic.clock.now
            return Measurement(
                track=track, provider=self.name, status="no_data", window_start=now,
                window_end=now, elapsed_s=0.0,
            )  # fmt: skip
        return self._between(track, since, start)

    def measure(self, track: str, window_s: float) -> Measurement:
        self.mark(track)
        now = self.traffic.clock.now
        before = [t for t in self.readings[track] if t <= now - window_s]
        first = max(before) if before else min(self.readings[track])
        return self._between(track, first, self.readings[track][first])

    def is_online(self) -> bool:
        return True

    def _between(self, track: str, since: float, start: _Tally) -> Measurement:
        now = self.traffic.clock.now
        end = self.readings[track][now]
        self.readings[track] = {t: r for t, r in self.readings[track].items() if t >= since}
        cumulative = np.cumsum(end.buckets - start.buckets)
        return summarize(
            track=track,
            provider=self.name,
            window_start=since,
            window_end=now,
            requests=end.requests - start.requests,
            errors=end.errors - start.errors,
            buckets={le: int(count) for le, count in zip(LABELS, cumulative, strict=True)},
        )


class SimRouter:
    name = "sim"

    def __init__(self, traffic: SimTraffic) -> None:
        self.traffic = traffic
        self.routes = Routes()

    def prepare(self) -> ProcessSpec:
        return ProcessSpec(name="nginx", argv=["true"])

    def wait_ready(self, timeout: float) -> None:
        return None

    def apply(self, routes: Routes) -> None:
        self.routes = routes
        self.traffic.set_weight(routes.canary_weight)

    def current(self) -> RouterStatus:
        return RouterStatus(routes=self.routes)

    def close(self) -> None:
        return None

    def read_metrics(self, track: str) -> str:
        raise NotImplementedError("the simulation measures through SimProvider")

    def read_history(self, track: str, start: int, end: int) -> dict[str, object]:
        raise NotImplementedError("the simulation measures through SimProvider")


class SimProcesses:
    """The platform's process manager: nothing to run in a simulation."""

    name = "sim"

    def ensure_running(self) -> None:
        return None

    def start(self, spec: ProcessSpec) -> ProcessInfo:
        return ProcessInfo(name=spec.name, state="RUNNING", pid=0)

    def stop(self, name: str) -> None:
        return None

    def processes(self) -> list[ProcessInfo]:
        return []

    def shutdown(self) -> list[int]:
        return []

    def is_running(self) -> bool:
        return True


class SimTracks:
    """The TrackRuntime of the simulation: replicas are entries in the state, ready at
    once unless their version is in `never_ready`; the split goes to SimRouter."""

    def __init__(self, store: StateStore, router: SimRouter) -> None:
        self.store = store
        self.router = router
        self.never_ready: set[str] = set()

    def check_version(self, version: str) -> None:
        """Every simulated version can start."""

    def ensure_platform(self) -> None:
        return None

    def ensure_track(self, state: State, track: Track, version: str, replicas: int) -> State:
        present = [r for r in state.track(track) if r.version == version]
        for index in range(len(present), replicas):
            replica = Replica(
                name=f"{track}-{version}-{index}",
                track=track,
                version=version,
                port=9000 + len(state.replicas),
            )
            state = self.store.save(state.with_replica(replica))
            if version in self.never_ready:
                raise RuntimeProcessError(f"{replica.name} failed its health check")
            state = self.store.save(state.with_replica(replica.model_copy(update={"ready": True})))
        return state

    def replace_stable(self, state: State, version: str) -> State:
        old = {r.name for r in state.track("stable") if r.version != version}
        state = self.ensure_track(state, "stable", version, len(state.track("stable")))
        return self._retire(state, old)

    def retire_track(self, state: State, track: Track) -> State:
        return self._retire(state, {r.name for r in state.track(track)})

    def _retire(self, state: State, names: set[str]) -> State:
        self.apply_split(state.without(names))
        return self.store.save(state.without(names))

    def apply_split(self, state: State) -> None:
        self.router.apply(routes_for(state))

    def reconcile(self, state: State) -> State:
        self.apply_split(state)
        return self.store.save(state.without({r.name for r in state.replicas if not r.ready}))

    def replicas(self) -> list[ReplicaView]:
        routed = set(self.router.routes.stable + self.router.routes.canary)
        return [
            ReplicaView(
                name=r.name,
                track=r.track,
                version=r.version,
                endpoint=r.endpoint,
                process="RUNNING",
                pid=0,
                healthy=r.ready,
                routed=r.endpoint in routed,
            )
            for r in self.store.load().replicas
        ]

    def track_healthy(self, state: State, track: Track) -> bool:
        replicas = state.track(track)
        return bool(replicas) and all(r.ready for r in replicas)

    def routed_weight(self) -> int | None:
        return self.router.routes.canary_weight

    def teardown(self) -> list[int]:
        self.store.save(State())
        return []


class MemoryStore(FileStateStore):
    """The state in memory: the simulation measures decisions, not the disk."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.state = State()

    def load(self) -> State:
        return self.state

    def save(self, state: State) -> State:
        self.state = state
        return state


class ListRecorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, object]]] = []

    def record(self, kind: str, **fields: object) -> None:
        self.records.append((kind, fields))

    def decisions(self) -> Iterator[dict[str, object]]:
        return (fields for kind, fields in self.records if kind == "decision")


def init_manifest(directory: Path, **changes: object) -> LoadedManifest:
    """`swiftdeploy init`'s manifest and policies in `directory`, with `changes` applied
    (dotted keys, e.g. {"strategy.canary.analysis.max_duration": "2m"}); no drain wait."""
    init_project(directory, "127.0.0.1:18080", force=True)
    path = directory / "swiftdeploy.yaml"
    data = yaml.safe_load(path.read_text())
    for dotted, value in {"traffic.drain": 0, **changes}.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_manifest(path)


@dataclass
class SimWorld:
    """Everything one simulated rollout needs, wired like the CLI wires the real thing."""

    clock: SimClock
    traffic: SimTraffic
    provider: SimProvider
    fleet: Fleet
    recorder: ListRecorder
    store: MemoryStore
    tracks: SimTracks

    def engine(self, policy: PolicyEngine, on_tick: object | None = None) -> RolloutEngine:
        engine = RolloutEngine(
            fleet=self.fleet,
            metrics=self.provider,
            policy=policy,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        if callable(on_tick):
            engine.on_tick = on_tick  # type: ignore[assignment]
        return engine


def sim_world(
    loaded: LoadedManifest,
    *,
    total_rps: float,
    stable: TrackModel,
    canary: TrackModel,
    seed: int,
    warmup_s: float = 60.0,
) -> SimWorld:
    """A deployed stable (v1) that has served `warmup_s` of traffic, ready for a rollout."""
    clock = SimClock()
    traffic = SimTraffic(clock, total_rps, stable, canary, np.random.default_rng(seed))
    provider = SimProvider(traffic)
    recorder = ListRecorder()
    store = MemoryStore(loaded.state_dir)
    router = SimRouter(traffic)
    tracks = SimTracks(store, router)
    fleet = Fleet(
        loaded=loaded,
        tracks=tracks,
        processes=SimProcesses(),
        router=router,
        store=store,
        http=httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))),
        progress=lambda message: None,
        recorder=recorder,
    )
    deploy(fleet, "v1")
    provider.mark("stable")
    clock.sleep(warmup_s)
    return SimWorld(clock, traffic, provider, fleet, recorder, store, tracks)


def ticks(reports: list[TickReport]) -> object:
    """An on_tick that keeps every report."""
    return reports.append


def stable_rate_for(canary_rps: float, first_weight: int) -> float:
    """The total request rate that gives the canary `canary_rps` at the first step."""
    return canary_rps * 100 / first_weight if first_weight else math.inf
