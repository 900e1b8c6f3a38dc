"""bench/judge.py's reference judges and Argo's loop behave as the benchmark says."""

from __future__ import annotations

import numpy as np
import pytest
from bench.judge import (
    Template,
    Window,
    argo_analysis,
    errors_high,
    kayenta_phase,
    latency_high,
    threshold_phase,
)
from bench.support.sim import TrackModel

SLICES = 6  # one interval of 10 s slices


def window(model: TrackModel, per_slice: int, errors: int, seed: int) -> Window:
    """An interval of a track: `per_slice` requests per slice, `errors` spread over it."""
    rng = np.random.default_rng(seed)
    requests = np.full(SLICES, per_slice)
    buckets = np.array(
        [rng.multinomial(per_slice, model.bucket_probabilities()) for _ in range(SLICES)]
    )
    spread = np.bincount(np.arange(errors) % SLICES, minlength=SLICES)
    return Window(requests, spread, buckets)


def test_the_threshold_template_passes_99_percent_and_fails_below_or_without_data() -> None:
    model = TrackModel()
    assert threshold_phase(window(model, 100, 6, seed=1)) == "Successful"  # 99.0%
    assert threshold_phase(window(model, 100, 7, seed=1)) == "Failed"  # 98.8%
    assert threshold_phase(window(model, 0, 0, seed=1)) == "Failed"  # NaN fails


def test_mann_whitney_flags_a_clearly_slower_canary_and_passes_a_like_one() -> None:
    stable = window(TrackModel(), 200, 1, seed=2)
    slower = window(TrackModel(extra_latency_s=0.3), 200, 1, seed=3)
    alike = window(TrackModel(), 200, 1, seed=4)
    assert latency_high(slower, stable) is True
    assert latency_high(alike, stable) is False
    assert latency_high(stable, slower) is False  # faster is not a regression
    assert latency_high(window(TrackModel(), 0, 0, seed=5), stable) is None
    # one metric of two failing scores 50: below the marginal 75, Failed
    assert kayenta_phase(slower, stable) == "Failed"
    assert kayenta_phase(alike, stable) == "Successful"


def test_the_two_proportion_test_flags_clearly_more_errors() -> None:
    stable = window(TrackModel(), 500, 15, seed=6)  # 0.5%
    assert errors_high(window(TrackModel(), 500, 90, seed=7), stable) is True  # 3%
    assert errors_high(window(TrackModel(), 500, 15, seed=8), stable) is False
    assert (
        errors_high(window(TrackModel(), 500, 0, seed=9), window(TrackModel(), 500, 0, seed=9))
        is False
    )


@pytest.mark.parametrize(
    ("phases", "template", "want", "taken"),
    [
        # the threshold template: the 4th failure fails it, at count 5 it succeeds
        ("FFFSF", Template(), "Failed", 5),
        ("FSFSF", Template(), "Successful", 5),
        # the judge's: one success ends it, inconclusives up to the limit, then the
        # count ends it Inconclusive (the Rollout pauses)
        ("IIS", Template(count=40, consecutive_success_limit=1), "Successful", 3),
        ("I" * 40, Template(count=40, consecutive_success_limit=1), "Inconclusive", 40),
        ("IFFFF", Template(count=40, consecutive_success_limit=1), "Failed", 5),
        ("IF", Template(count=40, failure_limit=0, consecutive_success_limit=1), "Failed", 2),
    ],
)
def test_argo_loop(phases: str, template: Template, want: str, taken: int) -> None:
    names = {"S": "Successful", "F": "Failed", "I": "Inconclusive"}
    result = argo_analysis(lambda k: names[phases[k]], template)  # type: ignore[return-value,arg-type]
    assert (result.phase, result.measurements) == (want, taken)
    assert result.first_failure == (phases.index("F") if "F" in phases[:taken] else None)
