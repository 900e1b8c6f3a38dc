"""How fast is a bad canary rolled back, and how often is a good one? Monte Carlo.

    .venv/bin/python bench/detection.py [--runs 2000]

Synthetic traffic: the canary takes 10% of requests (1, 5 or 20 requests/s; stable
gets 9x as many), Poisson arrivals per arm, stable error rate 0.5%, canary 5% (bad)
or 0.5% (healthy). Every method sees the same simulated traffic in every run:

- SwiftDeploy: the e-processes of swiftdeploy.stats.sequential (the library code,
  not a copy) on counts cumulated since the step began, looked at every 2 s (the
  engine's default interval) up to the horizon (30 min), alpha = 0.01, tolerance 0,
  margin 0.01. Rollback at the first look whose harm e-value reaches 1/alpha.
  "False rollbacks" run the harm test over the whole horizon, without the early stop
  that a no-harm verdict would give, so they bound what the engine does.
- Flagger, as its scheduler does it (fluxcd/flagger pkg/controller/scheduler.go,
  advanceCanary; pkg/canary/status.go): analysis.interval 1m, threshold 5, builtin
  request-success-rate with thresholdRange.min 99 over a 1m window. A check fails
  when the success rate is below 99% (scheduler_metrics.go: `val < *tr.Min`) or when
  there are no values (ErrNoValuesFound halts advancement, a failed check). Failed
  checks are cumulative: FailedChecks is only incremented (SetStatusFailedChecks(cd,
  FailedChecks+1)) and reset only when a new revision restarts the analysis. The
  threshold test `FailedChecks >= GetAnalysisThreshold()` runs at the *start* of a
  tick, before that tick's analysis, so the rollback comes one interval after the
  5th failure. Checks at 1m, 2m, ... after traffic starts (the first tick only
  starts the analysis and shifts weight).
- Argo Rollouts (argoproj/argo-rollouts analysis/analysis.go,
  assessMetricFailureInconclusiveOrError: `result.Failed > failureLimit`): background
  analysis, interval 1m, failureLimit 3, successCondition result[0] >= 0.99 on a 1m
  success-rate query. Failed measurements are cumulative (metricResult.Failed++), the
  run fails on the 4th and the rollout aborts at once. Measurements at 1m, 2m, ...
  (initialDelay 1m: without it the first measurement runs at once on an empty window,
  which Argo counts as an Error, not a Failure). A window with no requests is a NaN
  success rate: NaN >= 0.99 is false, and without a failureCondition a measurement
  whose successCondition is false is Failed (utils/evaluate/evaluate.go).
- Wald's SPRT for simple hypotheses p0 = 0.005 vs p1 = 0.05 on the canary's requests
  alone, with the stable rate known (an oracle no real gate has), alpha = beta = 0.01:
  expected sample number under p1, E[N] = ((1-beta) log((1-beta)/alpha)
  + beta log(beta/(1-alpha))) / KL(p1 || p0), in seconds at the canary's rate. This is
  Wald's lower bound on E[N] under p1 for *any* sequential test with error rates alpha
  and beta, which the SPRT attains up to the overshoot of its boundaries (Wald &
  Wolfowitz 1948 prove the SPRT optimal). beta = 0.01 matches alpha; our test has no
  fixed beta (it detects every regression eventually), and beta = 0.2 would lower the
  bound by only ~30%. The same SPRT simulated at 2 s looks shows what the look
  interval alone costs.

A last table compares the harm test's prior (Beta(1, 1) truncated to the alternative)
with others on the same traffic. The screening of looks before exact e-values
is exact (the mixture never exceeds the supremum of its likelihood ratios) and is
checked against the unscreened computation on a subsample every run.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
from numpy.typing import NDArray
from scipy.special import betaincc, betaln, xlog1py, xlogy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.sequential import log_e_no_harm_arrays, log_mixture

from swiftdeploy.stats.sequential import HARM_PRIOR, log_e_harm

P_STABLE = 0.005
P_BAD = 0.05
CANARY_SHARE = 0.10
RATES = (1.0, 5.0, 20.0)
RESULTS = Path(__file__).parent / "results" / "detection.md"

Int = NDArray[np.int64]
Float = NDArray[np.float64]


@dataclass(frozen=True)
class Traffic:
    """Per-look counts for `runs` runs: arrays of shape (runs, looks)."""

    canary_n: Int
    canary_events: Int
    stable_n: Int
    stable_events: Int

    def cumulative(self) -> tuple[Int, Int, Int, Int]:
        return (
            self.canary_events.cumsum(1),
            self.canary_n.cumsum(1),
            self.stable_events.cumsum(1),
            self.stable_n.cumsum(1),
        )


def simulate(
    rng: np.random.Generator, runs: int, looks: int, interval: float, rate: float, p_canary: float
) -> Traffic:
    stable_rate = rate * (1 - CANARY_SHARE) / CANARY_SHARE
    nc = rng.poisson(rate * interval, (runs, looks))
    ns = rng.poisson(stable_rate * interval, (runs, looks))
    return Traffic(nc, rng.binomial(nc, p_canary), ns, rng.binomial(ns, P_STABLE))


# --- SwiftDeploy -----------------------------------------------------------------

# log e-value of one test from cumulative counts (canary events, canary n, stable
# events, stable n), elementwise
LogE = Callable[[Int, Int, Int, Int], Float]


def harm(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
    return log_e_harm(xc, xs, nc, ns)


def harm_bound(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
    """log sup over theta > theta0 of the likelihood ratio: the mixture is never above."""
    e = (xc + xs).astype(np.float64)
    ok = (nc > 0) & (ns > 0) & (e > 0)
    theta0 = np.where(ok, nc / np.maximum(nc + ns, 1), 0.5)
    hat = np.where(ok, xc / np.maximum(e, 1), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = xlogy(xc, hat / theta0) + xlogy(xs, (1 - hat) / (1 - theta0))
    return np.asarray(np.where(ok & (hat > theta0), kl, 0.0), dtype=np.float64)


def no_harm(margin: float) -> LogE:
    def fn(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
        return log_e_no_harm_arrays(xc, nc, xs, ns, 0.0, margin)

    return fn


def no_harm_bound(margin: float) -> LogE:
    """The infimum over H0' is at most the product at any point of H0': the MLE when it
    lies in H0', else (p_s_hat + margin, p_s_hat); neither needs a bisection."""

    def fn(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
        rate_c = xc / np.maximum(nc, 1)
        rate_s = xs / np.maximum(ns, 1)
        point = rate_s + margin
        inside = rate_c >= point
        p_c = np.where(inside, rate_c, np.where(point < 1, point, 0.5))
        bound = log_mixture(xc, nc, p_c) + log_mixture(xs, ns, rate_s)
        return np.asarray(np.where(inside | (point < 1), bound, np.inf), dtype=np.float64)

    return fn


def first_crossing(log_e: Float, threshold: float, interval: float) -> Float:
    """Seconds to the first look at or above the threshold; inf if none."""
    hit = log_e >= threshold
    return np.asarray(np.where(hit.any(1), (hit.argmax(1) + 1) * interval, np.inf))


def crossing(
    cum: tuple[Int, Int, Int, Int],
    exact: LogE,
    bound: LogE,
    threshold: float,
    interval: float,
    chunk: int = 30,
) -> Float:
    """first_crossing(exact(*cum)), computed a chunk of looks at a time for the runs
    still undecided, and exactly only where the bound says the threshold is in reach."""
    runs, looks = cum[0].shape
    first = np.full(runs, np.inf)
    undecided = np.ones(runs, dtype=bool)
    for start in range(0, looks, chunk):
        rows = np.flatnonzero(undecided)
        if rows.size == 0:
            break
        sub = tuple(a[rows, start : start + chunk] for a in cum)
        reach = bound(*sub) >= threshold
        log_e = np.full(reach.shape, -np.inf)
        log_e[reach] = exact(*(a[reach] for a in sub))
        hit = log_e >= threshold
        done = hit.any(1)
        first[rows[done]] = (start + hit[done].argmax(1) + 1) * interval
        undecided[rows[done]] = False
    return first


def check_screening(
    cum: tuple[Int, Int, Int, Int], threshold: float, margin: float, interval: float
) -> None:
    """On a subsample, the screened crossings must equal the brute-force ones."""
    xc, nc, xs, ns = cum
    sample = (xc[:40], nc[:40], xs[:40], ns[:40])
    for exact, bound in ((harm, harm_bound), (no_harm(margin), no_harm_bound(margin))):
        brute = first_crossing(exact(*sample), threshold, interval)
        if not np.array_equal(brute, crossing(sample, exact, bound, threshold, interval)):
            sys.exit("screened and exact e-values disagree: the bench is wrong")


# --- Flagger, Argo Rollouts, SPRT --------------------------------------------------


def per_minute(traffic: Traffic, per: int) -> tuple[Int, Int]:
    runs, looks = traffic.canary_n.shape
    minutes = looks // per
    shape = (runs, minutes, per)
    n = traffic.canary_n[:, : minutes * per].reshape(shape).sum(2)
    e = traffic.canary_events[:, : minutes * per].reshape(shape).sum(2)
    return n, e


def failed_checks(traffic: Traffic, per: int) -> NDArray[np.bool_]:
    """Success rate below 99% over each minute (or no requests: no values / NaN)."""
    n, e = per_minute(traffic, per)
    return np.asarray((n == 0) | (100 * e > n), dtype=np.bool_)


def flagger(traffic: Traffic, per: int, horizon: float, threshold: int = 5) -> Float:
    cum = failed_checks(traffic, per).cumsum(1)
    reached = cum >= threshold
    # the k-th check (1-based) runs at k minutes; the rollback at the next tick
    t = np.where(reached.any(1), (reached.argmax(1) + 2) * 60.0, np.inf)
    return np.where(t <= horizon, t, np.inf)


def argo(traffic: Traffic, per: int, horizon: float, failure_limit: int = 3) -> Float:
    cum = failed_checks(traffic, per).cumsum(1)
    failed = cum > failure_limit
    t = np.where(failed.any(1), (failed.argmax(1) + 1) * 60.0, np.inf)
    return np.where(t <= horizon, t, np.inf)


def sprt_asn(p0: float, p1: float, alpha: float, beta: float) -> float:
    """Wald's expected sample number under p1, in requests."""
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    upper = math.log((1 - beta) / alpha)
    lower = math.log(beta / (1 - alpha))
    return ((1 - beta) * upper + beta * lower) / kl


def sprt_at_looks(traffic: Traffic, interval: float, alpha: float, beta: float) -> Float:
    """The oracle SPRT on the canary alone, evaluated only at the looks."""
    x = traffic.canary_events.cumsum(1)
    n = traffic.canary_n.cumsum(1)
    llr = x * math.log(P_BAD / P_STABLE) + (n - x) * math.log((1 - P_BAD) / (1 - P_STABLE))
    upper, lower = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    up, down = llr >= upper, llr <= lower
    t_up = np.where(up.any(1), up.argmax(1), np.iinfo(np.int64).max)
    t_down = np.where(down.any(1), down.argmax(1), np.iinfo(np.int64).max)
    rejected = up.any(1) & (t_up < t_down)
    return np.where(rejected, (t_up + 1) * interval, np.inf)


# --- priors for the harm test ---------------------------------------------------------


def truncated_beta(a: float, b: float) -> Callable[[Int, Int, Int, Int], Float]:
    """The harm mixture with another fixed Beta(a, b) prior (through the library)."""

    def fn(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
        return log_e_harm(xc, xs, nc, ns, prior=(a, b))

    return fn


def null_centred(k: float) -> Callable[[Int, Int, Int, Int], Float]:
    """Beta(k theta0, k (1 - theta0)), Lindon & Malek's prior centred on the null,
    truncated to the alternative as ours is."""

    def fn(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
        theta0 = nc / (nc + ns)
        a, b = k * theta0, k * (1 - theta0)
        with np.errstate(divide="ignore"):
            tail = np.log(betaincc(a + xc, b + xs, theta0)) - np.log(betaincc(a, b, theta0))
        return np.asarray(
            betaln(a + xc, b + xs) - betaln(a, b) + tail - xlogy(xc, theta0) - xlog1py(xs, -theta0),
            dtype=np.float64,
        )

    return fn


def oracle(rho: float) -> Callable[[Int, Int, Int, Int], Float]:
    """The likelihood ratio at the true effect: what no mixture can beat on average."""

    def fn(xc: Int, nc: Int, xs: Int, ns: Int) -> Float:
        theta0 = nc / (nc + ns)
        theta1 = theta0 * rho / (theta0 * rho + 1 - theta0)
        log_lr = xc * np.log(theta1 / theta0) + xs * np.log((1 - theta1) / (1 - theta0))
        return np.asarray(log_lr, dtype=np.float64)

    return fn


ORACLE = oracle(P_BAD / P_STABLE)
PRIORS: dict[str, LogE] = {
    f"Beta{HARM_PRIOR} (shipped)": harm,
    "Beta(0.5, 0.5)": truncated_beta(0.5, 0.5),
    "Beta(2, 1)": truncated_beta(2.0, 1.0),
    "null-centred k=1": null_centred(1.0),
    "null-centred k=5": null_centred(5.0),
    "null-centred k=20": null_centred(20.0),
    "oracle LR at the true ratio 10 (not a valid test)": ORACLE,
}


# --- one cell, and the report --------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    rate: float
    ours: Float  # TTR on bad canaries (inf: not rolled back)
    ours_false: float  # healthy canaries rolled back
    ours_no_harm: Float  # time to a no-harm verdict on healthy canaries
    wrong_promotions: float  # bad canaries with a no-harm verdict before harm
    flagger_bad: Float
    flagger_false: float
    argo_bad: Float
    argo_false: float
    sprt_asn_s: float
    sprt_looks: Float
    oracle: Float  # TTR of the likelihood ratio at the true effect (not a valid test)
    prior_rows: list[str]


def run_cell(
    rate: float, args: argparse.Namespace, seeds: tuple[np.random.SeedSequence, ...]
) -> Cell:
    looks = int(args.horizon // args.interval)
    per = int(60.0 // args.interval)
    threshold = math.log(1 / args.alpha)
    bad = simulate(np.random.default_rng(seeds[0]), args.runs, looks, args.interval, rate, P_BAD)
    good = simulate(
        np.random.default_rng(seeds[1]), args.runs, looks, args.interval, rate, P_STABLE
    )
    cum_bad, cum_good = bad.cumulative(), good.cumulative()
    for cum in (cum_bad, cum_good):
        check_screening(cum, threshold, args.margin, args.interval)

    def first(cum: tuple[Int, Int, Int, Int], exact: LogE, bound: LogE) -> Float:
        return crossing(cum, exact, bound, threshold, args.interval)

    harm_bad = first(cum_bad, harm, harm_bound)
    harm_good = first(cum_good, harm, harm_bound)
    no_harm_bad = first(cum_bad, no_harm(args.margin), no_harm_bound(args.margin))
    no_harm_good = first(cum_good, no_harm(args.margin), no_harm_bound(args.margin))
    prior_rows = []
    oracle_bad = np.full(args.runs, np.inf)
    for name, fn in PRIORS.items():
        tb, tg = first(cum_bad, fn, harm_bound), first(cum_good, fn, harm_bound)
        if fn is ORACLE:
            oracle_bad = tb
        prior_rows.append(
            f"| {rate:g} | {name} | {quantile(tb, 50)} | {quantile(tb, 95)} | {pct(rate_of(tg))} |"
        )
    flagger_good, argo_good = flagger(good, per, args.horizon), argo(good, per, args.horizon)
    return Cell(
        rate=rate,
        # the engine stops at the first verdict; harm wins a tie
        ours=np.where(harm_bad <= no_harm_bad, harm_bad, np.inf),
        ours_false=rate_of(harm_good),
        ours_no_harm=no_harm_good,
        wrong_promotions=float(np.mean(no_harm_bad < harm_bad)),
        flagger_bad=flagger(bad, per, args.horizon),
        flagger_false=rate_of(flagger_good),
        argo_bad=argo(bad, per, args.horizon),
        argo_false=rate_of(argo_good),
        sprt_asn_s=sprt_asn(P_STABLE, P_BAD, args.alpha, 0.01) / rate,
        sprt_looks=sprt_at_looks(bad, args.interval, args.alpha, 0.01),
        oracle=oracle_bad,
        prior_rows=prior_rows,
    )


def rate_of(times: Float) -> float:
    """Share of runs with a finite time: the event happened within the horizon."""
    return float(np.mean(np.isfinite(times)))


def median(times: Float) -> float:
    return float(np.percentile(times, 50, method="inverted_cdf"))


def quantile(times: Float, q: float) -> str:
    """Nearest-rank quantile in seconds; "never" when it lies beyond the horizon."""
    value = float(np.percentile(times, q, method="inverted_cdf"))
    return f"{value:.0f}" if math.isfinite(value) else "never"


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table_rows(cell: Cell, interval: float) -> list[str]:
    r = f"{cell.rate:g}"
    return [
        f"| {r} | SwiftDeploy e-process | {quantile(cell.ours, 50)} | {quantile(cell.ours, 95)} "
        f"| {pct(1 - rate_of(cell.ours))} | {pct(cell.ours_false)} "
        f"| {quantile(cell.ours_no_harm, 50)} ({pct(rate_of(cell.ours_no_harm))}) |",
        f"| {r} | Flagger (interval 1m, threshold 5) | {quantile(cell.flagger_bad, 50)} "
        f"| {quantile(cell.flagger_bad, 95)} | {pct(1 - rate_of(cell.flagger_bad))} "
        f"| {pct(cell.flagger_false)} | - |",
        f"| {r} | Argo Rollouts (interval 1m, failureLimit 3) | {quantile(cell.argo_bad, 50)} "
        f"| {quantile(cell.argo_bad, 95)} | {pct(1 - rate_of(cell.argo_bad))} "
        f"| {pct(cell.argo_false)} | - |",
        f"| {r} | Wald SPRT E[N], oracle lower bound | {cell.sprt_asn_s:.1f} (mean) "
        "| - | - | - | - |",
        f"| {r} | the same SPRT, looked at every {interval:g} s | {quantile(cell.sprt_looks, 50)} "
        f"| {quantile(cell.sprt_looks, 95)} | - | - | - |",
    ]


def goal_row(cell: Cell) -> str:
    ours = median(cell.ours)
    to_sprt = ours / cell.sprt_asn_s
    vs_flagger = median(cell.flagger_bad) / ours
    vs_argo = median(cell.argo_bad) / ours
    return (
        f"| {cell.rate:g} | {pct(cell.ours_false)} {verdict(cell.ours_false <= 0.01)} "
        f"| {to_sprt:.2f}x {verdict(to_sprt <= 1.5)} "
        f"| {vs_flagger:.1f}x {verdict(vs_flagger >= 10)} "
        f"| {vs_argo:.1f}x {verdict(vs_argo >= 10)} | {pct(cell.wrong_promotions)} |"
    )


def notes(cell: Cell, interval: float) -> list[str]:
    """Why a goal is missed, when the reason is arithmetic rather than the method."""
    out = []
    ours, bound = median(cell.ours), cell.sprt_asn_s
    if ours > 1.5 * bound:
        out.append(
            f"- {cell.rate:g} rps: 1.5x the SPRT bound is {1.5 * bound:.1f} s. The likelihood "
            "ratio at the true effect (no mixture has faster expected growth) needs "
            f"{median(cell.oracle):.0f} s (median), and the oracle SPRT itself, looked at "
            f"every {interval:g} s, "
            f"{median(cell.sprt_looks):.0f} s: the look interval and not knowing the stable "
            "rate (conditioning on the total) account for the gap."
        )
    for name, theirs in (("Flagger", cell.flagger_bad), ("Argo Rollouts", cell.argo_bad)):
        need = median(theirs) / 10
        if ours * 10 > median(theirs) and need < bound:
            out.append(
                f"- {cell.rate:g} rps: 10x faster than {name} means a median of {need:.0f} s, "
                f"while even the oracle SPRT, which knows the stable rate, needs {bound:.0f} s "
                f"on average and {median(cell.sprt_looks):.0f} s (median) at the same looks."
            )
    return out


def report(cells: list[Cell], args: argparse.Namespace, command: str, elapsed: float) -> str:
    setup = (
        f"{args.runs} runs per cell; canary at {CANARY_SHARE:.0%} of traffic (stable gets 9x), "
        f"Poisson arrivals; stable error rate {P_STABLE:.1%}, canary {P_BAD:.0%} (bad) or "
        f"{P_STABLE:.1%} (healthy); looks every {args.interval:g} s for {args.horizon:.0f} s; "
        f"alpha {args.alpha:g}, tolerance 0, margin {args.margin:g}; seed {args.seed}. "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, {os.cpu_count()} CPUs; {elapsed:.0f} s."
    )
    lines = [
        "# Detection benchmark: sequential e-process vs Flagger vs Argo Rollouts",
        "",
        f"Command: `.venv/bin/python {command}`",
        "",
        setup,
        "",
        "Time to rollback (TTR) counts from the moment the canary gets traffic; quantiles are "
        "nearest-rank. Missed: bad canaries not rolled back within the horizon. False "
        "rollbacks: healthy canaries rolled back within the horizon (SwiftDeploy's harm test "
        "runs the whole horizon here, ignoring the early stop a no-harm verdict gives, so "
        "this bounds the engine). Early no-harm: median time to a no-harm verdict on healthy "
        "canaries, and the share that reach one within the horizon. Flagger and Argo see the "
        "same traffic, held at 10% for the whole horizon.",
        "",
        "| canary rps | method | bad: median TTR s | bad: p95 TTR s | bad: missed "
        "| healthy: false rollbacks | healthy: early no-harm s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        lines += table_rows(cell, args.interval)
    lines += [
        "",
        "## Goals",
        "",
        "| canary rps | false rollbacks <= 1% | median TTR / SPRT E[N] <= 1.5x "
        "| >= 10x faster than Flagger | >= 10x faster than Argo "
        "| bad canaries promoted (no-harm first) |",
        "|---:|---|---|---|---|---:|",
        *(goal_row(cell) for cell in cells),
    ]
    missed = [line for cell in cells for line in notes(cell, args.interval)]
    if missed:
        lines += ["", *missed]
    lines += [
        "",
        "## Harm-test prior on theta over (theta0, 1), same traffic",
        "",
        "| canary rps | prior | bad: median TTR s | bad: p95 TTR s | healthy: false rollbacks |",
        "|---:|---|---:|---:|---:|",
        *(row for cell in cells for row in cell.prior_rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="Monte Carlo runs per cell")
    parser.add_argument("--horizon", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--margin", type=float, default=0.01, help="no-harm absolute margin")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if 60.0 % args.interval:
        parser.error("--interval must divide 60 s (Flagger and Argo check every minute)")
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join(["bench/detection.py", *(shlex.quote(a) for a in raw)])
    started = time.perf_counter()
    seeds = np.random.SeedSequence(args.seed).spawn(2 * len(RATES))
    cells = []
    for i, rate in enumerate(RATES):
        cells.append(run_cell(rate, args, (seeds[2 * i], seeds[2 * i + 1])))
        print(f"  {rate:g} rps done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    text = report(cells, args, command, time.perf_counter() - started)
    print(text, end="")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
