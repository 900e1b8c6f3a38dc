"""The evidence ledger counts what each look measured, per step, and notes the gaps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
