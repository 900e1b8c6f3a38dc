"""The driver's answers to people, on a simulated service with the shipped policy:
Given a running rollout, When someone asks, Then the driver acts (or refuses), records
who asked, and answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftdeploy.commands.driver import follow_ends, serve_requests
from swiftdeploy.errors import ExitCode
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import Phase, State
from swiftdeploy.state.control import Answer, ControlDir, Request, Verb
from tests.support.sim import SimWorld, TrackModel, init_manifest, sim_world

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


def rollout(
    tmp_path: Path, policy: EmbeddedEngine, canary: TrackModel | None = None, **changes: object
) -> tuple[SimWorld, RolloutEngine, State]:
    loaded = init_manifest(tmp_path, **changes)
    made = sim_world(
        loaded, total_rps=500, stable=TrackModel(), canary=canary or TrackModel(), seed=3
    )
    engine = made.engine(policy)
    engine.keep_looking_when_held = True
    return made, engine, engine.begin("v2")


def ask(
    engine: RolloutEngine, control: ControlDir, state: State, verb: Verb, **fields: object
) -> tuple[State, Answer]:
    request = control.submit(verb, **fields)
    state = serve_requests(engine, control, state)
    answer = control.wait_answer(request, timeout_s=1)
    assert answer is not None
    return state, answer


def requests_recorded(made: SimWorld) -> list[dict[str, object]]:
    return [fields for kind, fields in made.recorder.records if kind == "request"]


def test_pause_holds_the_weight_until_resume_and_says_who(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    made, engine, state = rollout(tmp_path, policy)
    control = ControlDir(tmp_path / "control")
    state, answer = ask(engine, control, state, "pause", reason="dashboards")
    assert answer.result == "done"
    assert state.phase == Phase.PAUSED
    assert state.pause_kind == "operator"
    assert state.canary_weight == 10
    # the engine does not look while a person holds it
    assert not follow_ends(state, state.rollout_id, to_the_end=True)
    again, answer = ask(engine, control, state, "pause")
    assert "already paused" in answer.message
    state, answer = ask(engine, control, again, "resume")
    assert state.phase == Phase.PROGRESSING
    assert [r["verb"] for r in requests_recorded(made)] == ["pause", "pause", "resume"]
    assert requests_recorded(made)[0]["reason"] == "dashboards"
    assert requests_recorded(made)[0]["requested_by"]
    events = [f["event"] for kind, f in made.recorder.records if kind == "transition"]
    assert events[-2:] == ["paused", "resumed"]


def test_resume_of_a_rollout_that_is_not_paused_is_refused_and_changes_nothing(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    _, engine, state = rollout(tmp_path, policy)
    control = ControlDir(tmp_path / "control")
    after, answer = ask(engine, control, state, "resume")
    assert answer.result == "failed"
    assert answer.exit_code == ExitCode.OPERATIONAL
    assert "nothing to resume" in answer.message
    assert after.phase == state.phase
    assert after.step_index == state.step_index


def test_abort_rolls_back_at_once_as_the_persons(tmp_path: Path, policy: EmbeddedEngine) -> None:
    made, engine, state = rollout(tmp_path, policy)
    control = ControlDir(tmp_path / "control")
    state, answer = ask(engine, control, state, "abort", reason="bad dashboards")
    assert answer.result == "done"
    assert state.phase == Phase.ROLLED_BACK
    assert state.message is not None
    assert state.message.startswith("aborted by ")
    assert state.message.endswith(": bad dashboards")
    assert made.traffic.weight == 0
    events = [f["event"] for kind, f in made.recorder.records if kind == "transition"]
    assert events[-2:] == ["aborted", "rolled-back"]
    assert follow_ends(state, state.rollout_id, to_the_end=False)


def test_promote_skips_the_rest_of_a_step_on_a_healthy_canary(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    made, engine, state = rollout(tmp_path, policy)
    control = ControlDir(tmp_path / "control")
    for _ in range(3):  # a few looks: evidence, none of harm
        made.clock.sleep(2)
        state = engine.tick(state)
    state, answer = ask(engine, control, state, "promote")
    assert answer.result == "done", answer.message
    assert state.step_index == 1
    assert state.phase == Phase.PROGRESSING
    gate = [f for f in made.recorder.decisions() if f.get("requested") == "promote"]
    assert len(gate) == 1  # the canary policy was asked first


def test_promote_of_a_harmful_canary_is_refused_with_the_gates_exit_code(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    made, engine, state = rollout(tmp_path, policy, canary=TrackModel(error_rate=0.2))
    control = ControlDir(tmp_path / "control")
    made.clock.sleep(3)
    made.traffic.advance()
    after, answer = ask(engine, control, state, "promote")
    assert answer.result == "refused"
    assert answer.exit_code == ExitCode.DENIED
    assert "refused" in answer.message
    assert after.step_index == 0
    assert after.canary_weight == 10


def test_weight_down_needs_no_gate_and_the_step_counts_afresh(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    made, engine, state = rollout(tmp_path, policy)
    control = ControlDir(tmp_path / "control")
    steps_before = len(state.evidence.steps)
    state, answer = ask(engine, control, state, "weight", weight=5)
    assert answer.result == "done"
    assert state.canary_weight == 5
    assert made.traffic.weight == 5
    assert len(state.evidence.steps) == steps_before + 1
    assert state.evidence.steps[-1].weight == 5
    assert not [f for f in made.recorder.decisions() if f.get("requested") == "weight 5"]


def test_a_request_a_dead_driver_took_is_answered_not_repeated(tmp_path: Path) -> None:
    from swiftdeploy.commands.driver import _answer_interrupted

    control = ControlDir(tmp_path / "control")
    request: Request = control.submit("promote")
    control.take(request)
    for taken in control.interrupted():
        control.answer(taken, _answer_interrupted(taken))
    answer = control.wait_answer(request, timeout_s=1)
    assert answer is not None
    assert answer.result == "failed"
    assert "may be done" in answer.message
    assert control.pending() == []


def test_a_held_step_keeps_looking_and_later_evidence_decides(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    # Given a step that cannot decide within max_duration (quiet service, a canary a
    # little worse than the stable)
    changes = {"strategy.canary.analysis.max_duration": "40s"}
    loaded = init_manifest(tmp_path, **changes)
    made = sim_world(
        loaded, total_rps=40, stable=TrackModel(), canary=TrackModel(error_rate=0.03), seed=5
    )
    engine = made.engine(policy)
    engine.keep_looking_when_held = True
    # When the driver runs it
    state = engine.run(engine.begin("v2"))
    # Then it held (an event for people) and went on looking until the evidence
    # decided, instead of stopping at the hold
    events = [f["event"] for kind, f in made.recorder.records if kind == "transition"]
    assert "held" in events
    assert state.phase == Phase.ROLLED_BACK
    held_at = events.index("held")
    assert events[held_at + 1 :][:1] == ["rolling-back"]
