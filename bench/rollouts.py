"""Whole rollouts on `swiftdeploy init`'s defaults: how often a healthy release is
rolled back, how often a bad one is promoted, and how long each takes. Monte Carlo.

    .venv/bin/python bench/rollouts.py [--runs 2000] [--budget 240] [--cells 1,5,20,200,2000]
        [--kinds "healthy,stalls,random split"] [--no-history] [--out FILE]

Each run drives the real RolloutEngine with the real shipped Rego policy (embedded
engine) through a simulated service (bench/support/sim.py: Poisson arrivals split as
nginx splits them, binomial errors, log-normal latencies in the router's histogram
buckets) in simulated time, from `init`'s manifest unchanged (steps 10/25/50,
interval auto, min 30 s, max 10 min per step, alpha 0.01, beta 0.1, detect +1 point
and +100 ms). A rollout that holds at max_duration is resumed at once, as a person
would, until it ends or has run MAX_HOURS of simulated time; the table says how
often that happened and how long promotion then took.

Cells are the canary's requests per second at the first step's weight (10%), so the
service takes 10x that. The stable track fails 0.5% of requests (3% in "both 3%").
Kinds (KINDS; `--kinds` takes their names, comma-separated):

- regressions: "errors 5%", "errors 1.5%" (+1 point), "latency +300ms",
  "latency +100ms" (the default detect.latency), "latency +50ms" (half of it), and
  "both 3%" (both tracks at 3% errors, against max_error_rate 1%);
- healthy canaries (HEALTHY_KINDS; the table gives their rollback rate with its
  one-sided 95% Clopper-Pearson upper bound): "healthy" (as stable), and the
  conditions real services have, each on an otherwise healthy canary:
  - "cold start 60s": every canary request 3x slower for the first 60 s after its
    replicas start, identical afterwards;
  - "cold start 300 req": the same for its first 300 requests;
  - "stalls": each replica of both tracks (2 stable, 1 canary, round-robin) stalls
    2% of its time in 0.5 s episodes starting at random (exponential gaps), its
    requests 10x slower meanwhile, so slow requests come in bursts;
  - "error bursts": each replica of both tracks is bad 1% of its time in 0.5 s
    episodes, failing 50% of its requests then and none otherwise (0.5% overall);
  - "random split": each request goes to the canary with probability weight/100
    (Bernoulli) instead of nginx's exact interleave.

The metrics provider is the nginx one's (the stable's last five minutes of history
seed its spread before the canary starts); `--no-history` gives it none, as with the
`scrape` provider. Flagger and Argo keep no history either way.

Runs per cell: up to --runs, in batches, until --budget seconds of wall time per
(kind, cell) are spent; the table says how many ran. The slow cells (a healthy
rollout at 1 canary req/s takes about an hour of looks) get fewer runs.

In the same cells, Flagger and Argo Rollouts are reproduced over a whole rollout
(the rules of bench/detection.py, now stepping): canary at 10% -> 50% in steps of 10,
one check a minute on the last minute's success rate (>= 99%) and p99 (<= 500 ms, a
histogram quantile; no window without requests passes). Flagger: a failed check holds
the weight, the 5th failure rolls back at the next tick, 5 passed checks reach 50%
and the next passed check promotes. Argo: setWeight 10..50 with a 1 minute pause
each, background analysis every minute, rollback at the 4th failed measurement
(failureLimit 3), promotion after the last pause.

Both reproductions draw each minute's canary counts at once, for all runs (numpy): a
Poisson number of requests (which is what a random split gives too, so "random
split" is "healthy" for them), binomial errors, multinomial buckets. The conditions:
the check of minute m sees the canary's minute [m-1, m) since it started, so a cold
start slows the share of that minute's requests inside the first 60 s, or the part of
the first 300 requests it still had to serve (counted at the expected rate); stalls
and error bursts are approximated per replica by 0.5 s slots, each independently in
an episode with the episode's share of time (so a minute has Binomial(120, 2%) stalled
slots on the canary's one replica, about what the renewal process gives: mean 2.4,
variance 2.35 against about 2.4), and each of the minute's requests falls in an
episode slot with that minute's share of them.

SPRT reference for 5% errors: Wald's SPRT conditioning on total events (canary share
of events 0.1 under H0, 0.526 under 5% vs 0.5%), alpha = beta = 0.01: expected
sample size 7.9 events = 83 canary requests (docs in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.sim import (  # noqa: E402
    BOUNDS,
    DEFAULT_REPLICAS,
    Episodes,
    Split,
    TrackModel,
    init_manifest,
    sim_world,
)

from swiftdeploy.manifest import LoadedManifest  # noqa: E402
from swiftdeploy.policy import EmbeddedEngine  # noqa: E402
from swiftdeploy.state import Phase  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "rollouts.md"
CELLS = (1.0, 5.0, 20.0, 200.0, 2000.0)
FIRST_WEIGHT = 10
MAX_HOURS = 6.0
SPRT_REQUESTS = 83.0  # Wald's E[N] for the 5% canary, in canary requests (see docstring)


@dataclass(frozen=True)
class Kind:
    """What a rollout meets: how each track behaves and how the router splits."""

    stable: TrackModel
    canary: TrackModel
    split: Split = "interleave"


STABLE = TrackModel(0.005)
STALLING = TrackModel(0.005, stalls=Episodes(share=0.02, duration_s=0.5), stall_slowdown=10.0)
# Bad 1% of the time, failing half the requests then: 0.5% overall, as STABLE.
BURSTING = TrackModel(0.0, error_bursts=Episodes(share=0.01, duration_s=0.5), burst_error_rate=0.5)

KINDS: dict[str, Kind] = {
    "healthy": Kind(STABLE, STABLE),
    "errors 5%": Kind(STABLE, TrackModel(0.05)),
    "errors 1.5%": Kind(STABLE, TrackModel(0.015)),
    "latency +300ms": Kind(STABLE, TrackModel(0.005, extra_latency_s=0.3)),
    "both 3%": Kind(TrackModel(0.03), TrackModel(0.03)),
    "cold start 60s": Kind(STABLE, TrackModel(0.005, cold_start_s=60.0, cold_slowdown=3.0)),
    "cold start 300 req": Kind(
        STABLE, TrackModel(0.005, cold_start_requests=300, cold_slowdown=3.0)
    ),
    "stalls": Kind(STALLING, STALLING),
    "error bursts": Kind(BURSTING, BURSTING),
    "latency +100ms": Kind(STABLE, TrackModel(0.005, extra_latency_s=0.1)),
    "latency +50ms": Kind(STABLE, TrackModel(0.005, extra_latency_s=0.05)),
    "random split": Kind(STABLE, STABLE, split="random"),
}
# A rollback of these is a false one: the table gives its rate with an upper bound.
HEALTHY_KINDS = frozenset(
    {"healthy", "cold start 60s", "cold start 300 req", "stalls", "error bursts", "random split"}
)


@dataclass(frozen=True)
class Run:
    outcome: str  # promoted | rolled back | undecided (past MAX_HOURS)
    seconds: float  # from `rollout` to the end
    canary_requests: int  # counted by the rollout up to its end
    holds: int  # times it held at max_duration and was resumed
    looks: int


# --- SwiftDeploy: the real engine, one process per core ---------------------------------


@dataclass
class _Worker:
    """Per process: init's manifest and the shipped policy, compiled once."""

    loaded: LoadedManifest | None = None
    policy: EmbeddedEngine | None = None


_WORKER = _Worker()


def _setup() -> None:
    directory = Path(tempfile.mkdtemp(prefix="sd-bench-"))
    _WORKER.loaded = init_manifest(directory)
    _WORKER.policy = EmbeddedEngine(directory / "policies")


class _CountingRecorder:
    def __init__(self) -> None:
        self.looks = 0

    def record(self, kind: str, **fields: object) -> None:
        self.looks += kind == "decision"


def _one(job: tuple[str, float, int, bool]) -> Run:
    kind, canary_rps, seed, history = job
    loaded, policy = _WORKER.loaded, _WORKER.policy
    assert loaded is not None
    assert policy is not None
    world = sim_world(
        loaded,
        total_rps=canary_rps * 100 / FIRST_WEIGHT,
        stable=KINDS[kind].stable,
        canary=KINDS[kind].canary,
        seed=seed,
        split=KINDS[kind].split,
        history=history,
    )
    recorder = _CountingRecorder()
    world.fleet.recorder = recorder
    engine = world.engine(policy)
    started = world.clock.now
    state = engine.run(engine.begin("v2"))
    holds = 0
    while state.phase == Phase.PAUSED and state.pause_kind == "held":
        if world.clock.now - started > MAX_HOURS * 3600:
            break
        holds += 1
        state = engine.run(engine.resume_held(state))
    outcome = {Phase.PROMOTED: "promoted", Phase.ROLLED_BACK: "rolled back"}.get(
        state.phase, "undecided"
    )
    return Run(
        outcome=outcome,
        seconds=world.clock.now - started,
        canary_requests=state.evidence.rollout_counts("canary").requests,
        holds=holds,
        looks=recorder.looks,
    )


def swiftdeploy_runs(
    pool: multiprocessing.pool.Pool,
    kind: str,
    rps: float,
    runs: int,
    budget: float,
    seed: int,
    *,
    history: bool = True,
) -> list[Run]:
    done: list[Run] = []
    started = time.monotonic()
    batch = 50
    while len(done) < runs and time.monotonic() - started < budget:
        jobs = [
            (kind, rps, seed + len(done) + i, history) for i in range(min(batch, runs - len(done)))
        ]
        done.extend(pool.map(_one, jobs, chunksize=1))
    return done


# --- Flagger and Argo Rollouts, vectorised over runs ------------------------------------

_PROBABILITIES: dict[tuple[TrackModel, float], np.ndarray] = {}
CANARY_REPLICAS = DEFAULT_REPLICAS["canary"]


def _probabilities(model: TrackModel, slowdown: float = 1.0) -> np.ndarray:
    key = (model, slowdown)
    if key not in _PROBABILITIES:
        _PROBABILITIES[key] = model.bucket_probabilities(slowdown)
    return _PROBABILITIES[key]


def _window(
    rng: np.random.Generator,
    model: TrackModel,
    rate: float,
    runs: int,
    *,
    start_s: float = 0.0,
    served: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One minute of the canary at `rate` req/s, from `start_s` after it started,
    having served `served` requests before (per run): (success rate, p99 in ms); NaN
    without requests (both reproductions count that as a failed check)."""
    if not (model.cold_starts or model.has_episodes):
        n = rng.poisson(rate * 60, runs)
        errors = rng.binomial(n, model.error_rate)
        buckets = np.array([rng.multinomial(k, _probabilities(model)) for k in n])
    else:
        n, errors, buckets = _varying_window(rng, model, rate, runs, start_s, served)
    with np.errstate(invalid="ignore", divide="ignore"):
        success = np.where(n > 0, 1 - errors / np.maximum(n, 1), np.nan)
    return success, _p99_ms(buckets, n)


def _varying_window(
    rng: np.random.Generator,
    model: TrackModel,
    rate: float,
    runs: int,
    start_s: float,
    served: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A minute of a canary with a cold start, stalls or error bursts (the
    approximations are in the module docstring): (requests, errors, buckets)."""
    n = rng.poisson(rate * 60, runs)
    # Cold requests are the window's first ones, by time or by count: the larger wins.
    cold = rng.binomial(n, np.clip(model.cold_start_s - start_s, 0.0, 60.0) / 60)
    if model.cold_start_requests > 0:
        left = model.cold_start_requests - (np.zeros(runs) if served is None else served)
        cold = np.maximum(cold, np.minimum(np.clip(left, 0, None).astype(np.int64), n))
    stalled_share = _episode_share(rng, model.stalls, runs)
    stalled_cold = rng.binomial(cold, stalled_share)
    stalled_warm = rng.binomial(n - cold, stalled_share)
    buckets = np.zeros((runs, len(BOUNDS) + 1), dtype=np.int64)
    for count, slowdown in (
        (n - cold - stalled_warm, 1.0),
        (cold - stalled_cold, model.cold_slowdown),
        (stalled_warm, model.stall_slowdown),
        (stalled_cold, model.cold_slowdown * model.stall_slowdown),
    ):
        if count.any():
            buckets += rng.multinomial(count, _probabilities(model, slowdown))
    in_burst = rng.binomial(n, _episode_share(rng, model.error_bursts, runs))
    errors = rng.binomial(in_burst, model.burst_error_rate)
    errors += rng.binomial(n - in_burst, model.error_rate)
    return n, errors, buckets


def _episode_share(rng: np.random.Generator, episodes: Episodes | None, runs: int) -> np.ndarray:
    """Per run, the share of a minute of the canary's replicas spent in episodes:
    slots of one episode's length, each in one independently with the episodes' share."""
    if episodes is None:
        return np.zeros(runs)
    slots = round(60 / episodes.duration_s) * CANARY_REPLICAS
    share: np.ndarray = rng.binomial(slots, episodes.share, runs) / slots
    return share


def _p99_ms(buckets: np.ndarray, n: np.ndarray) -> np.ndarray:
    """histogram_quantile(0.99) of each row, as Prometheus interpolates inside a bucket."""
    cumulative = np.cumsum(buckets, axis=1)
    upper = np.array([*BOUNDS, math.inf])
    lower = np.concatenate([[0.0], upper[:-1]])
    rank = 0.99 * n
    index = np.argmax(cumulative >= rank[:, None], axis=1)
    below = np.where(index > 0, cumulative[np.arange(len(n)), np.maximum(index - 1, 0)], 0)
    inside = buckets[np.arange(len(n)), index]
    top = np.where(np.isinf(upper[index]), lower[index], upper[index])
    with np.errstate(invalid="ignore", divide="ignore"):
        value = lower[index] + (top - lower[index]) * (rank - below) / np.maximum(inside, 1)
    return np.where(n > 0, value * 1000, np.nan)


def _check(
    rng: np.random.Generator,
    model: TrackModel,
    rate: float,
    runs: int,
    *,
    start_s: float = 0.0,
    served: np.ndarray | None = None,
) -> np.ndarray:
    """True where one minute's analysis passes: success >= 99% and p99 <= 500 ms."""
    success, p99 = _window(rng, model, rate, runs, start_s=start_s, served=served)
    passed: np.ndarray = (success >= 0.99) & (p99 <= 500)
    return passed


def flagger(rng: np.random.Generator, kind: str, rps: float, runs: int) -> list[Run]:
    canary = KINDS[kind].canary
    total = rps * 100 / FIRST_WEIGHT
    weight = np.full(runs, 10)
    failed = np.zeros(runs, dtype=int)
    outcome = np.full(runs, "", dtype=object)
    seconds = np.zeros(runs)
    requests = np.zeros(runs)
    for tick in range(1, 200):
        live = outcome == ""
        if not live.any():
            break
        now = tick * 60.0
        # the threshold test runs at the start of a tick, before its analysis
        rolled = live & (failed >= 5)
        outcome[rolled], seconds[rolled] = "rolled back", now
        live &= ~rolled
        rates = total * weight / 100
        passed = np.zeros(runs, dtype=bool)
        for w in np.unique(weight[live]):
            at = live & (weight == w)
            # this tick's analysis covers the canary's minute before it
            passed[at] = _check(
                rng,
                canary,
                total * w / 100,
                int(at.sum()),
                start_s=(tick - 1) * 60.0,
                served=requests[at],
            )
        requests[live] += rates[live] * 60
        failed[live & ~passed] += 1
        promote = live & passed & (weight >= 50)
        outcome[promote], seconds[promote] = "promoted", now
        weight[live & passed & (weight < 50)] += 10
    return [
        Run(str(o) or "undecided", float(s), int(r), 0, 0)
        for o, s, r in zip(outcome, seconds, requests, strict=True)
    ]


def argo(rng: np.random.Generator, kind: str, rps: float, runs: int) -> list[Run]:
    canary = KINDS[kind].canary
    total = rps * 100 / FIRST_WEIGHT
    failed = np.zeros(runs, dtype=int)
    outcome = np.full(runs, "", dtype=object)
    seconds = np.zeros(runs)
    requests = np.zeros(runs)
    for minute, weight in enumerate((10, 20, 30, 40, 50), start=1):
        live = outcome == ""
        passed = _check(
            rng,
            canary,
            total * weight / 100,
            runs,
            start_s=(minute - 1) * 60.0,
            served=requests,
        )
        requests[live] += total * weight / 100 * 60
        failed[live & ~passed] += 1
        aborted = live & (failed > 3)
        outcome[aborted], seconds[aborted] = "rolled back", minute * 60.0
    live = outcome == ""
    outcome[live], seconds[live] = "promoted", 5 * 60.0
    return [
        Run(str(o), float(s), int(r), 0, 0)
        for o, s, r in zip(outcome, seconds, requests, strict=True)
    ]


# --- the tables ----------------------------------------------------------------------------


def rate(runs: list[Run], outcome: str) -> float:
    return sum(r.outcome == outcome for r in runs) / len(runs) if runs else math.nan


def quantile(values: Sequence[float], q: float) -> float:
    return float(np.quantile(values, q)) if values else math.nan


def minutes(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def upper95(hits: int, n: int) -> float:
    """Clopper-Pearson upper bound (one-sided 95%) for a rate seen as hits/n."""
    return 1.0 if hits >= n else float(beta.ppf(0.95, hits + 1, n - hits))


def row_for(method: str, kind: str, rps: float, runs: list[Run]) -> str:
    promoted = [r.seconds for r in runs if r.outcome == "promoted"]
    rolled = [r.seconds for r in runs if r.outcome == "rolled back"]
    rolled_requests = [r.canary_requests for r in runs if r.outcome == "rolled back"]
    held = [r for r in runs if r.holds > 0]
    n = len(runs)
    back = sum(r.outcome == "rolled back" for r in runs)
    cells = [
        f"{rps:g}",
        method,
        str(n),
        f"{back / n:.2%} (<= {upper95(back, n):.2%})"
        if kind in HEALTHY_KINDS
        else f"{back / n:.2%}",
        f"{rate(runs, 'promoted'):.2%}",
        f"{minutes(quantile(promoted, 0.5))} / {minutes(quantile(promoted, 0.95))}",
        f"{minutes(quantile(rolled, 0.5))} / {minutes(quantile(rolled, 0.95))}",
        f"{quantile(rolled_requests, 0.5):.0f}" if rolled_requests else "-",
        f"{len(held) / n:.0%}" if method == "SwiftDeploy" else "-",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| canary req/s | method | runs | rolled back | promoted | to promotion: median / p95 "
    "| to rollback: median / p95 | canary requests to rollback (median) | held at 10 min "
    "at least once |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds per kind and cell")
    parser.add_argument("--cells", default=",".join(f"{c:g}" for c in CELLS))
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        # argparse formats help with %: "errors 5%" must be escaped
        help="comma-separated: " + ", ".join(KINDS).replace("%", "%%"),
    )
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="a provider without the stable's history before the rollout, as scrape",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the tables go")
    args = parser.parse_args()
    cells = [float(c) for c in args.cells.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; the kinds are: {', '.join(KINDS)}")
    command = "python bench/rollouts.py " + shlex.join(sys.argv[1:])
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    out = [
        f"# Whole rollouts on init's defaults ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; see the module docstring for the model"
        + ("; no history of the stable before the rollout." if args.no_history else "."),
        "",
    ]
    ctx = multiprocessing.get_context("fork")
    # Fresh workers every few rollouts: under glibc's malloc the embedded engine's
    # process grows by about 30 MB per simulated rollout (not under jemalloc; see
    # BENCHMARKS.md), which over thousands of rollouts would exhaust the machine.
    with ctx.Pool(os.cpu_count() or 2, initializer=_setup, maxtasksperchild=20) as pool:
        for kind in kinds:
            out += [f"## {kind}", "", HEADER]
            for rps in cells:
                ours = swiftdeploy_runs(
                    pool, kind, rps, args.runs, args.budget, args.seed, history=not args.no_history
                )
                methods: list[tuple[str, list[Run]]] = [
                    ("SwiftDeploy", ours),
                    ("Flagger", flagger(rng, kind, rps, args.runs)),
                    ("Argo Rollouts", argo(rng, kind, rps, args.runs)),
                ]
                for method, runs in methods:
                    line = row_for(method, kind, rps, runs)
                    out.append(line)
                    print(f"{kind:>15} {line}", flush=True)
                if kind == "errors 5%":
                    rolled = [r.canary_requests for r in ours if r.outcome == "rolled back"]
                    median = quantile([float(x) for x in rolled], 0.5)
                    out.append(
                        f"|  | ratio to the SPRT's {SPRT_REQUESTS:.0f} canary requests |"
                        f"  | {median / SPRT_REQUESTS:.2f}x |  |  |  |  |  |"
                    )
            out.append("")
    out.append(f"Wall time: {time.monotonic() - started:.0f} s.")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
