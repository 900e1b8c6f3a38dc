"""From an evidence ledger to the statistics the policy reads: pure, so each rule of
the decision semantics is tested directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.support.sim import BOUNDS

from swiftdeploy.durations import format_duration
from swiftdeploy.manifest import Detect, ErrorRegression, Policy, Thresholds
from swiftdeploy.metrics.base import summarize
from swiftdeploy.rollout.statistics import (
    LATENCY_SHARE,
    WEIGHTS,
    Settings,
    assess,
    latency_bound,
    passed_dimensions,
    progress,
    statistics_rows,
    step_progress,
)
from swiftdeploy.state.evidence import Counts, StepLedger
from tests.support.inputs import STARTED, counts, ledger

SETTINGS = Settings.of(Policy())


def test_weights_split_alpha_whole() -> None:
    assert math.isclose(sum(WEIGHTS.values()), 1.0)


def test_enough_clean_traffic_passes_both_dimensions() -> None:
    stats = assess(ledger(counts(3000, 15, 3), counts(12000, 60, 12)), SETTINGS)
    assert stats["harm"]["verdict"] == "none"
    assert stats["errors"]["verdict"] == stats["latency"]["verdict"] == "pass"
    assert passed_dimensions(stats) == {
        "errors": stats["errors"]["passed_by"],
        "latency": stats["latency"]["passed_by"],
    }


def test_little_traffic_says_how_much_more_and_how_long() -> None:
    stats = assess(ledger(counts(300, 1), counts(1200, 6), elapsed_s=60.0), SETTINGS)
    errors = stats["errors"]
    assert errors["verdict"] == "continue"
    assert errors["passed_by"] is None
    assert errors["remaining"] == errors["needed"] - 300 > 0
    assert errors["canary_rps"] == pytest.approx(5.0)
    assert errors["eta_s"] == pytest.approx(errors["remaining"] / 5.0)


def test_power_needs_fewer_requests_against_a_quieter_stable() -> None:
    noisy = assess(ledger(counts(100, 0), counts(20000, 200)), SETTINGS)["errors"]["needed"]
    quiet = assess(ledger(counts(100, 0), counts(20000, 2)), SETTINGS)["errors"]["needed"]
    assert quiet < noisy


def test_a_larger_regression_or_beta_needs_fewer_requests() -> None:
    base = assess(ledger(counts(100), counts(20000, 100)), SETTINGS)["errors"]["needed"]
    coarse = Settings.of(Policy(detect=Detect(errors=ErrorRegression(kind="points", value=0.05))))
    relaxed = Settings.of(Policy(beta=0.3))
    evidence = ledger(counts(100), counts(20000, 100))
    assert assess(evidence, coarse)["errors"]["needed"] < base
    assert assess(evidence, relaxed)["errors"]["needed"] < base


def test_a_ratio_regression_of_a_stable_without_errors_cannot_be_planned() -> None:
    ratio = Settings.of(Policy(detect=Detect(errors=ErrorRegression(kind="ratio", value=2.0))))
    stats = assess(ledger(counts(500), counts(5000)), ratio)
    assert stats["errors"]["needed"] is None
    assert stats["errors"]["verdict"] == "continue"


def test_clear_harm_is_carried_by_the_errors_test() -> None:
    stats = assess(ledger(counts(412, 21), counts(1650, 5)), SETTINGS)
    assert stats["harm"]["verdict"] == "harm"
    assert stats["harm"]["e_value"] >= 100
    assert stats["errors"]["verdict"] == "harm"
    assert stats["latency"]["verdict"] != "harm"


def test_the_error_limit_catches_what_the_comparison_cannot() -> None:
    # both tracks at 3%, the limit 1%: no difference to see, but the canary is over
    stats = assess(ledger(counts(2000, 60), counts(8000, 240)), SETTINGS)
    assert stats["errors"]["e_value"] < 1
    assert stats["error_rate"]["verdict"] == "harm"
    assert stats["harm"]["verdict"] == "harm"


def test_the_p99_limit_counts_requests_above_it() -> None:
    slow = Counts(requests=1000, errors=0, buckets={"0.5": 900, "1": 1000, "+Inf": 1000})
    settings = Settings.of(Policy(thresholds=Thresholds(max_p99_ms=500)))
    stats = assess(ledger(slow, slow), settings)
    assert (stats["p99"]["canary_n"], stats["p99"]["canary_events"]) == (1000, 100)
    assert stats["p99"]["slow_above_ms"] == 500
    assert stats["p99"]["verdict"] == "harm"


def test_evidence_multiplies_from_step_to_step() -> None:
    done = StepLedger(
        index=0, weight=10, started_at=0, canary=counts(400, 6), stable=counts(3600, 18)
    )
    first = assess(ledger(counts(400, 6), counts(3600, 18), weight=10), SETTINGS)["errors"]
    second = assess(ledger(counts(300, 4), counts(900, 4), weight=25, earlier=(done,)), SETTINGS)[
        "errors"
    ]
    assert second["carried"] == pytest.approx(first["e_value"])
    assert second["e_value"] == pytest.approx(second["carried"] * second["e_value_step"])


def test_a_dimension_passed_in_an_earlier_step_passes_later_ones() -> None:
    done = StepLedger(
        index=0, weight=10, started_at=0, canary=counts(3000), stable=counts(27000),
        passed={"errors": "power", "latency": "no_harm"},
    )  # fmt: skip
    stats = assess(ledger(counts(5), counts(15), weight=25, earlier=(done,)), SETTINGS)
    assert stats["errors"]["passed_by"] == stats["latency"]["passed_by"] == "earlier_step"


def test_a_pass_within_a_step_is_kept() -> None:
    kept = ledger(counts(10), counts(40), passed={"errors": "no_harm"})
    assert assess(kept, SETTINGS)["errors"]["passed_by"] == "no_harm"


def test_latency_bound_is_the_largest_bucket_bound_below_the_p99_bucket_start_plus_detect() -> None:
    reference = summarize(
        track="stable", provider="nginx", window_start=0, window_end=30, requests=1000,
        errors=0, buckets={"0.05": 980, "0.075": 995, "0.1": 1000, "0.15": 1000, "0.2": 1000,
                           "+Inf": 1000},
    )  # fmt: skip
    bound, how = latency_bound(reference, 100)
    # the p99 is in (50, 75] ms: 50 + 100 = 150 ms is a bucket bound, so no rounding
    assert bound == pytest.approx(0.15)
    assert how.startswith("stable p99 in (50, 75] ms (1000 requests in its last 30 s)")
    # between bounds it rounds down: 50 + 80 ms is 130 ms, counted above 100 ms
    assert latency_bound(reference, 80)[0] == pytest.approx(0.1)


def test_a_canary_slower_by_the_regression_has_at_least_one_percent_above_the_bound() -> None:
    # The promise behind the power planning (LATENCY_SHARE): a canary whose every request
    # is `detect.latency` slower has >= 1% of its requests above the bound, whatever the
    # stable's latency; the stable itself has fewer than 1% there.
    rng = np.random.default_rng(7)
    labels = [*(f"{b:g}" for b in BOUNDS), "+Inf"]
    for median in (0.003, 0.02, 0.06):  # where the buckets are finer than the regression
        stable = rng.lognormal(np.log(median), 0.5, 200_000)
        cumulative = {le: int(np.sum(stable <= float(le))) for le in labels}
        reference = summarize(
            track="stable", provider="nginx", window_start=0, window_end=30,
            requests=len(stable), errors=0, buckets=cumulative,
        )  # fmt: skip
        bound, _ = latency_bound(reference, 100)
        assert np.mean(stable + 0.1 > bound) >= LATENCY_SHARE
        assert np.mean(stable > bound) < LATENCY_SHARE


def test_latency_bound_without_enough_stable_traffic_is_the_regression_alone() -> None:
    reference = summarize(
        track="stable", provider="nginx", window_start=0, window_end=30, requests=20,
        errors=0, buckets={"0.05": 20, "0.1": 20, "0.15": 20, "+Inf": 20},
    )  # fmt: skip
    bound, how = latency_bound(reference, 100)
    assert bound == pytest.approx(0.1)
    assert latency_bound(reference, 120)[0] == pytest.approx(0.1)  # a bucket bound below
    assert "was not known (20 requests" in how


def test_progress_says_in_plain_words_what_the_step_needs() -> None:
    # Given 300 canary requests in the step's 60 s (5 req/s), both tests undecided
    evidence = ledger(counts(300, 1), counts(1200, 6), elapsed_s=60.0)
    statistics = assess(evidence, SETTINGS)
    standing = step_progress(statistics, evidence)
    assert standing is not None
    # Then the step needs what its slowest test still needs, at the step's canary rate
    remaining = [statistics[name]["remaining"] for name in ("errors", "latency")]
    assert standing.waiting == ("errors", "latency")
    assert standing.canary_rps == pytest.approx(5.0)
    assert standing.needed_requests == max(remaining)
    assert standing.eta_s == pytest.approx(max(remaining) / 5.0)
    # and says so without the statistics: rounded up, with the time it takes
    words = dict(progress(statistics, evidence))
    assert list(words) == ["progress", "errors", "latency", "harm"]
    scale = 10 ** (len(str(max(remaining))) - 2)
    about = -(-max(remaining) // scale) * scale  # rounded up to two digits
    eta = format_duration(max(remaining) / 5.0)
    assert words["progress"] == f"needs about {about:,} more canary requests, about {eta}"
    assert words["harm"] == "no evidence of harm"
    assert not any("e-value" in text or "no harm" in text for text in words.values())
    # the statistics behind them are there for --verbose
    behind = dict(statistics_rows(statistics))
    assert behind["evidence of harm"].endswith("(rolls back at 100)")
    assert f"{remaining[0]} more canary requests for the power; no harm" in behind["errors"]
    passed = dict(progress(assess(ledger(counts(3000, 15, 3), counts(12000, 60, 12)), SETTINGS)))
    assert passed["progress"] == "enough evidence to pass"
    assert passed["errors"].startswith("passed: ")


def test_progress_counts_the_warm_up_and_says_when_there_is_no_canary_traffic() -> None:
    # Given a canary 20 s into a warm-up of 60 s and 300 requests, with 100 served
    evidence = ledger(counts(100), counts(900), elapsed_s=20.0).warm_up(STARTED, 60.0, 300)
    evidence = evidence.marked("canary", STARTED + 20.0)
    assert evidence.warmup is not None
    evidence = evidence.model_copy(
        update={"warmup": evidence.warmup.model_copy(update={"requests": 100})}
    )
    statistics = assess(evidence, SETTINGS)
    standing = step_progress(statistics, evidence)
    assert standing is not None
    # Then latency needs the warm-up's 40 s (200 requests at 5 req/s) before its own
    assert standing.warmup_left == (40.0, 200)
    assert standing.needed_requests is not None
    assert standing.needed_requests >= 200 + statistics["latency"]["remaining"]
    words = dict(progress(statistics, evidence))
    assert words["progress"].startswith("warming up: 40 s and 200 canary requests left; needs")
    assert words["latency"] == "warming up: 40 s and 200 canary requests left; tested after"
    # and a step without canary requests says just that
    idle = ledger(counts(0), counts(900), elapsed_s=20.0)
    assert dict(progress(assess(idle, SETTINGS), idle))["progress"] == "no canary traffic yet"
