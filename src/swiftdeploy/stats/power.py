"""Power of the harm test: how many canary requests a step needs before a regression
of the smallest size worth catching would have been caught with probability 1 - beta.

The harm test (`sequential.log_e_harm`) conditions on the total number of events E.
Given E, the canary's count X is Binomial(E, theta) with
    theta = w p_c / (w p_c + (1 - w) p_s),
w the canary's share of requests. The e-value at (X, E) grows with X, so for every E
there is a smallest X that reaches the threshold: the boundary b(E). After n canary
requests (and n (1 - w) / w stable ones), E is close to Poisson with mean
    lambda(n) = n p_c + n (1 - w) / w p_s
(the sum of two binomials of rare events), and
    power(n) = sum over E of Poisson(E; lambda(n)) * P(Binomial(E, theta_1) >= b(E))
is the chance that the test stands past its threshold at n under the alternative
p_c = p_1. The engine looks at every interval and keeps the first crossing, so the
chance of having crossed *by* n is at least power(n): `needed_requests` errs on the
side of more data, never less.

The stable rate is not known. Planning uses a pessimistic value, the upper end of a
Jeffreys interval for the stable's rate (`pessimistic_rate`): a stable that has
shown few events could still have more, and more background events make an
additive regression harder to see. Pure functions; the boundary of each
(share, threshold) pair is cached, since a rollout asks about the same few.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaincinv
from scipy.stats import binom, poisson

from swiftdeploy.stats.sequential import HARM_PRIOR, log_e_beyond

# Past this many canary requests, or events in all, a step is "not within reach"
# rather than a number (and the boundary table stays small).
MAX_REQUESTS = 10_000_000
MAX_EVENTS = 50_000
# Poisson mass kept around lambda when summing over E (8 sd: the tails are < 1e-15).
_SPREAD_SD = 8.0
# Jeffreys upper bound used as the pessimistic stable rate.
PESSIMISTIC_LEVEL = 0.95


def pessimistic_rate(events: int, n: int, level: float = PESSIMISTIC_LEVEL) -> float | None:
    """The upper end of a one-sided Jeffreys interval for a rate; None without data."""
    if n <= 0:
        return None
    return float(betaincinv(events + 0.5, n - events + 0.5, level))


def round_up(value: float, digits: int = 2) -> float:
    """`value` rounded up to `digits` significant digits (planning keys stay few and
    never optimistic)."""
    if value <= 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(value)) - digits + 1)
    return math.ceil(value / scale - 1e-9) * scale


class _Boundary:
    """b(E) for E = 0, 1, ...: the smallest canary event count whose harm e-value
    reaches the threshold given E events in all, computed in blocks as needed."""

    def __init__(self, theta0: float, log_threshold: float) -> None:
        self.theta0 = theta0
        self.log_threshold = log_threshold
        self._values: NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    def upto(self, top: int) -> NDArray[np.int64]:
        if top >= len(self._values):
            start = len(self._values)
            stop = max(top + 1, 2 * start, 256)
            self._values = np.concatenate([self._values, self._compute(start, stop)])
        return self._values[: top + 1]

    def _compute(self, start: int, stop: int) -> NDArray[np.int64]:
        """Bisection on X for every E in [start, stop) at once: log e grows with X."""
        totals = np.arange(start, stop, dtype=np.float64)
        low = np.zeros_like(totals)  # e(low) is below the threshold (X = 0 gives e <= 1)
        high = totals + 1.0  # "unreachable": X cannot exceed E
        theta0 = np.full_like(totals, self.theta0)
        while np.any(high - low > 1):
            mid = np.floor((low + high) / 2)
            reached = log_e_beyond(mid, totals - mid, theta0, HARM_PRIOR) >= self.log_threshold
            high = np.where(reached, mid, high)
            low = np.where(reached, low, mid)
        return high.astype(np.int64)


@lru_cache(maxsize=64)
def _boundary(theta0: float, log_threshold: float) -> _Boundary:
    return _Boundary(theta0, log_threshold)


def power(n: int, share: float, p_stable: float, p_canary: float, log_threshold: float) -> float:
    """The chance that the harm test stands at or past `log_threshold` after n canary
    requests at this share, when the rates are p_stable and p_canary."""
    if n <= 0 or p_canary <= p_stable:
        return 0.0
    theta0 = share
    theta1 = share * p_canary / (share * p_canary + (1.0 - share) * p_stable)
    lam = n * p_canary + n * (1.0 - share) / share * p_stable
    spread = _SPREAD_SD * math.sqrt(lam) + 2
    low, high = max(0, math.floor(lam - spread)), math.ceil(lam + spread)
    totals = np.arange(low, high + 1)
    bound = _boundary(theta0, log_threshold).upto(high)[low:]
    crossed = binom.sf(bound - 1, totals, theta1)
    return float(np.sum(poisson.pmf(totals, lam) * crossed))


@lru_cache(maxsize=4096)
def needed_requests(
    share: float, p_stable: float, p_canary: float, log_threshold: float, beta: float
) -> int | None:
    """The fewest canary requests at which `power` reaches 1 - beta; None when the
    alternative is no worse than the stable, or it takes more than MAX_REQUESTS."""
    if not 0.0 < share < 1.0 or p_canary <= p_stable or p_canary > 1.0:
        return None
    target = 1.0 - beta
    events_per_request = p_canary + (1.0 - share) / share * p_stable
    low, high = 0, 1
    while power(high, share, p_stable, p_canary, log_threshold) < target:
        low, high = high, high * 2
        if high > MAX_REQUESTS or high * events_per_request > MAX_EVENTS:
            return None
    while high - low > max(1, low // 200):  # 0.5% resolution is plenty for a plan
        mid = (low + high) // 2
        if power(mid, share, p_stable, p_canary, log_threshold) >= target:
            high = mid
        else:
            low = mid
    return high
