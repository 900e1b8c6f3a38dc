"""A state is accepted when a recorded transition reached it (issue 21, case 7): along a
real trail's rollouts, in the windows where a state lags its record, and never for a
state an editor wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.statecheck import state_problem
from swiftdeploy.state import Phase, State
from tests.support.trails import PROMOTED, write_synthetic_trail


def saved(transition: dict[str, Any], **changes: Any) -> State:
    """The state `Fleet.transition` saves after recording `transition`."""
    state = State(
        phase=Phase(transition["phase_after"]),
        rollout_id=transition["rollout_id"],
        stable_version=transition["stable_version"],
        canary_version=transition["canary_version"],
        canary_weight=transition["canary_weight"],
        step_index=transition["step_index"],
    )
    return state.model_copy(update=changes)


@pytest.fixture
def transitions(tmp_path: Path) -> list[dict[str, Any]]:
    records = write_synthetic_trail(tmp_path / "history.jsonl")
    return [r for r in records if r["kind"] == "transition"]


def test_every_state_a_rollout_saves_is_accepted(transitions: list[dict[str, Any]]) -> None:
    for index, transition in enumerate(transitions):
        so_far = transitions[: index + 1]
        assert state_problem(saved(transition), so_far) is None, transition
        if index:  # recorded, not yet saved: the state is still the one before
            assert state_problem(saved(transitions[index - 1]), so_far) is None


def test_the_steps_of_a_promotion_between_its_transitions(
    transitions: list[dict[str, Any]],
) -> None:
    promoting = next(
        i for i, t in enumerate(transitions)
        if t["rollout_id"] == PROMOTED and t["phase_after"] == "promoting"
    )  # fmt: skip
    so_far = transitions[: promoting + 1]
    state = saved(transitions[promoting])
    # the stable replaced (Fleet.replace_stable), then the canary retired (stop_canary)
    replaced = state.model_copy(update={"stable_version": "v2"})
    assert state_problem(replaced, so_far) is None
    assert state_problem(replaced.model_copy(update={"canary_version": None}), so_far) is None


def test_an_empty_state_acts_on_nothing_and_is_accepted(
    transitions: list[dict[str, Any]],
) -> None:
    assert state_problem(State(), transitions) is None
    assert state_problem(State(), []) is None


def test_a_state_an_editor_wrote_is_refused_with_the_last_transition(
    transitions: list[dict[str, Any]],
) -> None:
    started = transitions[-4]  # the rolled-back rollout, just started
    so_far = transitions[: len(transitions) - 3]
    state = saved(started, phase=Phase.PAUSED)
    # paused was never recorded for it: refused, naming what the trail says
    said = state_problem(state, so_far)
    assert said is not None
    assert "phase paused" in said
    assert f"left phase {started['phase_after']}" in said
    assert f"record {started['seq']}" in said
    for forged in (
        saved(started, phase=Phase.PROMOTING),
        saved(started, stable_version="v9-forged"),
        saved(started, canary_version="v9-forged"),
        saved(started, rollout_id="r-forged"),
    ):
        assert state_problem(forged, so_far) is not None, forged
    # a state two transitions back is no crash window: refused
    assert state_problem(saved(transitions[-6]), so_far) is not None


def test_a_live_state_without_a_recorded_transition_is_refused() -> None:
    state = State(phase=Phase.PROMOTING, rollout_id="r1", stable_version="v1",
                  canary_version="v2")  # fmt: skip
    said = state_problem(state, [])
    assert said is not None
    assert "records no transition" in said


def test_a_transition_recorded_again_keeps_the_state_before_it_accepted(
    transitions: list[dict[str, Any]],
) -> None:
    # The first save failed (the API server did not answer), the driver recorded the
    # transition again: the state may still be the one before both copies.
    last, before = transitions[-1], transitions[-2]
    again = [*transitions, dict(last, seq=last["seq"] + 1)]
    assert state_problem(saved(before), again) is None
    assert state_problem(saved(last), again) is None
