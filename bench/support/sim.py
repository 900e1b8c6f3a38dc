"""A simulated service behind a simulated router, for driving the real RolloutEngine
and the real shipped Rego policy without processes, in simulated time.

Traffic: Poisson arrivals at `total_rps`, split between the tracks exactly as the
nginx router does (a deterministic interleave: of every 100 requests, `weight` go to
the canary), or at random (`split="random"`: each request to the canary with
probability weight/100); each track's requests fail with its error rate (binomial) and
take a log-normal latency (median, sigma) plus a fixed extra, counted into the router's
histogram buckets. The metrics provider reads these cumulative counters like the
`nginx` provider reads nginx's, so the engine sees exactly what a real rollout would,
with nginx's history of the stable before the rollout or (`history=False`) without any,
as with `scrape`. Used by the engine's unit tests and by bench/rollouts.py.

A TrackModel can also carry the conditions real services have (all off by default):

- a cold start: every request `cold_slowdown` times slower for the track's first
  `cold_start_s` seconds or first `cold_start_requests` requests after it started
  (SimTracks.ensure_track starting its replicas; failing that, the canary's weight
  first going above 0);
- stalls: each replica, in `stalls` episodes (a share of its time, each a fixed
  length, starting at random), serves its requests `stall_slowdown` times slower;
- error bursts: each replica, in `error_bursts` episodes, fails `burst_error_rate` of
  its requests, and `error_rate` outside them.

A track's requests go round-robin over its replicas (init's manifest: 2 stable, 1
canary). While any of these varies in time for a track, advance() draws the arrival
time, track and replica of every request of the span (numpy arrays, no per-request
Python), so whether each is cold, stalled or in a burst, then the errors and buckets
of each kind of request as counts (binomial, multinomial). Otherwise only counts are
drawn, as for a stationary service, so the common case stays cheap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
from swiftdeploy.stats.dispersion import BLOCK_S
from swiftdeploy.traffic.base import RouterStatus, Routes

# The nginx router's histogram bounds (swiftdeploy_router.lua), in seconds.
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
          1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # fmt: skip
LABELS = (*(f"{b:g}" for b in BOUNDS), "+Inf")
TRACKS = ("canary", "stable")
# Replicas per track in init's manifest (service.replicas, strategy.canary.replicas).
DEFAULT_REPLICAS = {"stable": 2, "canary": 1}

Split = Literal["interleave", "random"]
_BOUNDS = np.array(BOUNDS)


@dataclass(frozen=True)
class Episodes:
    """Recurring episodes of one replica (stalls, error bursts): `share` of its time,
    in episodes of `duration_s` each. The gaps between episodes are exponential (an
    alternating renewal process), so episodes start at random, never overlap, and the
    requests they touch come in bursts."""

    share: float
    duration_s: float = 0.5

    @property
    def mean_gap_s(self) -> float:
        """The mean time between one episode's end and the next one's start."""
        return self.duration_s * (1 - self.share) / self.share


@dataclass(frozen=True)
class TrackModel:
    """How one version behaves: its error rate and latency, and optionally a cold
    start, stalls and error bursts (see the module docstring)."""

    error_rate: float = 0.005
    latency_median_s: float = 0.02
    latency_sigma: float = 0.5
    extra_latency_s: float = 0.0
    cold_start_s: float = 0.0
    cold_start_requests: int = 0
    cold_slowdown: float = 3.0
    stalls: Episodes | None = None
    stall_slowdown: float = 10.0
    error_bursts: Episodes | None = None
    burst_error_rate: float = 0.5

    @property
    def cold_starts(self) -> bool:
        return self.cold_start_s > 0 or self.cold_start_requests > 0

    @property
    def has_episodes(self) -> bool:
        return self.stalls is not None or self.error_bursts is not None

    def mean_error_rate(self) -> float:
        """The long-run share of failed requests, error bursts included."""
        if self.error_bursts is None:
            return self.error_rate
        share = self.error_bursts.share
        return share * self.burst_error_rate + (1 - share) * self.error_rate

    def bucket_probabilities(self, slowdown: float = 1.0) -> np.ndarray:
        """The chance that a request lands in each bucket (non-cumulative, +Inf last),
        its whole latency (extra included) multiplied by `slowdown`."""
        shifted = np.maximum(_BOUNDS / slowdown - self.extra_latency_s, 0.0)
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


class _Timeline:
    """One replica's episodes, drawn lazily as the times asked about move on."""

    def __init__(self, episodes: Episodes, start: float, rng: np.random.Generator) -> None:
        self.episodes = episodes
        self.rng = rng
        self.starts: list[float] = []
        # Start in the stationary state: inside an episode with probability `share`
        # (at a uniform point of it); otherwise the gap left is exponential (memoryless).
        if rng.random() < episodes.share:
            self.next_start = start - rng.uniform(0.0, episodes.duration_s)
        else:
            self.next_start = start + rng.exponential(episodes.mean_gap_s)

    def covers(self, times: np.ndarray) -> np.ndarray:
        """For each of `times` (ascending, never before an earlier call's), whether it
        falls inside an episode."""
        if len(times) == 0:
            return np.zeros(0, dtype=bool)
        duration = self.episodes.duration_s
        while self.next_start <= times[-1]:
            self.starts.append(self.next_start)
            self.next_start += duration + self.rng.exponential(self.episodes.mean_gap_s)
        # Episodes over before these times cannot cover later ones either.
        over = 0
        while over < len(self.starts) and self.starts[over] + duration <= times[0]:
            over += 1
        del self.starts[:over]
        if not self.starts:
            return np.zeros(len(times), dtype=bool)
        starts = np.array(self.starts)
        latest = np.searchsorted(starts, times, side="right") - 1
        return (latest >= 0) & (times < starts[np.maximum(latest, 0)] + duration)


class SimTraffic:
    """Both tracks' cumulative counters, advanced lazily to the clock's time."""

    def __init__(
        self,
        clock: SimClock,
        total_rps: float,
        stable: TrackModel,
        canary: TrackModel,
        rng: np.random.Generator,
        *,
        split: Split = "interleave",
        replicas: dict[str, int] | None = None,
    ) -> None:
        self.clock = clock
        self.total_rps = total_rps
        self.models = {"stable": stable, "canary": canary}
        self.rng = rng
        self.split = split
        self.replicas = {**DEFAULT_REPLICAS, **(replicas or {})}
        self.weight = 0
        self.arrivals = 0
        self.last = clock.now
        self.tallies = {track: _Tally() for track in TRACKS}
        # When each track's replicas last started (None: before the simulation), and
        # the requests it served since: its cold start and round-robin count from there.
        self.started_at: dict[str, float | None] = dict.fromkeys(TRACKS)
        self.served = dict.fromkeys(TRACKS, 0)
        self._probabilities: dict[tuple[str, float], np.ndarray] = {}
        self._timelines: dict[tuple[str, str], list[_Timeline]] = {}

    def start_track(self, track: str, replicas: int | None = None) -> None:
        """The track's replicas (re)started now, `replicas` of them: its cold start
        begins and round-robin starts over at its first replica."""
        if self._varies_in_time(track, self.last):
            self.advance()  # what came before was served by the replicas before
        self.started_at[track] = self.clock.now
        self.served[track] = 0
        if replicas:
            self.replicas[track] = replicas

    def advance(self) -> None:
        span = self.clock.now - self.last
        if span <= 0:
            return
        start, self.last = self.last, self.clock.now
        arrivals = int(self.rng.poisson(self.total_rps * span))
        timed = [track for track in TRACKS if self._varies_in_time(track, start)]
        if timed and arrivals:
            self._advance_requests(start, span, arrivals, timed)
            return
        canary = self._canary_count(arrivals)
        for track, count in (("canary", canary), ("stable", arrivals - canary)):
            self._serve_counts(track, count)

    def set_weight(self, weight: int) -> None:
        self.advance()
        if weight > 0 and self.started_at["canary"] is None:
            # Nothing said when the canary started: its traffic starts it.
            self.started_at["canary"] = self.clock.now
        self.weight = weight

    def reading(self, track: str) -> _Tally:
        self.advance()
        return self.tallies[track].copy()

    # --- the split ----------------------------------------------------------------------

    def _canary_count(self, arrivals: int) -> int:
        before = self.arrivals
        self.arrivals += arrivals
        if self.split == "random":
            return int(self.rng.binomial(arrivals, self.weight / 100))
        # nginx's interleave: the first n requests carry n * weight // 100 canary ones
        return self.arrivals * self.weight // 100 - before * self.weight // 100

    def _to_canary(self, arrivals: int) -> np.ndarray:
        """Which of the next `arrivals` requests (in order) go to the canary."""
        index = self.arrivals + np.arange(arrivals, dtype=np.int64)
        self.arrivals += arrivals
        chosen: np.ndarray
        if self.split == "random":
            chosen = self.rng.random(arrivals) < self.weight / 100
        else:
            chosen = (index + 1) * self.weight // 100 - index * self.weight // 100 == 1
        return chosen

    # --- serving ------------------------------------------------------------------------

    def _varies_in_time(self, track: str, since: float) -> bool:
        """Whether the track's requests from `since` on need their times drawn."""
        model = self.models[track]
        if model.has_episodes:
            return True
        started = self.started_at[track]
        return (
            model.cold_start_s > 0 and started is not None and since < started + model.cold_start_s
        )

    def _serve_counts(self, track: str, count: int) -> None:
        """`count` requests of a track whose behaviour does not vary within the span."""
        if count <= 0:
            return
        model = self.models[track]
        cold = min(count, max(model.cold_start_requests - self.served[track], 0))
        self.served[track] += count
        tally = self.tallies[track]
        tally.requests += count
        tally.errors += int(self.rng.binomial(count, model.error_rate))
        tally.buckets += self.rng.multinomial(count - cold, self._bucket_probabilities(track, 1.0))
        if cold:
            slowdown = model.cold_slowdown
            tally.buckets += self.rng.multinomial(cold, self._bucket_probabilities(track, slowdown))

    def _advance_requests(self, start: float, span: float, arrivals: int, timed: list[str]) -> None:
        """Draw every request of the span: arrival times (uniform order statistics, as
        a Poisson process's given its count), track, replica, latency, error."""
        gaps = self.rng.exponential(size=arrivals + 1)
        times = start + span * np.cumsum(gaps[:-1]) / gaps.sum()
        to_canary = self._to_canary(arrivals)
        for track, mine in (("canary", to_canary), ("stable", ~to_canary)):
            if track in timed:
                self._serve_timed(track, times[mine])
            else:
                self._serve_counts(track, int(np.count_nonzero(mine)))

    def _serve_timed(self, track: str, times: np.ndarray) -> None:
        """The track's requests at these times (ascending): which of them are cold,
        stalled or in an error burst, then the counts of each kind of request."""
        count = len(times)
        if count == 0:
            return
        model = self.models[track]
        first = self.served[track]
        self.served[track] += count
        cold = np.zeros(count, dtype=bool)
        if model.cold_starts:
            cold[: max(model.cold_start_requests - first, 0)] = True
            started = self.started_at[track]
            if started is not None and model.cold_start_s > 0:
                cold |= times < started + model.cold_start_s
        stalled = self._in_episodes(track, "stalls", model.stalls, first, times)
        bad = self._in_episodes(track, "error bursts", model.error_bursts, first, times)
        tally = self.tallies[track]
        tally.requests += count
        in_burst = int(np.count_nonzero(bad))
        tally.errors += int(self.rng.binomial(in_burst, model.burst_error_rate))
        tally.errors += int(self.rng.binomial(count - in_burst, model.error_rate))
        # A multinomial per kind of request (cold or not, stalled or not): the same
        # buckets as one latency per request, without drawing thousands of latencies.
        kinds = np.bincount(cold.astype(np.int64) + 2 * stalled, minlength=4)
        for kind, kind_count in enumerate(kinds):
            if kind_count:
                slowdown = (model.cold_slowdown if kind & 1 else 1.0) * (
                    model.stall_slowdown if kind & 2 else 1.0
                )
                probabilities = self._bucket_probabilities(track, slowdown)
                tally.buckets += self.rng.multinomial(int(kind_count), probabilities)

    def _in_episodes(
        self, track: str, what: str, episodes: Episodes | None, first: int, times: np.ndarray
    ) -> np.ndarray:
        """Whether each request (the track's `first`-th onwards, round-robin over its
        replicas) came while its replica was in one of its episodes."""
        inside = np.zeros(len(times), dtype=bool)
        if episodes is None:
            return inside
        replicas = self.replicas[track]
        timelines = self._timelines.setdefault((track, what), [])
        while len(timelines) < replicas:
            timelines.append(_Timeline(episodes, float(times[0]), self.rng))
        for number in range(replicas):
            # round-robin: replica `number` serves every replicas-th request from here
            offset = (number - first) % replicas
            inside[offset::replicas] = timelines[number].covers(times[offset::replicas])
        return inside

    def _bucket_probabilities(self, track: str, slowdown: float) -> np.ndarray:
        key = (track, slowdown)
        if key not in self._probabilities:
            self._probabilities[key] = self.models[track].bucket_probabilities(slowdown)
        return self._probabilities[key]


class SimCounters:
    """The metrics provider over SimTraffic: marks and increments, as `nginx` and
    `scrape` give them, and no history from before the rollout (as `scrape`)."""

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
        return _summary(track, self.name, since, now, start, end)


class SimProvider(SimCounters):
    """SimCounters with the history `nginx` keeps: what a track served in each block
    of time before the rollout (metrics.base.BlockHistory)."""

    def blocks(self, track: str, window_s: float, block_s: float) -> list[Measurement]:
        """The readings taken every `block_s` before the rollout (sim_world takes them),
        as nginx's history gives them: consecutive blocks over the last `window_s`."""
        now = self.traffic.clock.now
        times = sorted(t for t in self.readings[track] if t >= now - window_s - 1e-9)
        return [
            self._block(track, start, end)
            for start, end in itertools.pairwise(times)
            if end - start >= block_s - 1e-9
        ]

    def _block(self, track: str, start: float, end: float) -> Measurement:
        return _summary(track, self.name, start, end, *map(self.readings[track].get, (start, end)))


def _summary(
    track: str, provider: str, since: float, until: float, first: _Tally | None, last: _Tally | None
) -> Measurement:
    """What a track served between two readings, as a provider's measurement."""
    assert first is not None
    assert last is not None
    cumulative = np.cumsum(last.buckets - first.buckets)
    return summarize(
        track=track,
        provider=provider,
        window_start=since,
        window_end=until,
        requests=last.requests - first.requests,
        errors=last.errors - first.errors,
        buckets={le: int(count) for le, count in zip(LABELS, cumulative, strict=True)},
    )


class SimRouter:
    name = "sim"

    def __init__(self, traffic: SimTraffic) -> None:
        self.traffic = traffic
        self.routes = Routes()

    def prepare(self) -> ProcessSpec:
        return ProcessSpec(name="nginx", argv=["true"])

    def check(self) -> None:
        return None

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
        if not present and replicas > 0:
            # A fresh start of the track's version: its cold start begins now.
            self.router.traffic.start_track(track, replicas)
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

    def reconcile_split(self, state: State) -> str | None:
        want = routes_for(state)
        if self.router.routes.canary_weight == want.canary_weight:
            return None
        found = self.router.routes.canary_weight
        self.apply_split(state)
        return f"the sim router sent the canary {found}%, not {want.canary_weight}%; restored"

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

    def flush(self) -> None:
        """Nothing is held back: every record is kept as it comes."""

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
    provider: SimCounters
    fleet: Fleet
    recorder: ListRecorder
    store: MemoryStore
    tracks: SimTracks

    def engine(
        self, policy: PolicyEngine, on_tick: Callable[[TickReport], None] | None = None
    ) -> RolloutEngine:
        engine = RolloutEngine(
            fleet=self.fleet,
            metrics=self.provider,
            policy=policy,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        if on_tick is not None:
            engine.on_tick = on_tick
        return engine


def sim_world(
    loaded: LoadedManifest,
    *,
    total_rps: float,
    stable: TrackModel,
    canary: TrackModel,
    seed: int,
    warmup_s: float = 300.0,
    split: Split = "interleave",
    history: bool = True,
) -> SimWorld:
    """A deployed stable (v1) that has served `warmup_s` of traffic, ready for a rollout,
    with a reading every BLOCK_S of it, as nginx's per-second history has them; without
    `history` the provider cannot give them (SimCounters, as `scrape`)."""
    clock = SimClock()
    manifest = loaded.manifest
    traffic = SimTraffic(
        clock,
        total_rps,
        stable,
        canary,
        np.random.default_rng(seed),
        split=split,
        replicas={"stable": manifest.service.replicas, "canary": manifest.strategy.canary.replicas},
    )
    provider = SimProvider(traffic) if history else SimCounters(traffic)
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
    for _ in range(math.floor(warmup_s / BLOCK_S)):
        clock.sleep(BLOCK_S)
        provider.mark("stable")
    clock.sleep(warmup_s % BLOCK_S)
    return SimWorld(clock, traffic, provider, fleet, recorder, store, tracks)


def ticks(reports: list[TickReport]) -> Callable[[TickReport], None]:
    """An on_tick that keeps every report."""
    return reports.append


def stable_rate_for(canary_rps: float, first_weight: int) -> float:
    """The total request rate that gives the canary `canary_rps` at the first step."""
    return canary_rps * 100 / first_weight if first_weight else math.inf
