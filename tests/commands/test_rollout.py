"""`commands.rollout.outcome`: the line (or the exit code) a followed rollout ends with,
for each phase it can stop in."""

from __future__ import annotations

import pytest

from swiftdeploy.commands.rollout import outcome
from swiftdeploy.errors import ExitCode, HeldError, RolledBackError
from swiftdeploy.state import Phase, State


def test_a_promotion_names_the_new_stable_version() -> None:
    state = State(phase=Phase.PROMOTED, stable_version="v2")
    assert outcome(state) == "promoted: v2 is stable"


def test_a_rollback_is_exit_3_with_its_reason() -> None:
    state = State(phase=Phase.ROLLED_BACK, message="canary 5xx 4.1% > 1%")
    with pytest.raises(RolledBackError, match=r"rolled back: canary 5xx 4\.1% > 1%") as raised:
        outcome(state)
    assert raised.value.exit_code == ExitCode.DENIED == 3


def test_a_held_step_is_exit_4_naming_the_step() -> None:
    state = State(phase=Phase.PAUSED, pause_kind="held", step_index=1, message="not enough")
    with pytest.raises(HeldError, match="held at step 2: not enough") as raised:
        outcome(state)
    assert raised.value.exit_code == ExitCode.HELD == 4


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("manual", "paused at step 3: run `swiftdeploy promote` to go on"),
        ("operator", "paused at step 3 by a person: `swiftdeploy resume`"),
    ],
)
def test_a_pause_says_who_paused_and_what_goes_on(kind: str, words: str) -> None:
    assert outcome(State(phase=Phase.PAUSED, pause_kind=kind, step_index=2)) == words


def test_any_other_phase_says_resume_carries_on() -> None:
    state = State(phase=Phase.PROGRESSING, step_index=0)
    assert outcome(state) == "stopped in phase progressing: run `swiftdeploy resume` to carry on"
