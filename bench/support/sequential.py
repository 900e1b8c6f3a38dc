"""Reference forms of the sequential tests, for the tests and the benchmarks only: one
look's full result (`sequential_test`: both tests, the effect and its confidence
sequence), the no-harm test over arrays (whole simulations) and the effect's
confidence sequence. The engine uses `swiftdeploy.stats.sequential`; the design is in
docs/statistics.md.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict
from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

from swiftdeploy.stats.sequential import (
    BISECT_STEPS,
    E_VALUE_CAP,
    EDGE,
    RATE_PRIOR,
    FloatArray,
    as_floats,
    line_minimum,
    log_e_harm,
    log_e_no_harm,
)

Verdict = Literal["harm", "no_harm", "continue"]
_LOG_CAP = math.log(E_VALUE_CAP)


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
    log_e_nh = log_e_no_harm(canary_events, canary_n, stable_events, stable_n, tolerance, margin)
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


# --- the no-harm test over arrays and the effect's confidence sequence ------------


def log_mixture(
    events: ArrayLike, n: ArrayLike, p: ArrayLike, prior: tuple[float, float] = RATE_PRIOR
) -> FloatArray:
    """log M(p) of one arm: Beta-binomial mixture over the likelihood at p (convex in p)."""
    x, m, q = as_floats(events, n, p)
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
    x, nc, y, ns, d = as_floats(canary_events, canary_n, stable_events, stable_n, offset)
    x, nc, y, ns, d = np.broadcast_arrays(x, nc, y, ns, d)
    low = np.maximum(0.0, -d / slope)
    high = np.minimum(1.0, (1.0 - d) / slope)
    lo, hi = low.copy(), high.copy()
    for _ in range(BISECT_STEPS):
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
    p_s = np.clip(p_s, np.where(y > 0, EDGE, 0.0), np.where(ns - y > 0, 1.0 - EDGE, 1.0))
    p_c = np.clip(p_c, np.where(x > 0, EDGE, 0.0), np.where(nc - x > 0, 1.0 - EDGE, 1.0))
    return np.asarray(log_mixture(x, nc, p_c) + log_mixture(y, ns, p_s), dtype=np.float64)


def log_e_no_harm_arrays(
    canary_events: ArrayLike,
    canary_n: ArrayLike,
    stable_events: ArrayLike,
    stable_n: ArrayLike,
    tolerance: float = 0.0,
    margin: float = 0.01,
) -> FloatArray:
    """`stats.sequential.log_e_no_harm` elementwise over arrays (whole simulations)."""
    x, nc, y, ns = as_floats(canary_events, canary_n, stable_events, stable_n)
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
        return line_minimum(canary_events, canary_n, stable_events, stable_n, d) - bound

    rate_c = canary_events / canary_n if canary_n else 0.0
    rate_s = stable_events / stable_n if stable_n else 0.0
    centre = rate_c - rate_s  # excess(centre) <= -bound < 0: both mixtures <= 1 at the MLE
    low = -1.0 if excess(-1.0) < 0 else float(brentq(excess, -1.0, centre, xtol=1e-12))
    high = 1.0 if excess(1.0) < 0 else float(brentq(excess, centre, 1.0, xtol=1e-12))
    return low, high


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


# --- simulation: continuous looks ---------------------------------------------------


def simulate_counts(
    rng: np.random.Generator,
    runs: int,
    looks: int,
    canary_per_look: float,
    stable_per_look: float,
    p_canary: float,
    p_stable: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Cumulative (canary events, canary n, stable events, stable n) at every look.

    Poisson arrivals per arm: the realised share wanders around the configured one,
    which is the case the observed-share approximation has to survive.
    """
    dc = rng.poisson(canary_per_look, (runs, looks))
    ds = rng.poisson(stable_per_look, (runs, looks))
    xc = rng.binomial(dc, p_canary)
    xs = rng.binomial(ds, p_stable)
    return xc.cumsum(1), dc.cumsum(1), xs.cumsum(1), ds.cumsum(1)
