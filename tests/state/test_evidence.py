"""The evidence ledger counts what each look measured, per step, and notes the gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swiftdeploy.metrics.base import Measurement
from swiftdeploy.state import FileStateStore, State
from swiftdeploy.state.evidence import Evidence
from swiftdeploy.stats.dispersion import BLOCK_S, HISTORY_BLOCKS, KNOWN_BLOCKS


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


def test_each_track_keeps_its_events_in_blocks_for_their_dispersion() -> None:
    evidence = Evidence(latency_bound_s=0.1, p99_limit_s=0.5)
    evidence = evidence.open_step(0, 10, at=0.0)
    # a quiet look: 2 errors and 1 slow request of 500
    quiet = {"0.1": 499, "0.5": 500, "+Inf": 500}
    evidence = evidence.counted("canary", Look(500, 2, 0.0, 5.0, quiet))
    # a replica's bad second: every request failed and slow (over 0.5 s too)
    burst = {"0.1": 0, "0.5": 0, "+Inf": 500}
    evidence = evidence.counted("canary", Look(500, 500, 5.0, 6.0, burst))
    evidence = evidence.counted("stable", Look(4500, 9, 0.0, 6.0, {"0.1": 4490, "+Inf": 4500}))
    step = evidence.current
    assert step is not None
    assert (step.canary.errors, step.canary.requests) == (502, 1000)  # the ledger keeps all
    errors = evidence.canary_spread["errors"]
    assert (errors.blocks, errors.events, errors.open_events, errors.open_requests) == (
        1,
        2,
        500,
        500,
    )
    assert evidence.canary_spread["latency"].open_events == 500
    assert evidence.canary_spread["p99"].events == 0
    assert evidence.stable_spread["errors"].events == 9
    # the burst makes the canary's events far more spread than independent draws
    assert evidence.dispersion("errors") > 100
    assert evidence.dispersion("errors", ("stable",)) == 1.0  # one block tells nothing yet


def test_while_the_canary_warms_up_its_spread_counts_errors_not_slow_requests() -> None:
    evidence = Evidence(latency_bound_s=0.1, p99_limit_s=0.5)
    evidence = evidence.warm_up(since=0.0, time_s=10, requests=0).open_step(0, 10, at=0.0)
    histogram = {"0.1": 5, "0.5": 9, "+Inf": 10}
    evidence = evidence.counted("canary", Look(10, 1, 0.0, 1.0, histogram))
    evidence = evidence.counted("stable", Look(10, 1, 0.0, 1.0, histogram))
    # a cold start changes the canary's rate; it is not a burst
    assert {name: spread.open_events for name, spread in evidence.canary_spread.items()} == {
        "errors": 1
    }
    assert {name: spread.open_events for name, spread in evidence.stable_spread.items()} == {
        "errors": 1,
        "latency": 5,
        "p99": 1,
    }


def test_a_ledger_from_the_per_look_caps_still_loads() -> None:
    written = Evidence(latency_bound_s=0.1).open_step(0, 10, at=0.0).model_dump(mode="json")
    written["burst_rates"] = {"errors": 0.015}
    written["steps"][0]["harm_events"] = {"errors": 3}
    loaded = Evidence.model_validate(written)
    assert loaded.current is not None
    assert loaded.current.index == 0


def test_history_seeds_a_tracks_spread_in_closed_blocks() -> None:
    evidence = Evidence(latency_bound_s=0.1, p99_limit_s=0.5)
    quiet = {"0.1": 100, "0.5": 100, "+Inf": 100}
    blocks = [
        Look(100, errors, 5.0 * i, 5.0 * (i + 1), quiet) for i, errors in enumerate((0, 0, 30, 0))
    ]
    seeded = evidence.with_history("stable", blocks)
    spread = seeded.stable_spread["errors"]
    assert (spread.blocks, spread.events, spread.requests, spread.open_requests) == (4, 30, 400, 0)
    # a burst of 30 in one of four blocks: the service is bursty before any canary
    assert seeded.dispersion("errors") > 10
    assert seeded.canary_spread == {}


def _blocks(errors: list[int], requests: int = 100) -> list[Look]:
    quiet = {"0.1": requests, "+Inf": requests}
    return [
        Look(requests, count, BLOCK_S * i, BLOCK_S * (i + 1), quiet)
        for i, count in enumerate(errors)
    ]


def test_the_stables_spread_is_known_from_its_history_or_its_own_blocks() -> None:
    fresh = Evidence(latency_bound_s=0.1)
    # a history with errors in it: known before the canary serves a request
    assert fresh.with_history("stable", _blocks([1] * KNOWN_BLOCKS)).stable_known("errors")
    # nginx had just started, or the service has not failed yet: not known
    assert not fresh.with_history("stable", _blocks([3, 5])).stable_known("errors")
    assert not fresh.with_history("stable", _blocks([0] * 20)).stable_known("errors")
    # five minutes without a failure: as known as a history makes it
    assert fresh.with_history("stable", _blocks([0] * HISTORY_BLOCKS)).stable_known("errors")
    # no history (the scrape provider): the rollout's own blocks of the stable count
    evidence = fresh.open_step(0, 10, at=0.0)
    for block, look in enumerate(_blocks([1] * KNOWN_BLOCKS, requests=900), start=1):
        evidence = evidence.counted("stable", look)
        assert evidence.stable_known("errors") == (block == KNOWN_BLOCKS)
    # a ledger that keeps no spreads (written before them) is tested as it was
    assert Evidence().stable_known("errors")
