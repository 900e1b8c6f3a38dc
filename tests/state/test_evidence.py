"""The evidence ledger counts what each look measured, per step, and notes the gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swiftdeploy.analysis.bursts import burst_cap
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.state import FileStateStore, State
from swiftdeploy.state.evidence import Evidence


@dataclass(frozen=True)
class Look:
    """An increment from no metrics provider at all: the state needs only its counts."""

    requests: int
    errors: int
    window_start: float | None
    window_end: float | None
    buckets: dict[str, int] = field(default_factory=dict)


def test_a_step_adds_up_its_looks_and_notes_unmeasured_time() -> None:
    evidence = Evidence().open_step(0, 10, at=100.0).marked("canary", 100.0)
    evidence = evidence.counted("canary", Look(40, 1, 100.0, 105.0, {"0.1": 30, "+Inf": 40}))
    # the CLI was away from 105 to 108: that time is skipped, not guessed
    evidence = evidence.counted("canary", Look(20, 2, 108.0, 110.0, {"0.1": 10, "+Inf": 20}))
    step = evidence.current
    assert step is not None
    assert (step.canary.requests, step.canary.errors) == (60, 3)
    assert step.canary.buckets == {"0.1": 40, "+Inf": 60}
    assert step.observed_s == 7.0
    assert evidence.unobserved_s == 3.0
    assert evidence.marks == {"canary": 110.0}


def test_a_new_step_starts_from_zero_and_the_rollout_keeps_every_step() -> None:
    evidence = Evidence().open_step(0, 10, at=0.0).counted("stable", Look(90, 0, 0.0, 5.0))
    evidence = evidence.open_step(1, 50, at=5.0).counted("stable", Look(50, 1, 5.0, 6.0))
    assert evidence.current is not None
    assert evidence.current.stable.requests == 50
    assert evidence.rollout_counts("stable").requests == 140


def test_a_look_that_read_nothing_counts_nothing() -> None:
    evidence = Evidence().open_step(0, 10, at=0.0)
    unread = Measurement(track="canary", provider="nginx", status="no_data")
    assert evidence.counted("canary", unread) == evidence


def test_the_state_round_trips_through_its_store(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path)
    evidence = Evidence().open_step(0, 10, at=0.0).counted("canary", Look(5, 1, 0.0, 1.0))
    saved = store.save(State(canary_weight=10, evidence=evidence))
    assert store.load() == saved


def _look_both(evidence: Evidence, start: float, end: float, canary: int) -> Evidence:
    """One look: the canary and the stable (nine times the canary) counted, then looked."""
    slow = {"0.1": 0, "+Inf": canary}
    evidence = evidence.counted("canary", Look(canary, 0, start, end, slow))
    stable = {"0.1": 9 * canary, "+Inf": 9 * canary}
    evidence = evidence.counted("stable", Look(9 * canary, 0, start, end, stable))
    return evidence.looked({})


def test_the_warmup_keeps_whole_looks_of_both_tracks_out_of_the_latency_counts() -> None:
    evidence = Evidence().warm_up(since=0.0, time_s=10.0, requests=30)
    evidence = evidence.open_step(0, 10, at=0.0)
    for start in range(0, 12, 4):  # looks ending at 4, 8 and 12 s, 10 canary requests each
        evidence = _look_both(evidence, float(start), start + 4.0, 10)
    # 12 s and 30 canary requests had passed at the third look: the warm-up ended there,
    # and that look is still wholly in it (decided after it counted both tracks)
    assert evidence.warmup is not None
    assert evidence.warmup.done_at == 12.0
    evidence = _look_both(evidence, 12.0, 16.0, 10)
    step = evidence.current
    assert step is not None
    assert (step.canary.requests, step.stable.requests) == (40, 360)
    assert step.latency_counts("canary").requests == 10
    assert step.latency_counts("stable").requests == 90
    assert step.latency_counts("canary").buckets == {"0.1": 0, "+Inf": 10}


def test_the_warmup_needs_both_its_time_and_its_requests() -> None:
    evidence = Evidence().warm_up(since=0.0, time_s=5.0, requests=100).open_step(0, 10, at=0)
    evidence = _look_both(evidence, 0.0, 60.0, 50)  # a minute, but only 50 requests
    assert evidence.warming
    assert evidence.warmup is not None
    assert evidence.warmup.describe_left(60.0) == "50 canary requests"
    evidence = _look_both(evidence, 60.0, 61.0, 50)
    assert not evidence.warming


def test_no_warmup_counts_every_look_for_latency() -> None:
    evidence = Evidence().warm_up(since=0.0, time_s=0, requests=0).open_step(0, 10, at=0)
    assert evidence.warmup is None
    evidence = _look_both(evidence, 0.0, 1.0, 10)
    step = evidence.current
    assert step is not None
    assert step.latency_counts("canary") == step.canary


def test_harm_counts_at_most_a_bursts_cap_of_canary_events_per_look() -> None:
    rates = {"errors": 0.015, "error_rate": 0.01, "latency": 0.01, "p99": 0.01}
    evidence = Evidence(latency_bound_s=0.1, p99_limit_s=0.5, burst_rates=rates)
    evidence = evidence.open_step(0, 10, at=0.0)
    # a quiet look: 2 errors and 1 slow request of 500, all counted
    quiet = {"0.1": 499, "0.5": 500, "+Inf": 500}
    evidence = evidence.counted("canary", Look(500, 2, 0.0, 0.25, quiet))
    # a replica's bad quarter second: every request failed and slow (over 0.5 s too)
    burst = {"0.1": 0, "0.5": 0, "+Inf": 500}
    evidence = evidence.counted("canary", Look(500, 500, 0.25, 0.5, burst))
    step = evidence.current
    assert step is not None
    assert (step.canary.errors, step.canary.requests) == (502, 1000)  # the ledger keeps all
    errors_cap, limit_cap = burst_cap(500, 0.015), burst_cap(500, 0.01)
    assert step.harm_events == {
        "errors": 2 + errors_cap,
        "error_rate": 2 + limit_cap,
        "latency": 1 + limit_cap,
        "p99": 0 + limit_cap,
    }


def test_harm_counts_no_latency_events_while_warming_up() -> None:
    rates = {"errors": 0.015, "error_rate": 0.01, "latency": 0.01, "p99": 0.01}
    evidence = Evidence(latency_bound_s=0.1, p99_limit_s=0.5, burst_rates=rates)
    evidence = evidence.warm_up(since=0.0, time_s=10, requests=0).open_step(0, 10, at=0.0)
    evidence = evidence.counted("canary", Look(10, 1, 0.0, 1.0, {"0.1": 5, "0.5": 9, "+Inf": 10}))
    step = evidence.current
    assert step is not None
    assert step.harm_events == {"errors": 1, "error_rate": 1}
