"""The split check: a broken split is caught, a healthy random one never trips it."""

from __future__ import annotations

import numpy as np
import pytest

from swiftdeploy.stats.split import ALPHA, MIN_REQUESTS, split_disagrees


def test_the_issue_case_is_caught() -> None:
    # an admin set the route to 0/100 mid-step: 993 of 1,000 to a 10% canary
    check = split_disagrees(993, 7, 10)
    assert check is not None
    assert check.p_value < ALPHA
    assert "993 of 1000 requests (99.3%) where its weight is 10%" in check.words()


@pytest.mark.parametrize(
    ("canary", "stable", "weight"),
    [
        (0, 1000, 50),  # the canary gets nothing at 50%
        (500, 500, 10),  # an even split at 10%
        (0, 5000, 5),  # a Gateway ignoring weights
    ],
)
def test_broken_splits_are_caught(canary: int, stable: int, weight: int) -> None:
    assert split_disagrees(canary, stable, weight) is not None


@pytest.mark.parametrize(
    ("canary", "stable", "weight"),
    [
        (MIN_REQUESTS - 1, 0, 10),  # too few to tell
        (10, 990, 0),  # weight 0: pinned requests reach the canary
        (990, 10, 100),
        (15, 85, 10),  # close enough
        (1600, 8400, 10),  # a scrape's skew on a busy service: 16% is not double 10%
    ],
)
def test_what_is_not_a_disagreement(canary: int, stable: int, weight: int) -> None:
    assert split_disagrees(canary, stable, weight) is None


def test_a_healthy_random_split_never_trips() -> None:
    # Every look of many steps at every weight a manifest may use, the counts growing
    # as a step's do: 200,000 looks of a true binomial split, none trips.
    rng = np.random.default_rng(21)
    trips = 0
    for weight in (1, 2, 5, 10, 20, 25, 50, 75, 90, 99):
        for _ in range(200):
            arrivals = rng.poisson(40, size=100).cumsum()  # 100 looks of ~40 requests
            canary = rng.binomial(np.diff(arrivals, prepend=0), weight / 100).cumsum()
            for total, to_canary in zip(arrivals, canary, strict=True):
                trips += split_disagrees(int(to_canary), int(total - to_canary), weight) is not None
    assert trips == 0
