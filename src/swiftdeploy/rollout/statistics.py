"""From the evidence ledger to the statistics the canary policy reads. Pure.

Four anytime-valid tests can roll a canary back, each an e-process over the whole
rollout (docs/decisions.md has the reasoning and the figures):

- errors: canary against stable, the conditional harm test of `stats.sequential`
  on each step's counts (its own traffic share), multiplied from step to step;
- latency: the same on requests slower than the stable's p99 + `detect.latency`
  (the bound is fixed before the canary starts);
- error_rate: the canary's error rate against `thresholds.max_error_rate`;
- p99: the canary's share of requests slower than `thresholds.max_p99_ms` against 1%.

The rollout's evidence of harm is the weighted mean of the four e-values (WEIGHTS):
a mean of e-processes is an e-process, so by Ville's inequality a healthy canary (no
worse than stable, within the limits) is rolled back with probability at most alpha
over the whole rollout, however many looks and steps it takes.

A step passes when, for errors and for latency alike, either a regression of the size
in `policy.detect` would have been caught by now with probability 1 - beta (`power`),
or the no-harm test rules such a regression out at level beta, or an earlier step of
this rollout did one of these. Otherwise it holds and says how many more canary
requests that takes. No evidence is never a reason to roll back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from swiftdeploy.durations import format_duration
from swiftdeploy.manifest import ErrorRegression, Policy
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.state.evidence import (
    DIMENSIONS,
    Arms,
    Counts,
    Dimension,
    Evidence,
    PassedBy,
    StepLedger,
)
from swiftdeploy.stats.dispersion import (
    BLOCK_S,
    HISTORY_BLOCKS,
    KNOWN_BLOCKS,
    Dispersion,
    deflated,
)
from swiftdeploy.stats.power import MAX_REQUESTS, needed_requests, pessimistic_rate, round_up
from swiftdeploy.stats.sequential import (
    E_VALUE_CAP,
    log_e_exceeds,
    log_e_harm,
    log_e_no_harm,
)

# Each test's share of alpha. Errors against stable carry most: they catch what users
# feel first, and its share sets how fast a 5% canary goes (docs/decisions.md).
WEIGHTS: dict[str, float] = {"errors": 0.8, "latency": 0.1, "error_rate": 0.05, "p99": 0.05}
# Under the latency regression, 1% of the canary's requests are slower than the bound.
LATENCY_SHARE = 0.01
# The stable's p99 is read before the canary starts only from this many requests.
REFERENCE_REQUESTS = 100
# A test counts among the reasons for a rollback when it carries this much of it.
CONTRIBUTION = 0.25
_LOG_CAP = math.log(E_VALUE_CAP)

TestVerdict = Literal["pass", "continue", "harm"]


class Harm(TypedDict):
    """The rollout's evidence of harm: the weighted mean of the four tests' e-values."""

    e_value: float
    threshold: float  # 1 / alpha
    verdict: Literal["harm", "none"]
    weights: dict[str, float]


class Comparison(TypedDict):
    """The canary against the stable on one dimension (errors, or slow requests)."""

    kind: Literal["compare"]
    verdict: TestVerdict
    passed_by: PassedBy | None
    e_value: float  # over the rollout: this step's times what earlier steps carried
    e_value_step: float
    carried: float
    weight: float
    e_value_no_harm: float
    no_harm_threshold: float
    needed: int | None  # canary requests for the power; None: cannot be planned
    remaining: int | None
    eta_s: float | None
    canary_rps: float | None
    canary_n: int
    canary_events: int
    dispersion: float
    stable_n: int
    stable_events: int
    effect: float | None
    stable_spread_known: bool
    note: str
    regression: str  # the regression to catch, in words


class LatencyComparison(Comparison):
    slow_above_ms: float | None
    warming_up: bool


class Limit(TypedDict):
    """The canary against an absolute limit, over the whole rollout."""

    kind: Literal["limit"]
    verdict: TestVerdict
    e_value: float
    weight: float
    canary_n: int
    canary_events: int
    dispersion: float
    limit: float


class P99Limit(Limit):
    slow_above_ms: float | None


class Statistics(TypedDict):
    """What `assess` returns and the policy reads as `input.statistics`
    (docs/policy-input.md); JSON as it is."""

    harm: Harm
    errors: Comparison
    latency: LatencyComparison
    error_rate: Limit
    p99: P99Limit


@dataclass(frozen=True)
class Settings:
    """What the statistics need from the manifest's policy section."""

    alpha: float
    beta: float
    errors: ErrorRegression
    latency_ms: float
    max_error_rate: float
    max_p99_ms: float

    @classmethod
    def of(cls, policy: Policy) -> Settings:
        return cls(
            alpha=policy.alpha,
            beta=policy.beta,
            errors=policy.detect.errors,
            latency_ms=policy.detect.latency_ms,
            max_error_rate=policy.thresholds.max_error_rate,
            max_p99_ms=policy.thresholds.max_p99_ms,
        )


def assess(evidence: Evidence, settings: Settings) -> Statistics:
    """The statistics of the current step (docs/policy-input.md); the ledger must have one."""
    step = evidence.current
    if step is None:
        raise ValueError("no step to assess")
    errors = _errors(evidence, step, settings)
    latency = _latency(evidence, step, settings)
    error_rate = _error_rate(evidence, settings)
    p99 = _p99(evidence, settings)
    tests: dict[str, Comparison | Limit] = {
        "errors": errors,
        "latency": latency,
        "error_rate": error_rate,
        "p99": p99,
    }
    combined = sum(WEIGHTS[name] * _toward_harm(test) for name, test in tests.items())
    harm = combined >= 1.0 / settings.alpha
    for name, test in tests.items():
        weighted = WEIGHTS[name] * _toward_harm(test)
        # named when it alone would have rolled back, or carries much of the evidence
        if harm and (weighted >= 1.0 / settings.alpha or weighted >= CONTRIBUTION * combined):
            test["verdict"] = "harm"
    return {
        "harm": {
            "e_value": min(combined, E_VALUE_CAP),
            "threshold": 1.0 / settings.alpha,
            "verdict": "harm" if harm else "none",
            "weights": dict(WEIGHTS),
        },
        "errors": errors,
        "latency": latency,
        "error_rate": error_rate,
        "p99": p99,
    }


def _toward_harm(test: Comparison | Limit) -> float:
    """A test's e-value as it counts toward a rollback: a comparison whose stable spread
    is not known yet counts no evidence of harm (at most 1). Counting less than the
    e-value at some looks only removes chances to roll back, so alpha still holds."""
    e_value = test["e_value"]
    return min(e_value, 1.0) if test.get("stable_spread_known") is False else e_value


def latency_bound(reference: Measurement, latency_ms: float) -> tuple[float, str]:
    """The bound (seconds) above which a request counts as slow in the latency
    comparison, fixed for the rollout before the canary starts so that no canary data
    can move it. Also says how it was chosen.

    A histogram knows the stable's p99 only to its bucket, (low, high]. The bound is
    the largest bucket bound at or below low + `detect.latency`: a canary whose p99 is
    `detect.latency` above the stable's then has at least 1% of its requests above the
    bound (its p99 exceeds the stable's p99 + the regression >= low + the regression
    >= the bound), which is what the power planning assumes (LATENCY_SHARE). The bound
    is a bucket bound, so counting requests above it needs no further rounding.
    Rounding the other way (the bucket's upper edge plus the regression, then up to
    the next bucket) made "slow" mean p99 + 136 ms and left a +100 ms canary with
    0.06% slow requests: caught in 5-42% of rollouts instead of 90%."""
    regression_s = latency_ms / 1000
    bounds = sorted(b for le in reference.buckets if math.isfinite(b := float(le)))
    span = format_duration(reference.elapsed_s or 0.0)
    edges = (
        stable_p99_bucket(reference.buckets) if reference.requests >= REFERENCE_REQUESTS else None
    )
    if edges is None or math.isinf(edges[1]):
        return _at_or_below(bounds, regression_s), (
            f"the stable's p99 was not known ({reference.requests} requests in its last"
            f" {span}): slow means slower than {latency_ms:g} ms"
        )
    low, high = edges
    bound = _at_or_below(bounds, low + regression_s)
    return bound, (
        f"stable p99 in ({low * 1000:g}, {high * 1000:g}] ms ({reference.requests} requests"
        f" in its last {span}); slow means slower than {bound * 1000:g} ms, the largest"
        f" bucket bound at or below {low * 1000:g} + {latency_ms:g} ms"
    )


def _at_or_below(bounds: list[float], value: float) -> float:
    """The largest histogram bound at or below `value` (`value` itself without bounds,
    the smallest bound when all are above it)."""
    below = [b for b in bounds if b <= value + 1e-12]
    if below:
        return below[-1]
    return bounds[0] if bounds else value


def stable_p99_bucket(buckets: dict[str, int]) -> tuple[float, float] | None:
    """The (lower, upper] bounds (seconds) of the bucket holding the p99 of cumulative
    buckets; None without observations."""
    pairs = sorted((float(le), count) for le, count in buckets.items())
    if not pairs or pairs[-1][1] <= 0:
        return None
    total = pairs[-1][1]
    low = 0.0
    for le, count in pairs:
        if count >= 0.99 * total:
            return low, le
        low = le
    return None  # pragma: no cover - the last bucket holds every observation


def passed_dimensions(statistics: Statistics) -> dict[Dimension, PassedBy]:
    """How each dimension passed at this look, to keep in the ledger (passes are sticky
    within a step: the no-harm e-value may dip after reaching its bar, and Ville's
    inequality covers its running maximum)."""
    out: dict[Dimension, PassedBy] = {}
    for dimension in DIMENSIONS:
        passed_by = statistics[dimension].get("passed_by")
        if passed_by is not None:
            out[dimension] = passed_by
    return out


@dataclass(frozen=True)
class StepProgress:
    """Where the current step stands, in numbers: what it still needs before its tests
    have passed, at the canary rate it has. For the live view, `status` and JSON."""

    canary_requests: int  # the step's canary requests so far
    canary_rps: float | None  # the step's canary rate; None before it has one
    # More canary requests until every undecided test has the power (the warm-up's
    # included): 0 once all have passed; None when that cannot be planned yet.
    needed_requests: int | None
    eta_s: float | None  # about how long those take at canary_rps
    # The canary's warm-up still to run (seconds, canary requests); None when not warming.
    warmup_left: tuple[float, int] | None
    passed: dict[str, str]  # dimension -> how it passed (power, no_harm, earlier_step, hand)
    waiting: tuple[str, ...]  # the dimensions still undecided
    harm_e_value: float | None
    harm_threshold: float | None
    note: str  # why it cannot be planned, or what the warm-up still waits for

    @property
    def harm_share(self) -> float:
        """How far the evidence of harm has gone to a rollback, 0 to 1, on the log scale
        the e-values grow on (1: rolled back)."""
        e, bar = self.harm_e_value, self.harm_threshold
        if e is None or bar is None or e <= 1 or bar <= 1:
            return 0.0
        return min(math.log(e) / math.log(bar), 1.0)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"harm_share": round(self.harm_share, 3)}


def step_progress(
    statistics: Statistics | None, evidence: Evidence | None = None
) -> StepProgress | None:
    """The step's standing from its statistics (`assess`); with the ledger they came
    from, the warm-up still to run counts in the requests and time it needs. None
    without statistics."""
    if not statistics:
        return None
    harm = statistics["harm"]
    served = statistics["errors"]["canary_n"]
    rate = _rate(statistics)
    warm_s, warm_requests = _warmup_left(evidence)
    passed: dict[str, str] = {}
    waiting: list[str] = []
    needs: list[int | None] = []
    notes: list[str] = []
    for name in DIMENSIONS:
        stat: Mapping[str, Any] = statistics[name]
        if stat.get("passed_by"):
            passed[name] = str(stat["passed_by"])
            continue
        waiting.append(name)
        remaining = stat.get("remaining")
        need = remaining if isinstance(remaining, int) else None
        if stat.get("warming_up") and need is not None:
            # latency is counted only after the warm-up: its requests come first
            ahead = max(warm_requests, math.ceil(rate * warm_s)) if rate else warm_requests
            need += ahead
        needs.append(need)
        if need is None:
            notes.append(str(stat.get("note") or "power cannot be planned yet"))
    needed = None if None in needs else max((n for n in needs if n is not None), default=0)
    eta = _finite(needed / rate) if needed is not None and rate else None
    if needed is not None and warm_s > 0 and "latency" in waiting:
        eta = max(eta or 0.0, warm_s)
    return StepProgress(
        canary_requests=served,
        canary_rps=rate,
        needed_requests=needed,
        eta_s=0.0 if needed == 0 else eta,
        warmup_left=(warm_s, warm_requests) if evidence is not None and evidence.warming else None,
        passed=passed,
        waiting=tuple(waiting),
        harm_e_value=harm["e_value"],
        harm_threshold=harm["threshold"],
        note="; ".join(dict.fromkeys(notes)),
    )


def progress(
    statistics: Statistics | None, evidence: Evidence | None = None
) -> list[tuple[str, str]]:
    """Where the step stands in plain words, as (label, text): what it still needs
    ("needs about 600 more canary requests, about 2 min"), how each of errors and
    latency stands, and the evidence of harm. `statistics_rows` has the numbers behind."""
    standing = step_progress(statistics, evidence)
    if standing is None or statistics is None:
        return []
    rows = [("progress", describe_progress(standing))]
    for name in DIMENSIONS:
        rows.append((name, _dimension_words(name, statistics[name], standing)))
    rows.append(("harm", _harm_words(standing)))
    return rows


def describe_progress(standing: StepProgress) -> str:
    """What the step still needs, in one phrase."""
    if not standing.waiting:
        return "enough evidence to pass"
    if standing.canary_requests == 0:
        return "no canary traffic yet"
    warming = _warming_words(standing)
    first = f"{warming}; " if warming else ""
    if standing.needed_requests is None:
        return f"{first}cannot tell yet what it needs: {standing.note}"
    return first + _needs(standing.needed_requests, standing.eta_s)


def statistics_rows(statistics: Statistics | None) -> list[tuple[str, str]]:
    """The statistics behind `progress` (for --verbose), as (label, text): the evidence
    of harm against its bar, and for errors and latency the power still needed and the
    no-harm test against its bar."""
    if not statistics:
        return []
    harm = statistics["harm"]
    lines = [
        (
            "evidence of harm",
            f"{_e(harm['e_value'])} (rolls back at {_e(harm['threshold'])})",
        )
    ]
    for name in DIMENSIONS:
        stat: Mapping[str, Any] = statistics[name]
        passed = stat.get("passed_by")
        if passed:
            lines.append((name, f"passed by {str(passed).replace('_', ' ')}"))
            continue
        remaining = stat.get("remaining")
        need = (
            f"{remaining} more canary requests for the power"
            if isinstance(remaining, int)
            else str(stat.get("note") or "power cannot be planned yet")
        )
        no_harm = (
            f"no harm {_e(stat.get('e_value_no_harm'))} of {_e(stat.get('no_harm_threshold'))}"
        )
        lines.append((name, f"{need}; {no_harm}"))
    return lines


_PASSED_WORDS = {
    "power": "passed: would have caught {regression} by now",
    "no_harm": "passed: {regression} ruled out",
    "earlier_step": "passed in an earlier step",
    "hand": "passed by hand",
}


def _dimension_words(name: str, stat: Mapping[str, Any], standing: StepProgress) -> str:
    passed = standing.passed.get(name)
    if passed is not None:
        text = _PASSED_WORDS.get(passed, f"passed by {passed}")
        return text.format(regression=stat.get("regression") or "the regression")
    if standing.canary_requests == 0:
        return "no canary traffic yet"
    if stat.get("warming_up"):
        warming = _warming_words(standing)
        return f"{warming}; tested after" if warming else str(stat.get("note"))
    remaining = stat.get("remaining")
    if not isinstance(remaining, int):
        return str(stat.get("note") or "power cannot be planned yet")
    eta = stat.get("eta_s")
    return _needs(remaining, eta if isinstance(eta, int | float) else None)


def _warming_words(standing: StepProgress) -> str:
    """What is left of the canary's warm-up (`warming up: 34 s left`); empty when it is
    over or not known."""
    if standing.warmup_left is None:
        return ""
    seconds, requests = standing.warmup_left
    parts = [format_duration(seconds)] if seconds >= 0.5 else []
    parts += [f"{requests:,} canary requests"] if requests > 0 else []
    return f"warming up: {' and '.join(parts)} left" if parts else ""


def _harm_words(standing: StepProgress) -> str:
    share = standing.harm_share
    if share <= 0:
        return "no evidence of harm"
    return f"some evidence of harm, {share:.0%} of the way to a rollback"


def _needs(requests: int, eta_s: float | None) -> str:
    text = f"needs about {_about(requests):,} more canary requests"
    return text + (f", about {format_duration(eta_s)}" if eta_s is not None else "")


def _about(requests: int) -> int:
    """A count rounded up to two significant digits: a plan, not a measurement."""
    if requests < 100:
        return requests
    scale = int(10 ** (len(str(requests)) - 2))
    return -(-requests // scale) * scale


def _rate(statistics: Statistics) -> float | None:
    rates = [
        rate
        for name in DIMENSIONS
        if (rate := statistics[name]["canary_rps"]) is not None and rate > 0
    ]
    return rates[0] if rates else None


def _warmup_left(evidence: Evidence | None) -> tuple[float, int]:
    """(seconds, canary requests) of the warm-up still to run, at the last look."""
    if evidence is None or evidence.warmup is None:
        return 0.0, 0
    warmup = evidence.warmup
    return warmup.left(evidence.marks.get("canary", warmup.since))


def _e(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.3g}" if value < 1e6 else "> 1e6"


# --- canary against stable -----------------------------------------------------------


def _errors(evidence: Evidence, step: StepLedger, settings: Settings) -> Comparison:
    regression = settings.errors
    # no harm: below the stable's rate plus the points, or below the ratio times it
    points = regression.kind == "points"
    tolerance, margin = (0.0, regression.value) if points else (regression.value - 1.0, 0.0)
    spread = evidence.dispersion("errors")
    carried = sum(deflated(_log_harm(earlier.errors()), spread) for earlier in evidence.earlier)
    stable = evidence.rollout_counts("stable")
    needed = needed_for_errors(stable, step.weight, carried, settings, spread)
    known = evidence.stable_known("errors")
    return _comparison(
        "errors", evidence, step, step.errors(), spread, carried, needed, tolerance, margin,
        settings, regression.text, waiting="" if known else _unknown_errors(evidence),
    )  # fmt: skip


def _unknown_errors(evidence: Evidence) -> str:
    """Why the errors comparison waits, as a note: without the stable's history (the
    `scrape` provider), a stable that has not failed yet may still fail in bursts, and
    a burst of the canary's would read as a regression (docs/decisions.md, "Bursts")."""
    spread = evidence.stable_spread.get("errors") or Dispersion()
    return (
        f"the stable's errors are not known yet ({spread.blocks} blocks of"
        f" {format_duration(BLOCK_S)}, {spread.events} errors; {KNOWN_BLOCKS} of each,"
        f" or {HISTORY_BLOCKS} blocks): no rollback or pass by power on errors before"
    )


def _latency(evidence: Evidence, step: StepLedger, settings: Settings) -> LatencyComparison:
    bound = evidence.latency_bound_s
    arms = step.slow(bound)
    spread = evidence.dispersion("latency")
    carried = sum(
        deflated(_log_harm(earlier_arms), spread)
        for earlier in evidence.earlier
        if (earlier_arms := earlier.slow(bound))
    )
    stable = evidence.rollout_counts("stable")
    needed, note = needed_for_latency(stable, bound, step.weight, carried, settings, spread)
    result = _comparison(
        "latency", evidence, step, arms or Arms(0, 0, 0, 0), spread, carried, needed, 0.0,
        LATENCY_SHARE, settings, f"+{settings.latency_ms:g} ms at p99",
    )  # fmt: skip
    warming = _warming(evidence)
    result["note"] = warming or note or result["note"]
    bound_s = arms.bound_s if arms is not None else None
    return {
        **result,
        "slow_above_ms": bound_s * 1000 if bound_s is not None else None,
        "warming_up": bool(warming),
    }


def _warming(evidence: Evidence) -> str:
    """What is left of the canary's warm-up, as a note; empty once it is over."""
    warmup, now = evidence.warmup, evidence.marks.get("canary")
    if warmup is None or warmup.done:
        return ""
    left = warmup.describe_left(now if now is not None else warmup.since)
    return f"warming up: {left} left; latency is tested after"


def _comparison(
    name: Dimension,
    evidence: Evidence,
    step: StepLedger,
    arms: Arms,
    spread: float,
    carried: float,
    needed: int | None,
    tolerance: float,
    margin: float,
    settings: Settings,
    regression: str,
    waiting: str = "",
) -> Comparison:
    """One comparison's statistics. `waiting` says why it may neither roll back nor
    pass by power yet (it could not have caught a regression by then); empty if not."""
    x, nc, y, ns = arms[:4]
    # harm counts evidence in independent units (bursts of events weigh as what they
    # are); no harm counts every event, so a burst never makes a pass easier
    log_step = deflated(_log_harm(arms), spread)
    log_no_harm = log_e_no_harm(x, nc, y, ns, tolerance, margin)
    by_power = None if waiting else needed
    passed_by = _passed_by(name, evidence, step, nc, by_power, log_no_harm, settings)
    remaining = max(needed - nc, 0) if needed is not None else None
    # the step's canary rate (all of its requests: the latency counts leave the warm-up out)
    served = step.canary.requests
    rate = _finite(served / step.observed_s) if step.observed_s > 0 and served > 0 else None
    return {
        "kind": "compare",
        "verdict": "pass" if passed_by else "continue",
        "passed_by": passed_by,
        "e_value": _exp(carried + log_step),
        "e_value_step": _exp(log_step),
        "carried": _exp(carried),
        "weight": WEIGHTS[name],
        "e_value_no_harm": _exp(log_no_harm),
        "no_harm_threshold": 1.0 / settings.beta,
        "needed": needed,
        "remaining": remaining,
        "eta_s": _finite(remaining / rate)
        if remaining and rate
        else (0.0 if remaining == 0 else None),
        "canary_rps": rate,
        "canary_n": nc,
        "canary_events": x,
        "dispersion": spread,
        "stable_n": ns,
        "stable_events": y,
        "effect": x / nc - y / ns if nc and ns else None,
        "stable_spread_known": not waiting,
        "note": waiting or ("" if needed is not None else "power cannot be planned yet"),
        "regression": regression,
    }


def _passed_by(
    name: Dimension,
    evidence: Evidence,
    step: StepLedger,
    canary_n: int,
    needed: int | None,
    log_no_harm: float,
    settings: Settings,
) -> PassedBy | None:
    if name in step.passed:
        return step.passed[name]
    if any(s.passed.get(name) in ("power", "no_harm", "earlier_step") for s in evidence.earlier):
        return "earlier_step"
    if needed is not None and canary_n >= needed:
        return "power"
    if log_no_harm >= math.log(1.0 / settings.beta):
        return "no_harm"
    return None


def needed_for_errors(
    stable: Counts, weight: int, carried: float, settings: Settings, dispersion: float = 1.0
) -> int | None:
    """Canary requests at this weight for power 1 - beta against `detect.errors`,
    planned with the stable's rate at its pessimistic end, for a test whose evidence
    is divided by `dispersion`; None when it cannot be."""
    regression = settings.errors
    if regression.kind == "points":
        rate = pessimistic_rate(stable.errors, stable.requests)
        if rate is None:
            return None
        p_stable = round_up(rate)
        p_canary = p_stable + regression.value
    else:  # a ratio is hardest to see at a low stable rate: plan with the low end
        low = pessimistic_rate(stable.errors, stable.requests, level=0.05)
        if low is None or low <= 0:
            return None
        p_stable = _round_down(low)
        p_canary = min(p_stable * regression.value, 1.0)
    bar = _log_bar("errors", carried, settings)
    return _needed(weight, p_stable, p_canary, bar, settings.beta, dispersion)


def needed_for_latency(
    stable: Counts,
    bound: float | None,
    weight: int,
    carried: float,
    settings: Settings,
    dispersion: float = 1.0,
) -> tuple[int | None, str]:
    """Canary requests at this weight for power 1 - beta against `detect.latency` (1% of
    the canary's requests slower than `bound`), or None and why it cannot be planned."""
    if bound is None:
        return None, "no latency bound: the stable's p99 was not known when the rollout began"
    slow = stable.slower_than(bound)
    if slow is None:
        return None, "no latency histogram in the measurements"
    share = pessimistic_rate(slow.slow, slow.requests)
    if share is None:
        return None, "no stable traffic to compare with yet"
    if share >= LATENCY_SHARE:
        return None, (
            f"the stable itself has about {share:.1%} of requests slower than"
            f" {slow.bound_s * 1000:g} ms, so a canary p99 there is not a regression"
        )
    bar = _log_bar("latency", carried, settings)
    return _needed(weight, round_up(share), LATENCY_SHARE, bar, settings.beta, dispersion), ""


def _needed(
    weight: int,
    p_stable: float,
    p_canary: float,
    log_bar: float,
    beta: float,
    dispersion: float = 1.0,
) -> int | None:
    """Canary requests for power 1 - beta. With evidence divided by `dispersion` the
    exact test must reach `dispersion` times the bar, which takes at most `dispersion`
    times the requests (the requests grow with the bar less than in proportion), so
    that multiple is planned: never optimistic, and the exact plan stays cached."""
    if not 0 < weight < 100 or not math.isfinite(log_bar):
        return None  # no share to plan with, or earlier steps left no way back (e = 0)
    needed = needed_requests(weight / 100, p_stable, p_canary, log_bar, beta)
    if needed is None or needed * dispersion > MAX_REQUESTS:
        return None  # not within reach
    return math.ceil(needed * dispersion)


def _log_bar(name: str, carried: float, settings: Settings) -> float:
    """The log e-value this test must reach in this step on its own to roll back:
    its share of 1/alpha, less what earlier steps carried (rounded up for the cache)."""
    bar = math.log(1.0 / (WEIGHTS[name] * settings.alpha)) - carried
    return math.ceil(bar * 100) / 100 if math.isfinite(bar) else math.inf


# --- the canary against absolute limits, over the whole rollout ----------------------


def _error_rate(evidence: Evidence, settings: Settings) -> Limit:
    canary = evidence.rollout_counts("canary")
    spread = evidence.dispersion("errors")
    log_e = deflated(
        float(log_e_exceeds(canary.errors, canary.requests, settings.max_error_rate)), spread
    )
    return {
        "kind": "limit",
        "verdict": "continue",
        "e_value": _exp(log_e),
        "weight": WEIGHTS["error_rate"],
        "canary_n": canary.requests,
        "canary_events": canary.errors,
        "dispersion": spread,
        "limit": settings.max_error_rate,
    }


def _p99(evidence: Evidence, settings: Settings) -> P99Limit:
    n = slow = 0
    above: float | None = None
    for step in evidence.steps:
        counted = step.latency_counts("canary").slower_than(settings.max_p99_ms / 1000)
        if counted is not None:
            n, slow, above = n + counted.requests, slow + counted.slow, counted.bound_s * 1000
    spread = evidence.dispersion("p99")
    log_e = deflated(float(log_e_exceeds(slow, n, LATENCY_SHARE)), spread)
    return {
        "kind": "limit",
        "verdict": "continue",
        "e_value": _exp(log_e),
        "weight": WEIGHTS["p99"],
        "canary_n": n,
        "canary_events": slow,
        "dispersion": spread,
        "limit": LATENCY_SHARE,
        "slow_above_ms": above,
    }


# --- helpers ---------------------------------------------------------------------------


def _log_harm(arms: Arms) -> float:
    return float(log_e_harm(arms.canary_events, arms.stable_events, arms.canary_n, arms.stable_n))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _exp(log_value: float) -> float:
    return math.exp(min(log_value, _LOG_CAP))


def _round_down(value: float, digits: int = 2) -> float:
    if value <= 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.floor(value / scale + 1e-9) * scale
