"""The judge behind Argo Rollouts (issue 24): SwiftDeploy's judge against Argo's usual
threshold template and a Kayenta-style Mann-Whitney judge, each driven by Argo's
analysis loop over a whole rollout. Monte Carlo, in simulated time.

    nice -n 19 .venv/bin/python bench/judge.py [--runs 200] [--budget 60]
        [--cells 1,5,20,200] [--kinds "healthy,errors 1.5%"] [--out FILE]

The rollout is examples/judge/argo-rollout.yaml's: setWeight 20, a step analysis,
setWeight 50, a step analysis, then promotion. Cells are the canary's requests per
second at the first step (20%), so the service takes 5x that. The traces are
bench/rollouts.py's (KINDS, bench/support/sim.py: Poisson arrivals split as nginx
splits them, binomial errors, log-normal latencies in the router's buckets, one canary
replica and two stable ones), for the kinds of KINDS named in --kinds. Each judge's
rollout runs in its own simulated world seeded alike, so the three see the same
traffic until their decisions move the weight differently.

Argo's analysis loop (analysis/analysis.go, v1.10): a measurement every `interval`,
the first when the step's analysis starts; Failed when failed > failureLimit,
Inconclusive when inconclusive > inconclusiveLimit, Successful at
consecutiveSuccessLimit successes in a row; at `count` Successful, or, with a
consecutiveSuccessLimit, Inconclusive (the Rollout pauses for a person). A Failed step
analysis aborts the Rollout. The three judges and their templates:

- "SwiftDeploy": the judge's real code path (judge.service.Judge: judgement.py's looks,
  the analysis persisted to disk and read back at every call, evidence carried across
  calls and steps, the shipped Rego through the embedded engine, `swiftdeploy judge
  init`'s settings: alpha 0.01, beta 0.1, detect +1 point and +100 ms, warm-up 60 s /
  300 requests, max_duration 10m), its metrics from the simulated provider instead of
  Prometheus. Template: docs/judge.md's (count 40, consecutiveSuccessLimit 1,
  inconclusiveLimit 40) at interval 1m and failureLimit 3, as the other two; the row
  "SwiftDeploy, failureLimit 0" is the shipped template's failureLimit, read off the
  same runs (the runs are identical up to the first failed measurement, where
  failureLimit 0 aborts).
- "threshold": Argo's usual template: successCondition `result[0] >= 0.99` on the
  canary's success rate over the last interval (a window without requests is NaN, so
  it fails), interval 1m, count 5, failureLimit 3.
- "Kayenta-style": each measurement compares the canary with the stable over the last
  interval, as a Kayenta canary config with two metrics would: latency (the p99 of each
  10 s slice, a Prometheus range query's points; Mann-Whitney U, classified High when
  the canary is higher at one-sided p < 0.025, i.e. Kayenta's 95% interval of the
  shift above zero, without its effect-size tolerance) and errors (a one-sided pooled
  two-proportion z-test on the window's counts, High at p < 0.025). A metric without
  data in either track is left out. Score = 100 x metrics passing / metrics scored;
  >= 95 Successful, < 75 Failed (Kayenta's default marginal 75 and pass 95; with two
  metrics the score is 0, 50 or 100, so there is no marginal band); none scored:
  Inconclusive. interval 1m, count 5, failureLimit 3, as the threshold template.

The threshold and Kayenta-style judges read Prometheus over the last interval: in the
first step, the canary's new series need two scrapes before a query returns anything
(Argo retries the empty result as an Error every 10 s), so their first measurement is
taken 30 s into the first step. The judge counts from its first call.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy.stats import binomtest, mannwhitneyu, norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rollouts import KINDS, _p99_ms  # noqa: E402
from bench.support.sim import SimWorld, init_manifest, sim_world  # noqa: E402

from swiftdeploy.audit.log import AuditLog  # noqa: E402
from swiftdeploy.commands.judge import init as judge_init  # noqa: E402
from swiftdeploy.judge.config import LoadedJudge, load_judge  # noqa: E402
from swiftdeploy.judge.judgement import Call  # noqa: E402
from swiftdeploy.judge.service import Judge  # noqa: E402
from swiftdeploy.manifest import LoadedManifest  # noqa: E402
from swiftdeploy.policy import EmbeddedEngine  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "judge.md"
CELLS = (1.0, 5.0, 20.0, 200.0)
KIND_NAMES = ("healthy", "cold start 60s", "stalls", "errors 1.5%", "latency +100ms")
HEALTHY = frozenset({"healthy", "cold start 60s", "stalls"})
STEPS = ((1, 20), (3, 50))  # (Argo's step index, weight) of each analysis step
SLICE_S = 10.0  # the resolution of the Kayenta-style judge's latency points
P_HIGH = 0.025  # one-sided: Kayenta's 95% interval above zero

Phase = Literal["Successful", "Failed", "Inconclusive"]
JUDGES = ("SwiftDeploy", "threshold", "Kayenta-style")


# --- Argo's analysis loop ----------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """The fields of an AnalysisTemplate's metric that the loop reads."""

    interval_s: float = 60.0
    count: int = 5
    failure_limit: int = 3
    inconclusive_limit: int = 40
    consecutive_success_limit: int = 0  # 0: not set
    first_at_s: float = 0.0  # the step's first measurement, after the step starts


@dataclass(frozen=True)
class Analysis:
    phase: Phase
    measurements: int
    first_failure: int | None  # the index of the first Failed measurement


def argo_analysis(measure: Callable[[int], Phase], template: Template) -> Analysis:
    """Argo's assessment of one metric, measurement after measurement (assessMetricStatus):
    `measure(k)` takes the k-th measurement (the caller moves the clock)."""
    failed = inconclusive = successes_in_a_row = 0
    first_failure: int | None = None
    k = 0
    while True:
        phase = measure(k)
        k += 1
        if phase == "Successful":
            successes_in_a_row += 1
        else:
            successes_in_a_row = 0
        if phase == "Failed":
            failed += 1
            first_failure = k - 1 if first_failure is None else first_failure
        if phase == "Inconclusive":
            inconclusive += 1
        # later checks win in Argo (assessMetricFailureInconclusiveOrError)
        if inconclusive > template.inconclusive_limit:
            return Analysis("Inconclusive", k, first_failure)
        if failed > template.failure_limit:
            return Analysis("Failed", k, first_failure)
        limit = template.consecutive_success_limit
        if limit and successes_in_a_row >= limit:
            return Analysis("Successful", k, first_failure)
        if k >= template.count:
            return Analysis("Inconclusive" if limit else "Successful", k, first_failure)


# --- the two reference judges (pure: counts in, a phase out) ----------------------------


@dataclass(frozen=True)
class Window:
    """One track over an interval, in SLICE_S slices: requests, errors, and the
    router's latency buckets (non-cumulative, +Inf last) per slice."""

    requests: np.ndarray  # (slices,)
    errors: np.ndarray  # (slices,)
    buckets: np.ndarray  # (slices, buckets)


def threshold_phase(canary: Window) -> Phase:
    """successCondition: result[0] >= 0.99 on the canary's success rate (NaN fails)."""
    requests = int(canary.requests.sum())
    if requests == 0:
        return "Failed"
    return "Successful" if 1 - canary.errors.sum() / requests >= 0.99 else "Failed"


def latency_high(canary: Window, stable: Window) -> bool | None:
    """Mann-Whitney U on the slices' p99s: is the canary's higher? None without data."""
    points = [p[~np.isnan(p)] for p in (_p99_ms(w.buckets, w.requests) for w in (canary, stable))]
    if min(len(p) for p in points) == 0:
        return None
    if np.array_equal(np.sort(points[0]), np.sort(points[1])):
        return False  # Kayenta passes identical data as is
    return bool(mannwhitneyu(points[0], points[1], alternative="greater").pvalue < P_HIGH)


def errors_high(canary: Window, stable: Window) -> bool | None:
    """A pooled two-proportion z-test, one-sided: does the canary fail more often?"""
    n_c, n_s = int(canary.requests.sum()), int(stable.requests.sum())
    if n_c == 0 or n_s == 0:
        return None
    e_c, e_s = int(canary.errors.sum()), int(stable.errors.sum())
    pooled = (e_c + e_s) / (n_c + n_s)
    if pooled in (0.0, 1.0):
        return False
    z = (e_c / n_c - e_s / n_s) / math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_s))
    return bool(norm.sf(z) < P_HIGH)


def kayenta_phase(
    canary: Window, stable: Window, marginal: float = 75, passing: float = 95
) -> Phase:
    """Kayenta's score over the two metrics, mapped as Argo's kayenta provider maps it."""
    scored = [
        high
        for high in (latency_high(canary, stable), errors_high(canary, stable))
        if high is not None
    ]
    if not scored:
        return "Inconclusive"
    score = 100 * sum(not high for high in scored) / len(scored)
    if score >= passing:
        return "Successful"
    return "Failed" if score < marginal else "Inconclusive"


# --- one rollout under Argo, per judge ----------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    judge: str
    result: str  # promoted | rolled back | paused
    seconds: float  # from setWeight 20 to the result
    failfast_result: str  # the same rollout under failureLimit 0
    failfast_seconds: float


class Slices:
    """Each track's counters read every SLICE_S, so any interval's window is at hand."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.times: list[float] = []
        self.tallies: dict[str, list[tuple[int, int, np.ndarray]]] = {"canary": [], "stable": []}
        self.read()

    def read(self) -> None:
        self.times.append(self.world.clock.now)
        for track, tallies in self.tallies.items():
            tally = self.world.traffic.reading(track)
            tallies.append((tally.requests, tally.errors, tally.buckets))

    def advance(self, until: float) -> None:
        """Move the clock to `until`, reading every SLICE_S on the way."""
        clock = self.world.clock
        while clock.now < until - 1e-9:
            clock.sleep(min(SLICE_S, until - clock.now))
            self.read()

    def window(self, track: str, seconds: float) -> Window:
        """The last `seconds`, slice by slice."""
        start = max(0, len(self.times) - 1 - round(seconds / SLICE_S))
        rows = self.tallies[track][start:]
        requests = np.diff([r for r, _, _ in rows])
        errors = np.diff([e for _, e, _ in rows])
        buckets = np.diff(np.array([b for _, _, b in rows]), axis=0)
        return Window(requests, errors, buckets)


def argo_rollout(
    world: SimWorld, template: Template, look: Callable[[int, float], Phase], first_s: float = 0.0
) -> tuple[str, float, str, float]:
    """The Rollout: setWeight, then a step analysis, per STEPS. `look(step, at)` moves the
    clock to `at` and takes a measurement; the first step's first is `first_s` in."""
    started = world.clock.now
    first_failure_at: float | None = None
    for number, (step, weight) in enumerate(STEPS):
        world.traffic.set_weight(weight)
        base = world.clock.now + (first_s if number == 0 else 0.0)

        def measure(k: int, step: int = step, base: float = base) -> Phase:
            return look(step, base + k * template.interval_s)

        result = argo_analysis(measure, template)
        if result.first_failure is not None and first_failure_at is None:
            first_failure_at = base + result.first_failure * template.interval_s - started
        if result.phase != "Successful":
            end = "rolled back" if result.phase == "Failed" else "paused"
            return _with_failfast(end, world.clock.now - started, first_failure_at)
    return _with_failfast("promoted", world.clock.now - started, first_failure_at)


def reference_rollout(world: SimWorld, judge: str) -> tuple[str, float, str, float]:
    """A rollout judged by the threshold or the Kayenta-style template."""
    slices = Slices(world)
    template = Template()

    def look(step: int, at: float) -> Phase:
        slices.advance(at)
        canary = slices.window("canary", template.interval_s)
        if judge == "threshold":
            return threshold_phase(canary)
        return kayenta_phase(canary, slices.window("stable", template.interval_s))

    return argo_rollout(world, template, look, first_s=30.0)


def _with_failfast(
    result: str, seconds: float, first_failure_at: float | None
) -> tuple[str, float, str, float]:
    if first_failure_at is None:
        return result, seconds, result, seconds
    return result, seconds, "rolled back", first_failure_at


@dataclass
class _Worker:
    loaded: LoadedManifest | None = None
    judge: LoadedJudge | None = None
    policy: EmbeddedEngine | None = None


_WORKER = _Worker()

JUDGE_TEMPLATE = Template(count=40, consecutive_success_limit=1)
# the documented template's conditions: promote succeeds, rollback fails, hold neither
VERDICTS: dict[str, Phase] = {"promote": "Successful", "rollback": "Failed"}


def _setup() -> None:
    directory = Path(tempfile.mkdtemp(prefix="sd-bench-judge-"))
    _WORKER.loaded = init_manifest(directory / "project")
    judge_init(directory / "judge", force=True)
    _WORKER.judge = load_judge(directory / "judge" / "judge.yaml")
    _WORKER.policy = EmbeddedEngine(_WORKER.judge.policy_dir)


def judge_rollout(world: SimWorld, seed: int) -> tuple[str, float, str, float]:
    """A rollout judged by SwiftDeploy's judge, each measurement one call to it."""
    assert _WORKER.judge is not None
    assert _WORKER.policy is not None
    scratch = Path(tempfile.mkdtemp(prefix="sd-bench-run-"))
    try:
        # a fresh data directory and trail per rollout: the judge's files, on disk
        loaded = LoadedJudge(_WORKER.judge.config, scratch / "judge.yaml")
        log = AuditLog(scratch / "history.jsonl", loaded.config.audit.max_bytes)
        judge = Judge(loaded, lambda call: world.provider, _WORKER.policy, log, clock=world.clock)

        def look(step: int, at: float) -> Phase:
            world.clock.sleep(at - world.clock.now)
            call = Call("argo", "shop", "cart", str(seed), "s", "c", "argo", step=str(step))
            return VERDICTS.get(judge.look(call).verdict, "Inconclusive")

        return argo_rollout(world, JUDGE_TEMPLATE, look)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _one(job: tuple[str, str, float, int]) -> Outcome:
    judge, kind, canary_rps, seed = job
    assert _WORKER.loaded is not None
    world = sim_world(
        _WORKER.loaded,
        total_rps=canary_rps * 100 / STEPS[0][1],
        stable=KINDS[kind].stable,
        canary=KINDS[kind].canary,
        seed=seed,
        split=KINDS[kind].split,
    )
    if judge == "SwiftDeploy":
        result = judge_rollout(world, seed)
    else:
        result = reference_rollout(world, judge)
    return Outcome(judge, *result)


# --- the tables ----------------------------------------------------------------------------


def wilson(hits: int, n: int) -> tuple[float, float]:
    interval = binomtest(hits, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def share(hits: int, n: int) -> str:
    low, high = wilson(hits, n)
    return f"{hits}/{n} = {hits / n:.1%} [{low:.1%}, {high:.1%}]"


def minutes(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{np.median(values) / 60:.1f} / {np.quantile(values, 0.95) / 60:.1f}"


HEADER = (
    "| canary req/s | judge | rolled back (95% Wilson) | promoted | paused "
    "| to rollback, min: median / p95 | to promotion, min: median / p95 |\n"
    "|---:|---|---:|---:|---:|---:|---:|"
)


def rows(rps: float, runs: list[Outcome]) -> list[str]:
    lines = []
    variants: list[tuple[str, list[tuple[str, float]]]] = []
    for judge in JUDGES:
        mine = [r for r in runs if r.judge == judge]
        variants.append((judge, [(r.result, r.seconds) for r in mine]))
        if judge == "SwiftDeploy":
            fast = [(r.failfast_result, r.failfast_seconds) for r in mine]
            variants.append(("SwiftDeploy, failureLimit 0", fast))
    for name, results in variants:
        n = len(results)
        back = [s for r, s in results if r == "rolled back"]
        promoted = [s for r, s in results if r == "promoted"]
        paused = sum(r == "paused" for r, _ in results)
        cells = [
            f"{rps:g}",
            name,
            share(len(back), n),
            f"{len(promoted) / n:.0%}",
            f"{paused / n:.0%}",
            minutes(back),
            minutes(promoted),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def run_cell(
    pool: multiprocessing.pool.Pool, kind: str, rps: float, runs: int, budget: float, seed: int
) -> list[Outcome]:
    """Up to `runs` rollouts per judge on the same seeds, in batches, until `budget`
    seconds of wall time are spent."""
    done: list[Outcome] = []
    started = time.monotonic()
    batch = 2 * (os.cpu_count() or 2)
    count = 0
    while count < runs and time.monotonic() - started < budget:
        seeds = range(seed + count, seed + min(count + batch, runs))
        jobs = [(judge, kind, rps, s) for s in seeds for judge in JUDGES]
        done.extend(pool.map(_one, jobs, chunksize=1))
        count += len(seeds)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="rollouts per judge and cell")
    parser.add_argument("--budget", type=float, default=60.0, help="wall seconds per cell")
    parser.add_argument("--cells", default=",".join(f"{c:g}" for c in CELLS))
    parser.add_argument("--kinds", default=",".join(KIND_NAMES))
    parser.add_argument("--seed", type=int, default=20261224)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cells = [float(c) for c in args.cells.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; the kinds are: {', '.join(KINDS)}")
    command = "python bench/judge.py " + shlex.join(sys.argv[1:])
    started, cpu = time.monotonic(), _cpu()
    out = [
        f"# The judge behind Argo Rollouts ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; the model is in the module docstring.",
        "",
    ]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(os.cpu_count() or 2, initializer=_setup, maxtasksperchild=20) as pool:
        for kind in kinds:
            out += [f"## {kind}", "", HEADER]
            for rps in cells:
                for line in rows(rps, run_cell(pool, kind, rps, args.runs, args.budget, args.seed)):
                    out.append(line)
                    print(f"{kind:>15} {line}", flush=True)
            out.append("")
    out.append(
        f"Wall time: {time.monotonic() - started:.0f} s; CPU (this process and its workers): "
        f"{_cpu() - cpu:.0f} s."
    )
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    return 0


def _cpu() -> float:
    self, children = os.times()[:2], os.times()[2:4]
    return sum(self) + sum(children)


if __name__ == "__main__":
    sys.exit(main())
