"""Anytime-valid sequential tests: does the canary take more than its share of events?

The engine's forms, on counts cumulated since the step began (never a sliding window):
the harm test (`log_e_harm`, conditional on the events, against stable), its one-arm
form against an absolute limit (`log_e_exceeds`) and the no-harm test (`log_e_no_harm`).
Each is an e-process, valid at every look. The design, the priors and the references
are in docs/statistics.md; the reference forms only the tests and the benchmarks use
(one look's full result, the vectorised no-harm test, the effect's confidence
sequence) are in bench/support/sequential.py.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaincc, betaln, xlog1py, xlogy

FloatArray = NDArray[np.float64]

# Beta(a, b) prior on theta, truncated to (theta0, 1), for the harm test.
HARM_PRIOR: tuple[float, float] = (1.0, 1.0)
# Beta(a, b) prior on each arm's event probability, for no-harm (and the effect's CS).
RATE_PRIOR: tuple[float, float] = (0.5, 20.0)
# The policy input is JSON (no infinity) and caps magnitudes at 1e300.
E_VALUE_CAP = 1e300
# Bisection steps for the no-harm infimum: the bracket is at most [0, 1], so 64 halvings
# reach the resolution of a double.
BISECT_STEPS = 64
# Keep probabilities off 0 and 1 where a count makes the log-likelihood infinite.
EDGE = 1e-15


def as_floats(*values: ArrayLike) -> tuple[FloatArray, ...]:
    """Each value as an array of doubles (the vectorised functions take scalars too)."""
    return tuple(np.asarray(value, dtype=np.float64) for value in values)


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
    x, y, nc, ns = as_floats(canary_events, stable_events, canary_n, stable_n)
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
    x, m = as_floats(events, n)
    chosen = prior or (1.0, 1.0 / threshold - 1.0)
    value = log_e_beyond(x, m - x, np.full_like(x, threshold), chosen)
    return np.asarray(np.where(x > 0, value, 0.0), dtype=np.float64)


def log_e_beyond(
    successes: ArrayLike, failures: ArrayLike, theta0: ArrayLike, prior: tuple[float, float]
) -> FloatArray:
    """log of the Beta(a, b) mixture, truncated to (theta0, 1), of the binomial
    likelihood ratios L(theta) / L(theta0), in closed form (docs/statistics.md).
    Each ratio with theta > theta0 is a supermartingale under every theta' <= theta0."""
    x, y, t0 = as_floats(successes, failures, theta0)
    a, b = prior
    with np.errstate(divide="ignore"):
        # log Q underflows to -inf only where the posterior mass above theta0 is below
        # 1e-308: e = 0 there, which is the right answer to double precision.
        tail = np.log(betaincc(a + x, b + y, t0)) - np.log(betaincc(a, b, t0))
    value = betaln(a + x, b + y) - betaln(a, b) + tail - xlogy(x, t0) - xlog1py(y, -t0)
    return np.asarray(value, dtype=np.float64)


# --- the no-harm test (one look, in plain floats) ---------------------------------


def line_minimum(x: int, nc: int, y: int, ns: int, d: float, slope: float = 1.0) -> float:
    """min over p_s of log M_c(slope * p_s + d) + log M_s(p_s), M an arm's Beta-binomial
    mixture (RATE_PRIOR): convex in p_s, so bisection on its derivative finds it."""
    low, high = max(0.0, -d / slope), min(1.0, (1.0 - d) / slope)
    lo, hi = low, high
    for _ in range(BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if slope * _score(x, nc, slope * mid + d) + _score(y, ns, mid) > 0:  # NaN: go up
            hi = mid
        else:
            lo = mid
    p_s = min(max(0.5 * (lo + hi), low), high)
    p_c = min(max(slope * p_s + d, 0.0), 1.0)
    p_s = min(max(p_s, EDGE if y > 0 else 0.0), 1.0 - EDGE if ns > y else 1.0)
    p_c = min(max(p_c, EDGE if x > 0 else 0.0), 1.0 - EDGE if nc > x else 1.0)
    return _log_mixture_at(x, nc, p_c) + _log_mixture_at(y, ns, p_s)


def log_e_no_harm(
    canary_events: int,
    canary_n: int,
    stable_events: int,
    stable_n: int,
    tolerance: float = 0.0,
    margin: float = 0.01,
) -> float:
    """log e-value against H0': p_c >= (1 + tolerance) p_s + margin, for one look (0
    without traffic on either arm); bench/support/sequential.py has it over arrays."""
    x, nc, y, ns = canary_events, canary_n, stable_events, stable_n
    if nc <= 0 or ns <= 0:
        return 0.0
    slope = 1.0 + tolerance
    on_line = line_minimum(x, nc, y, ns, margin, slope)
    rate_c, rate_s = x / nc, y / ns
    if rate_c >= slope * rate_s + margin:  # the estimate itself lies in H0'
        return min(on_line, _log_mixture_at(x, nc, rate_c) + _log_mixture_at(y, ns, rate_s))
    return on_line


def _log_mixture_at(events: int, n: int, p: float) -> float:
    """log M(p) of one arm: the Beta-binomial mixture over the likelihood at p."""
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
