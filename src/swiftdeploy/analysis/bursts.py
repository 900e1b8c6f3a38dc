"""How many of the canary's events one look may count toward harm.

The harm tests (`sequential.log_e_harm`, `log_e_exceeds`) treat each failed or slow
request as its own draw. Real replicas fail and stall in bursts: a garbage-collection
pause or a bad half second makes many slow or failed requests at once, on one replica,
so the events come in clumps and the e-processes, which assume independent draws, rise
far faster than their guarantee allows (8% false rollbacks for stalls 2% of the time,
where alpha is 1%). So each look counts at most `burst_cap` of the canary's events
toward harm: the 1 - 1e-4 quantile of the count that the regression worth catching
(twice its rate, for headroom) would produce in that look's canary requests.

Why this keeps the guarantees that hold and restores the ones bursts broke:
- with independent events, the capped count is never above the real one, and each
  e-value only grows with the canary's count, so the capped e-process is dominated by
  an e-process: Ville's inequality still bounds its false rollbacks by alpha;
- a regression of the size planned for rarely reaches the cap (1 look in 10,000), so the
  power the step plans with is kept (a worse one hits the cap and is still caught within
  a look or two, since every look then adds the cap's worth of evidence);
- a burst on the canary adds at most one cap's worth per look, while the stable's
  bursts (never capped) weigh against harm in full: a canary with fewer replicas than
  the stable has the larger bursts for its traffic, and those are what is cut.
The stable is never capped and the no-harm test (a pass) counts every event, so
neither a pass nor the stable's evidence is made easier. What remains assumed: a burst
spans a few looks at most, and the canary's bursts are no more frequent, per request,
than the stable's (that would be a regression).
"""

from __future__ import annotations

from functools import lru_cache

from scipy.stats import poisson

# The chance that one look of the regression worth catching reaches the cap.
BURST_TAIL = 1e-4
# The cap is planned at this multiple of that regression's event rate.
BURST_HEADROOM = 2.0


def burst_cap(requests: int, rate: float) -> int:
    """The most canary events one look of `requests` counts toward harm, when the
    regression worth catching makes events at `rate` per request (at least 1)."""
    if requests <= 0:
        return 0
    expected = requests * min(max(rate, 0.0) * BURST_HEADROOM, 1.0)
    return max(_quantile(round(expected, 6)), 1)


@lru_cache(maxsize=4096)
def _quantile(expected: float) -> int:
    return int(poisson.ppf(1.0 - BURST_TAIL, expected)) if expected > 0 else 0


def capped(events: int, requests: int, rate: float | None) -> int:
    """`events` of one look, at most the look's cap (all of them without a rate)."""
    if rate is None:
        return events
    return min(events, burst_cap(requests, rate))
