"""Whole rollouts on `swiftdeploy init`'s defaults: how often a healthy release is
rolled back, how often a bad one is promoted, and how long each takes. Monte Carlo.

    .venv/bin/python bench/rollouts.py [--runs 2000] [--budget 240] [--cells 1,5,20,200,2000]

Each run drives the real RolloutEngine with the real shipped Rego policy (embedded
engine) through a simulated service (tests/support/sim.py: Poisson arrivals split as
nginx splits them, binomial errors, log-normal latencies in the router's histogram
buckets) in simulated time, from `init`'s manifest unchanged (steps 10/25/50,
interval auto, min 30 s, max 10 min per step, alpha 0.01, beta 0.1, detect +1 point
and +100 ms). A rollout that holds at max_duration is resumed at once, as a person
would, until it ends or has run MAX_HOURS of simulated time; the table says how
often that happened and how long promotion then took.

Cells are the canary's requests per second at the first step's weight (10%), so the
service takes 10x that. The stable track fails 0.5% of requests (3% in "both 3%").
Canary kinds: healthy (as stable), 5% errors, 1.5% errors (+1 point), +300 ms
latency, and both tracks at 3% errors (against max_error_rate 1%).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.sim import (  # noqa: E402
    BOUNDS,
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

KINDS: dict[str, tuple[TrackModel, TrackModel]] = {
    "healthy": (TrackModel(0.005), TrackModel(0.005)),
    "errors 5%": (TrackModel(0.005), TrackModel(0.05)),
    "errors 1.5%": (TrackModel(0.005), TrackModel(0.015)),
    "latency +300ms": (TrackModel(0.005), TrackModel(0.005, extra_latency_s=0.3)),
    "both 3%": (TrackModel(0.03), TrackModel(0.03)),
}


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


def _one(job: tuple[str, float, int]) -> Run:
    kind, canary_rps, seed = job
    loaded, policy = _WORKER.loaded, _WORKER.policy
    assert loaded is not None
    assert policy is not None
    stable, canary = KINDS[kind]
    world = sim_world(
        loaded,
        total_rps=canary_rps * 100 / FIRST_WEIGHT,
        stable=stable,
        canary=canary,
        seed=seed,
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
    pool: multiprocessing.pool.Pool, kind: str, rps: float, runs: int, budget: float, seed: int
) -> list[Run]:
    done: list[Run] = []
    started = time.monotonic()
    batch = 50
    while len(done) < runs and time.monotonic() - started < budget:
        jobs = [(kind, rps, seed + len(done) + i) for i in range(min(batch, runs - len(done)))]
        done.extend(pool.map(_one, jobs, chunksize=1))
    return done


# --- Flagger and Argo Rollouts, vectorised over runs ------------------------------------

_PROBABILITIES: dict[TrackModel, np.ndarray] = {}


def _window(
    rng: np.random.Generator, model: TrackModel, rate: float, runs: int
) -> tuple[np.ndarray, np.ndarray]:
    """One minute of a track at `rate` req/s: (success rate, p99 in ms); NaN without
    requests (both reproductions count that as a failed check)."""
    if model not in _PROBABILITIES:
        _PROBABILITIES[model] = model.bucket_probabilities()
    n = rng.poisson(rate * 60, runs)
    errors = rng.binomial(n, model.error_rate)
    buckets = np.array([rng.multinomial(k, _PROBABILITIES[model]) for k in n])
    with np.errstate(invalid="ignore", divide="ignore"):
        success = np.where(n > 0, 1 - errors / np.maximum(n, 1), np.nan)
    return success, _p99_ms(buckets, n)


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


def _check(rng: np.random.Generator, model: TrackModel, rate: float, runs: int) -> np.ndarray:
    """True where one minute's analysis passes: success >= 99% and p99 <= 500 ms."""
    success, p99 = _window(rng, model, rate, runs)
    return (success >= 0.99) & (p99 <= 500)


def flagger(rng: np.random.Generator, kind: str, rps: float, runs: int) -> list[Run]:
    canary = KINDS[kind][1]
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
            passed[at] = _check(rng, canary, total * w / 100, int(at.sum()))
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
    canary = KINDS[kind][1]
    total = rps * 100 / FIRST_WEIGHT
    failed = np.zeros(runs, dtype=int)
    outcome = np.full(runs, "", dtype=object)
    seconds = np.zeros(runs)
    requests = np.zeros(runs)
    for minute, weight in enumerate((10, 20, 30, 40, 50), start=1):
        live = outcome == ""
        passed = _check(rng, canary, total * weight / 100, runs)
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


def quantile(values: list[float], q: float) -> float:
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
        f"{back / n:.2%} (<= {upper95(back, n):.2%})" if kind == "healthy" else f"{back / n:.2%}",
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
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the tables go")
    args = parser.parse_args()
    cells = [float(c) for c in args.cells.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    command = "python bench/rollouts.py " + shlex.join(sys.argv[1:])
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    out = [
        f"# Whole rollouts on init's defaults ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; see the module docstring for the model.",
        "",
    ]
    ctx = multiprocessing.get_context("fork")
    # Fresh workers every few rollouts: under glibc's malloc the embedded engine's
    # process grows by about 30 MB per simulated rollout (not under jemalloc; see
    # BENCHMARKS.md), which over thousands of rollouts would exhaust the machine.
    pool_args = {"processes": os.cpu_count() or 2, "initializer": _setup, "maxtasksperchild": 20}
    with ctx.Pool(**pool_args) as pool:
        for kind in kinds:
            out += [f"## {kind}", "", HEADER]
            for rps in cells:
                ours = swiftdeploy_runs(pool, kind, rps, args.runs, args.budget, args.seed)
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
