"""Anytime-valid sequential tests: does the canary take more than its share of events?

An *event* is a failed request (5xx) or, for the latency track, a request slower than
the latency SLO bucket (`slo_events`). The engine looks after every interval (2 s by
default) and may stop at any look; every number here stays valid under that optional
stopping, because each test is an e-process and Ville's inequality bounds the chance
that it *ever* reaches 1/alpha under its null by alpha.

Two tests per track, on counts cumulated since the step began:

1. Harm (roll back). H0: p_canary <= (1 + tolerance) * p_stable.
   Conditional on the total number of events E, and with a share w of the requests
   going to the canary, each event lands on the canary with probability
       theta = w * p_c / (w * p_c + (1 - w) * p_s)
   whatever the (unknown, possibly time-varying) common error rate is; H0 is
   theta <= theta0 with theta0 the value at p_c = (1 + tolerance) * p_s. This is the
   construction of Lindon & Malek, "Anytime-Valid Inference for Multinomial Count
   Data", NeurIPS 2022 (arXiv:2011.03567; the two-arm case of their Poisson
   counting processes, whose next point comes from arm i with probability
   proportional to allocation x intensity), as used for canaries in Lindon, Sanden &
   Shirikian, "Rapid Regression Detection in Software Deployments through Sequential
   Testing", KDD 2022 (arXiv:2205.14762). They mix a Dirichlet prior over the whole
   simplex to test a point null; our null is one-sided, so the mixture is over the
   alternative only: a Beta(a, b) prior truncated to (theta0, 1). Each likelihood
   ratio L(theta)/L(theta0) with theta > theta0 is a nonnegative supermartingale under
   every theta' <= theta0, and so is their mixture, in closed form:
       e = B(a + X, b + E - X) * Q(a + X, b + E - X; theta0)
           / (B(a, b) * Q(a, b; theta0) * theta0^X * (1 - theta0)^(E - X))
   with Q the regularized upper incomplete beta function (scipy's betaincc).
   We use the *observed* request share w = n_c / (n_c + n_s), not the configured
   weight: routers round and hash, and what matters is where requests went. With a
   constant share the construction is exact; when the realised share wanders
   (random routing) it is an approximation whose false-alarm rate the tests and
   bench/detection.py measure by simulation (well under alpha). At p_c = p_s the
   binomial-sampling law of X given E is hypergeometric, which Hoeffding (1963,
   Thm. 4) shows is dominated in convex order by the binomial, so each fixed-time
   e-value is still valid.
   Prior: Beta(1, 1) (uniform over the alternative). bench/detection.py compares it
   with Lindon & Malek's null-centred Beta(k*theta0, k*(1-theta0)) for k = 1, 5, 20,
   Beta(0.5, 0.5) and Beta(2, 1) on the same traffic: its median time to rollback was
   the fastest or one 2 s look behind, its p95 the best or tied, and it trailed the
   (invalid) likelihood ratio that knows the true effect by 0-10 s. Concentrating the
   prior on the null (larger k) only slowed detection.

2. No harm (end the step early). H0': p_c >= (1 + tolerance) * p_s + margin, i.e. the
   canary is worse by more than the tolerated relative effect *plus* an absolute
   margin. Its e-process is the infimum over H0' of the product of one
   Beta-binomial mixture martingale per arm (Robbins 1970; the conjugate mixtures of
   Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
   confidence sequences", Ann. Statist. 2021; Lindon & Malek's Bernoulli processes):
       M(p) = B(a + x, b + n - x) / (B(a, b) * p^x * (1 - p)^(n - x)).
   At the true (p_c, p_s) the product is a test martingale, and an infimum over a
   set that contains the truth is never larger, so the infimum is an e-process for
   H0'. log M is convex in p, so the infimum sits on the line
   p_c = (1 + tolerance) * p_s + margin (or is the global minimum, <= 1, when the
   estimate itself lies in H0') and one bisection finds it. The per-arm prior is
   Beta(0.5, 20) (mean 2.4%): events are rare by design (errors, SLO breaches). On a
   healthy canary at a 10% share with a 1 point margin and the bar at 1/beta = 10, it
   shows no harm 10-20% sooner than Beta(0.5, 5) at stable event rates from 0 to 1%
   (700 canary requests instead of 875 at 0%, 1,625 instead of 2,000 at 0.5%), and
   about as soon at 2%; Beta(0.5, 5) had itself been 20% faster than Jeffreys'
   Beta(0.5, 0.5) at 0.5%.
   Unlike the harm test, this one assumes a stationary event rate within the step
   (a burst that hits both arms alike is not modelled); its mistake is a promotion
   one step early, not a rollback.

The effect reported is the difference in event rates p_c - p_s with a confidence
sequence from the same per-arm mixtures: {d : inf over p_c - p_s = d of
M_c(p_c) * M_s(p_s) < 1/alpha}, an interval because the infimum is convex in d. With
tolerance 0, a no-harm e-value of at least 1/alpha at a look is exactly
"ci_high <= margin" at that look.

Running maxima: Ville's inequality bounds sup_t e_t, so a verdict may use the largest
e-value seen so far in the step. The functions here are pure; pass the previous
maxima (`max_e_value`, `max_e_value_no_harm` of the last result in this step) to keep
a verdict once reached and to get the anytime-valid p-value min(1, 1/max e). Without
them, the current e-value stands in for the maximum, which is still valid, only
more forgetful.

The counts must be cumulative since the step (the test) began, not a sliding
window: a sliding window drops old evidence and breaks the supermartingale property.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict
from scipy.optimize import brentq
from scipy.special import betaincc, betaln, xlog1py, xlogy

Verdict = Literal["harm", "no_harm", "continue"]
FloatArray = NDArray[np.float64]

# Beta(a, b) prior on theta, truncated to (theta0, 1), for the harm test.
HARM_PRIOR: tuple[float, float] = (1.0, 1.0)
# Beta(a, b) prior on each arm's event probability, for no-harm and the effect CS.
RATE_PRIOR: tuple[float, float] = (0.5, 20.0)
# The policy input is JSON (no infinity) and caps magnitudes at 1e300.
E_VALUE_CAP = 1e300
_LOG_CAP = math.log(E_VALUE_CAP)
# Bisection steps for the no-harm infimum: the bracket is at most [0, 1], so 64 halvings
# reach the resolution of a double.
_BISECT_STEPS = 64
# Keep probabilities off 0 and 1 where a count makes the log-likelihood infinite.
_EDGE = 1e-15


class SequentialResult(BaseModel):
    """One track's statistics at one look; field names follow docs/policy-input.md."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    e_value: float  # harm: evidence that p_c > (1 + tolerance) * p_s
    p_value: float  # anytime-valid: min(1, 1 / max_e_value)
    verdict: Verdict
    effect: float | None  # p_c - p_s as observed; None without traffic on either arm
    ci_low: float  # confidence sequence for p_c - p_s at level 1 - alpha
    ci_high: float
    canary_n: int
    canary_events: int
    stable_n: int
    stable_events: int
    e_value_no_harm: float  # evidence that p_c < (1 + tolerance) * p_s + margin
    p_value_no_harm: float
    max_e_value: float  # running maxima within the step: pass them to the next look
    max_e_value_no_harm: float
    ratio: float | None  # p_c / p_s as observed; None when the stable arm has no events
    tolerance: float
    margin: float


def _floats(*values: ArrayLike) -> tuple[FloatArray, ...]:
    """Each value as an array of doubles (the vectorised functions take scalars too)."""
    return tuple(np.asarray(value, dtype=np.float64) for value in values)


def sequential_test(
    canary_n: int,
    canary_events: int,
    stable_n: int,
    stable_events: int,
    *,
    alpha: float = 0.01,
    tolerance: float = 0.0,
    margin: float = 0.01,
    previous_max_e: float = 1.0,
    previous_max_e_no_harm: float = 1.0,
) -> SequentialResult:
    """Both tests and the effect estimate for one track at one look.

    `tolerance` is the relative excess tolerated (0.2: up to 20% more events than
    stable is not harm); `margin` is the absolute excess in event rate beyond that
    which no-harm must rule out (0.01: one percentage point). No traffic on either
    arm gives e-values of 1 (no evidence) and "continue", unless an earlier look in
    the step already decided (the previous maxima). No events at all gives a harm
    e-value of 1, while enough clean requests can still prove no harm. Raises
    ValueError on impossible counts or settings.
    """
    _check_counts(canary_n, canary_events, stable_n, stable_events)
    _check_settings(alpha, tolerance, margin, previous_max_e, previous_max_e_no_harm)
    log_e = float(log_e_harm(canary_events, stable_events, canary_n, stable_n, tolerance))
    log_e_nh = float(
        log_e_no_harm(canary_events, canary_n, stable_events, stable_n, tolerance, margin)
    )
    e_value = _capped_exp(log_e)
    e_no_harm = _capped_exp(log_e_nh)
    max_e = max(previous_max_e, e_value)
    max_e_no_harm = max(previous_max_e_no_harm, e_no_harm)
    verdict: Verdict = "continue"
    if max_e >= 1.0 / alpha:
        verdict = "harm"  # safety first: harm wins even if no-harm crossed as well
    elif max_e_no_harm >= 1.0 / alpha:
        verdict = "no_harm"
    ci_low, ci_high = difference_cs(canary_events, canary_n, stable_events, stable_n, alpha)
    rate_c = canary_events / canary_n if canary_n else None
    rate_s = stable_events / stable_n if stable_n else None
    effect = rate_c - rate_s if rate_c is not None and rate_s is not None else None
    ratio = rate_c / rate_s if rate_c is not None and rate_s else None
    return SequentialResult(
        e_value=e_value,
        p_value=min(1.0, 1.0 / max_e),
        verdict=verdict,
        effect=effect,
        ci_low=ci_low,
        ci_high=ci_high,
        canary_n=canary_n,
        canary_events=canary_events,
        stable_n=stable_n,
        stable_events=stable_events,
        e_value_no_harm=e_no_harm,
        p_value_no_harm=min(1.0, 1.0 / max_e_no_harm),
        max_e_value=max_e,
        max_e_value_no_harm=max_e_no_harm,
        ratio=ratio,
        tolerance=tolerance,
        margin=margin,
    )


# --- the harm test (vectorised: the bench runs it over whole simulations) -----------


def log_e_harm(
    canary_events: ArrayLike,
    stable_events: ArrayLike,
    canary_n: ArrayLike,
    stable_n: ArrayLike,
    tolerance: float = 0.0,
    prior: tuple[float, float] = HARM_PRIOR,
) -> FloatArray:
    """log e-value against H0: p_c <= (1 + tolerance) p_s; elementwise over arrays.

    0 (e = 1, no evidence) where either arm has no requests or there are no events.
    """
    x, y, nc, ns = _floats(canary_events, stable_events, canary_n, stable_n)
    traffic = (nc > 0) & (ns > 0)
    share = np.where(traffic, nc / np.where(traffic, nc + ns, 1.0), 0.5)
    scaled = share * (1.0 + tolerance)
    theta0 = scaled / (scaled + 1.0 - share)
    ok = traffic & (x + y > 0) & (theta0 < 1.0)
    return np.asarray(np.where(ok, log_e_beyond(x, y, theta0, prior), 0.0), dtype=np.float64)


def log_e_exceeds(
    events: ArrayLike, n: ArrayLike, threshold: float, prior: tuple[float, float] | None = None
) -> FloatArray:
    """log e-value against H0: p <= threshold for one arm's event rate; elementwise.

    The one-sample form of the harm test, for absolute limits such as
    `max_error_rate` (events are errors) and `max_p99_ms` (events are requests slower
    than the limit, threshold 0.01): a Beta prior truncated to (threshold, 1), by
    default Beta(1, 1/threshold - 1), whose mean is the threshold, so its mass sits
    at the scale of the excesses worth catching. 0 (e = 1) without events.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"the threshold must be in (0, 1), got {threshold}")
    x, m = _floats(events, n)
    chosen = prior or (1.0, 1.0 / threshold - 1.0)
    value = log_e_beyond(x, m - x, np.full_like(x, threshold), chosen)
    return np.asarray(np.where(x > 0, value, 0.0), dtype=np.float64)


def log_e_beyond(
    successes: ArrayLike, failures: ArrayLike, theta0: ArrayLike, prior: tuple[float, float]
) -> FloatArray:
    """log of the Beta(a, b) mixture, truncated to (theta0, 1), of the binomial
    likelihood ratios L(theta) / L(theta0): the closed form in the module docstring.
    Each ratio with theta > theta0 is a supermartingale under every theta' <= theta0."""
    x, y, t0 = _floats(successes, failures, theta0)
    a, b = prior
    with np.errstate(divide="ignore"):
        # log Q underflows to -inf only where the posterior mass above theta0 is below
        # 1e-308: e = 0 there, which is the right answer to double precision.
        tail = np.log(betaincc(a + x, b + y, t0)) - np.log(betaincc(a, b, t0))
    value = betaln(a + x, b + y) - betaln(a, b) + tail - xlogy(x, t0) - xlog1py(y, -t0)
    return np.asarray(value, dtype=np.float64)


# --- the no-harm test and the effect's confidence sequence --------------------------


def log_mixture(
    events: ArrayLike, n: ArrayLike, p: ArrayLike, prior: tuple[float, float] = RATE_PRIOR
) -> FloatArray:
    """log M(p) of one arm: Beta-binomial mixture over the likelihood at p (convex in p)."""
    x, m, q = _floats(events, n, p)
    a, b = prior
    value = betaln(a + x, b + m - x) - betaln(a, b) - xlogy(x, q) - xlog1py(m - x, -q)
    return np.asarray(value, dtype=np.float64)


def _slope(events: FloatArray, n: FloatArray, p: FloatArray) -> FloatArray:
    """d/dp log M(p) = -x/p + (n - x)/(1 - p), increasing in p (log M is convex)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(events > 0, events / p, 0.0)
        right = np.where(n - events > 0, (n - events) / (1.0 - p), 0.0)
    return np.asarray(right - left, dtype=np.float64)


def line_infimum(
    canary_events: ArrayLike,
    canary_n: ArrayLike,
    stable_events: ArrayLike,
    stable_n: ArrayLike,
    slope: float,
    offset: ArrayLike,
) -> FloatArray:
    """min over p_s of log M_c(slope * p_s + offset) + log M_s(p_s), elementwise.

    p_s ranges over the values that keep both probabilities in [0, 1]. The sum is
    convex in p_s, so bisection on its derivative finds the minimum.
    """
    x, nc, y, ns, d = _floats(canary_events, canary_n, stable_events, stable_n, offset)
    x, nc, y, ns, d = np.broadcast_arrays(x, nc, y, ns, d)
    low = np.maximum(0.0, -d / slope)
    high = np.minimum(1.0, (1.0 - d) / slope)
    lo, hi = low.copy(), high.copy()
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        with np.errstate(invalid="ignore"):
            # inf - inf only on a degenerate bracket (one point), where any answer does
            grad = slope * _slope(x, nc, slope * mid + d) + _slope(y, ns, mid)
        up = grad > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    p_s = np.clip(0.5 * (lo + hi), low, high)
    p_c = np.clip(slope * p_s + d, 0.0, 1.0)
    # Where a count sits at an edge its log-likelihood is infinite; nudge the point in.
    p_s = np.clip(p_s, np.where(y > 0, _EDGE, 0.0), np.where(ns - y > 0, 1.0 - _EDGE, 1.0))
    p_c = np.clip(p_c, np.where(x > 0, _EDGE, 0.0), np.where(nc - x > 0, 1.0 - _EDGE, 1.0))
    return np.asarray(log_mixture(x, nc, p_c) + log_mixture(y, ns, p_s), dtype=np.float64)


def log_e_no_harm(
    canary_events: ArrayLike,
    canary_n: ArrayLike,
    stable_events: ArrayLike,
    stable_n: ArrayLike,
    tolerance: float = 0.0,
    margin: float = 0.01,
) -> FloatArray:
    """log e-value against H0': p_c >= (1 + tolerance) p_s + margin; elementwise."""
    x, nc, y, ns = _floats(canary_events, canary_n, stable_events, stable_n)
    slope = 1.0 + tolerance
    on_line = line_infimum(x, nc, y, ns, slope, margin)
    # If the estimate itself lies in H0', the infimum is the global minimum, at the MLE.
    rate_c = np.where(nc > 0, x / np.where(nc > 0, nc, 1.0), 0.0)
    rate_s = np.where(ns > 0, y / np.where(ns > 0, ns, 1.0), 0.0)
    inside = rate_c >= slope * rate_s + margin
    at_mle = log_mixture(x, nc, rate_c) + log_mixture(y, ns, rate_s)
    value = np.where(inside, np.minimum(at_mle, on_line), on_line)
    return np.asarray(np.where((nc > 0) & (ns > 0), value, 0.0), dtype=np.float64)


def difference_cs(
    canary_events: int, canary_n: int, stable_events: int, stable_n: int, alpha: float
) -> tuple[float, float]:
    """Confidence sequence for p_c - p_s at level 1 - alpha; (-1, 1) without data."""
    bound = math.log(1.0 / alpha)

    def excess(d: float) -> float:
        return _line_min(canary_events, canary_n, stable_events, stable_n, d) - bound

    rate_c = canary_events / canary_n if canary_n else 0.0
    rate_s = stable_events / stable_n if stable_n else 0.0
    centre = rate_c - rate_s  # excess(centre) <= -bound < 0: both mixtures <= 1 at the MLE
    low = -1.0 if excess(-1.0) < 0 else float(brentq(excess, -1.0, centre, xtol=1e-12))
    high = 1.0 if excess(1.0) < 0 else float(brentq(excess, centre, 1.0, xtol=1e-12))
    return low, high


def _line_min(x: int, nc: int, y: int, ns: int, d: float, slope: float = 1.0) -> float:
    """`line_infimum` for one point, in plain floats: the confidence sequence's root
    finding calls it about a hundred times per look, and the engine once per test."""
    low, high = max(0.0, -d / slope), min(1.0, (1.0 - d) / slope)
    lo, hi = low, high
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if slope * _score(x, nc, slope * mid + d) + _score(y, ns, mid) > 0:  # NaN: go up
            hi = mid
        else:
            lo = mid
    p_s = min(max(0.5 * (lo + hi), low), high)
    p_c = min(max(slope * p_s + d, 0.0), 1.0)
    p_s = min(max(p_s, _EDGE if y > 0 else 0.0), 1.0 - _EDGE if ns > y else 1.0)
    p_c = min(max(p_c, _EDGE if x > 0 else 0.0), 1.0 - _EDGE if nc > x else 1.0)
    return _log_mixture_at(x, nc, p_c) + _log_mixture_at(y, ns, p_s)


def no_harm_log_e(
    canary_events: int,
    canary_n: int,
    stable_events: int,
    stable_n: int,
    tolerance: float = 0.0,
    margin: float = 0.01,
) -> float:
    """`log_e_no_harm` for one look, in plain floats (the engine's per-look path)."""
    x, nc, y, ns = canary_events, canary_n, stable_events, stable_n
    if nc <= 0 or ns <= 0:
        return 0.0
    slope = 1.0 + tolerance
    on_line = _line_min(x, nc, y, ns, margin, slope)
    rate_c, rate_s = x / nc, y / ns
    if rate_c >= slope * rate_s + margin:  # the estimate itself lies in H0'
        return min(on_line, _log_mixture_at(x, nc, rate_c) + _log_mixture_at(y, ns, rate_s))
    return on_line


def _log_mixture_at(events: int, n: int, p: float) -> float:
    """`log_mixture` for one point, in plain floats."""
    a, b = RATE_PRIOR
    value = betaln(a + events, b + n - events) - betaln(a, b)
    if events:
        value -= events * math.log(p)
    if n - events:
        value -= (n - events) * math.log1p(-p)
    return float(value)


def _score(events: int, n: int, p: float) -> float:
    """d/dp log M(p) for one arm, with the limits at p = 0 and p = 1."""
    left = (events / p if p > 0 else math.inf) if events > 0 else 0.0
    right = ((n - events) / (1.0 - p) if p < 1 else math.inf) if n > events else 0.0
    return right - left


# --- helpers ------------------------------------------------------------------------


def _capped_exp(log_value: float) -> float:
    if math.isnan(log_value):  # pragma: no cover - the formulas above never give NaN
        raise ValueError("e-value is NaN")
    return math.exp(min(log_value, _LOG_CAP))


def _check_counts(canary_n: int, canary_events: int, stable_n: int, stable_events: int) -> None:
    for name, n, events in (
        ("canary", canary_n, canary_events),
        ("stable", stable_n, stable_events),
    ):
        if isinstance(n, bool) or isinstance(events, bool):
            raise ValueError(f"{name} counts must be integers")
        if n < 0 or events < 0:
            raise ValueError(f"{name} counts must be non-negative, got {events}/{n}")
        if events > n:
            raise ValueError(f"{name} events ({events}) exceed requests ({n})")


def _check_settings(
    alpha: float, tolerance: float, margin: float, max_e: float, max_e_no_harm: float
) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 <= tolerance < math.inf:
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    for name, value in (("previous_max_e", max_e), ("previous_max_e_no_harm", max_e_no_harm)):
        if not 0.0 <= value <= E_VALUE_CAP:
            raise ValueError(f"{name} must be in [0, {E_VALUE_CAP:g}], got {value}")
