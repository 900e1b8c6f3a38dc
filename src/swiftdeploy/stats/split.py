"""Does the canary get the share of requests its weight says? (pure: counts in)

A data plane that does not split as the route says (someone's edit the route check has
not seen yet, a Gateway that ignores weights, a stale config) makes every comparison
of the canary with the stable wrong: "10%" of the traffic is then 99% of it. Each look
asks whether the counted split could come from the weight by chance.

How the bar was picked:
- A two-sided exact binomial test at ALPHA = 1e-6 per look. A step of 30 minutes looked
  at every second is 1,800 looks; even as independent tests (they are not: the counts
  are cumulative, so the looks are strongly correlated) a healthy random split trips
  with probability under 1,800 x 1e-6 = 0.2% per step.
- At least MIN_REQUESTS counted: below that only an absurd split could pass the test
  anyway, and a hold on so little would only be noise.
- A track must get less than half, or more than twice, its weight's share (FACTOR):
  the counts of the two tracks are read at slightly different moments (scrapes), which
  on a busy service a binomial test alone would see as a disagreement. Halving or
  doubling is what a broken split does (case: 993 of 1,000 to a 10% canary), and what
  no scrape offset does once a hundred requests are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

ALPHA = 1e-6
MIN_REQUESTS = 100
FACTOR = 2.0


@dataclass(frozen=True)
class SplitCheck:
    canary: int
    total: int
    weight: int  # the canary's, in percent
    p_value: float

    @property
    def share(self) -> float:
        return self.canary / self.total if self.total else 0.0

    def words(self) -> str:
        return (
            f"the canary took {self.canary} of {self.total} requests "
            f"({100 * self.share:.1f}%) where its weight is {self.weight}% "
            f"(binomial test p={self.p_value:.1g} < {ALPHA:g})"
        )


def _off(share: float, expected: float) -> bool:
    return share < expected / FACTOR or share > expected * FACTOR


def split_disagrees(canary: int, stable: int, weight: int) -> SplitCheck | None:
    """The check when the counted split disagrees with `weight` beyond noise; None when
    it agrees or cannot tell (too few requests, or a weight of 0 or 100, where pinned
    requests alone may reach the other track)."""
    total = canary + stable
    if total < MIN_REQUESTS or not 0 < weight < 100 or canary < 0 or stable < 0:
        return None
    p = weight / 100
    share = canary / total
    if not (_off(share, p) or _off(1 - share, 1 - p)):
        return None
    p_value = float(binomtest(canary, total, p).pvalue)
    if p_value >= ALPHA:
        return None
    return SplitCheck(canary=canary, total=total, weight=weight, p_value=p_value)
