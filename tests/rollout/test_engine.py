"""The rollout engine on a simulated service, in simulated time, with the shipped
policy: Given traffic and a canary, When the rollout runs, Then ..."""

from __future__ import annotations

import pytest
from bench.support.sim import TrackModel

from swiftdeploy.commands.rollback import rollback
from swiftdeploy.commands.rollout import outcome
from swiftdeploy.errors import ExitCode, HeldError, RolledBackError
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.state import Phase
from tests.rollout.conftest import World


def test_healthy_canary_is_promoted_step_by_step(world: World) -> None:
    # Given 500 req/s and a canary that behaves like the stable (0.5% errors)
    made, engine = world(500)
    started = made.clock.now
    # When v2 rolls out
    state = engine.run(engine.begin("v2"))
    # Then it is promoted, every step ran its minimum, and each step's pass says why
    assert state.phase == Phase.PROMOTED
    assert state.stable_version == "v2"
    assert not state.track("canary")
    passes = [d for d in made.recorder.decisions() if d["action"] == "promote"]
    assert [d["step_index"] for d in passes] == [0, 1, 2]
    for record in passes:
        decision = record["decision"]
        assert decision["input"]["step"]["elapsed_s"] >= 30
        assert decision["output"]["reasons"][0]["rule"] == "passed"
    assert made.clock.now - started < 300


def test_later_steps_pass_on_the_first_steps_evidence(world: World) -> None:
    made, engine = world(500)
    engine.run(engine.begin("v2"))
    passes = [d for d in made.recorder.decisions() if d["action"] == "promote"]
    first, later = passes[0], passes[1:]
    assert {first["decision"]["statistics"][k]["passed_by"] for k in ("errors", "latency")} <= {
        "power",
        "no_harm",
    }
    for record in later:
        stats = record["decision"]["statistics"]
        assert stats["errors"]["passed_by"] == "earlier_step"
        # the evidence of harm carries over: what step 1 ended with multiplies in
        assert stats["errors"]["carried"] < 1


def test_five_percent_errors_roll_back_within_a_few_hundred_requests(world: World) -> None:
    # Given a canary failing 5% of requests against the stable's 0.5%, at 50 canary req/s
    made, engine = world(500, canary=TrackModel(error_rate=0.05))
    # When v2 rolls out
    state = engine.run(engine.begin("v2"))
    # Then it is rolled back by the errors test, at 0% and with its replicas gone
    assert state.phase == Phase.ROLLED_BACK
    assert "canary errors worse than stable" in (state.message or "")
    assert state.canary_weight == 0
    assert not state.track("canary")
    assert made.traffic.weight == 0
    last = list(made.recorder.decisions())[-1]
    assert last["action"] == "rollback"
    assert last["decision"]["statistics"]["errors"]["canary_n"] < 600
    with pytest.raises(RolledBackError) as raised:
        outcome(state)
    assert raised.value.exit_code == ExitCode.DENIED


def test_slow_canary_rolls_back_on_latency(world: World) -> None:
    _made, engine = world(200, canary=TrackModel(extra_latency_s=0.3))
    state = engine.run(engine.begin("v2"))
    assert state.phase == Phase.ROLLED_BACK
    assert "canary slower than stable" in (state.message or "")


def test_quiet_service_holds_with_what_it_needs_and_never_rolls_back(world: World) -> None:
    # Given 10 req/s (1 canary req/s at 10%) and a 2 minute step limit
    made, engine = world(10, **{"strategy.canary.analysis.max_duration": "2m"})
    # When v2 rolls out
    state = engine.run(engine.begin("v2"))
    # Then at the limit it holds for a person, saying how much more it needs, and
    # how long that takes at the current rate
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "held")
    assert state.canary_weight == 10
    message = state.message or ""
    assert "more canary requests to catch +1 point with 90% power (about" in message
    assert "req/s)" in message
    assert all(d["action"] != "rollback" for d in made.recorder.decisions())
    with pytest.raises(HeldError) as raised:
        outcome(state)
    assert raised.value.exit_code == ExitCode.HELD
    # the last look is kept for `status`, in the live view's words
    assert state.last_look is not None
    assert state.last_look.action == "held"
    assert "needs about " in dict(state.last_look.progress)["progress"]


def test_resume_keeps_the_evidence_of_a_held_step(world: World) -> None:
    made, engine = world(10, **{"strategy.canary.analysis.max_duration": "2m"})
    held = engine.run(engine.begin("v2"))
    step = held.evidence.current
    assert step is not None
    before = step.canary.requests
    # When a person resumes ten minutes later
    made.clock.sleep(600)
    resumed = engine.resume_held(held)
    assert resumed.phase == Phase.PROGRESSING
    after = engine.tick(resumed)
    # Then the same step goes on counting from where it was, the ten minutes included
    current = after.evidence.current
    assert current is not None
    assert current.index == step.index
    assert current.canary.requests >= before + 500
    assert after.step_deadline is not None
    assert after.step_deadline > made.clock.now


def test_a_held_step_resumed_long_enough_is_promoted(world: World) -> None:
    _made, engine = world(20, **{"strategy.canary.analysis.max_duration": "5m"})
    state = engine.run(engine.begin("v2"))
    resumes = 0
    while state.phase == Phase.PAUSED and state.pause_kind == "held" and resumes < 20:
        state = engine.run(engine.resume_held(state))
        resumes += 1
    assert state.phase == Phase.PROMOTED
    assert resumes >= 1


def test_timed_pause_waits_then_goes_on(world: World) -> None:
    made, engine = world(
        500,
        **{"strategy.canary.steps": [{"weight": 10, "pause": "20s"}, {"weight": 50}]},
    )
    state = engine.begin("v2")
    while state.phase == Phase.PROGRESSING:
        state = engine.tick(state)
        made.clock.sleep(1)
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "timed")
    assert state.resume_at is not None
    waiting = engine.tick(state)
    assert waiting.phase == Phase.PAUSED  # not yet
    made.clock.now = state.resume_at
    moved = engine.tick(state)
    assert (moved.phase, moved.step_index, moved.canary_weight) == (Phase.PROGRESSING, 1, 50)


def test_manual_pause_waits_for_a_person(world: World) -> None:
    _made, engine = world(
        500,
        **{"strategy.canary.steps": [{"weight": 10, "pause": "manual"}, {"weight": 50}]},
    )
    state = engine.run(engine.begin("v2"))
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "manual")
    assert outcome(state).startswith("paused at step 1")
    state = engine.run(engine.advance(state, passed_by_hand=True))
    assert state.phase == Phase.PROMOTED


def test_a_step_promoted_by_hand_proves_nothing_for_the_next(world: World) -> None:
    made, engine = world(10, **{"strategy.canary.steps": [{"weight": 10}, {"weight": 50}]})
    state = engine.begin("v2")
    state = engine.tick(state)
    # When a person moves on before the first step has any verdict
    state = engine.advance(state, passed_by_hand=True)
    first = state.evidence.steps[0]
    assert first.passed == {"errors": "hand", "latency": "hand"}
    state = engine.tick(state)
    stats = list(made.recorder.decisions())[-1]["decision"]["statistics"]
    # Then the next step must earn its own pass
    assert stats["errors"]["passed_by"] is None
    assert stats["errors"]["verdict"] == "continue"


class _Broken:
    """A provider whose reads all fail after the first step's marks."""

    name = "broken"
    resolution_s = 0.25

    def mark(self, track: str) -> float | None:
        return None

    def measure_since(self, track: str, since: float) -> object:
        raise AssertionError("never asked: it has no marks")

    def measure(self, track: str, window_s: float) -> Measurement:
        return Measurement.provider_error(track, self.name, "connection refused")

    def is_online(self) -> bool:
        return False


def test_unreadable_metrics_are_never_a_pass(world: World) -> None:
    made, engine = world(500, **{"strategy.canary.analysis.max_duration": "1m"})
    engine.metrics = _Broken()  # type: ignore[assignment]
    state = engine.run(engine.begin("v2"))
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "held")
    assert all(d["action"] in ("hold", "held") for d in made.recorder.decisions())


def test_latency_bound_comes_from_the_stable_before_the_canary(world: World) -> None:
    _made, engine = world(500)
    state = engine.begin("v2")
    bound = state.evidence.latency_bound_s
    # the stable's p99 (about 64 ms) is in the (50, 75] ms bucket: 50 + 100 ms
    assert bound == pytest.approx(0.15)
    assert state.evidence.latency_reference.startswith("stable p99 in (50, 75] ms")


def test_a_canary_that_never_becomes_ready_is_rolled_back(world: World) -> None:
    # Given a canary version whose replicas never pass their health check
    made, engine = world(500)
    made.tracks.never_ready.add("v2")
    # When v2 rolls out
    state = engine.run(engine.begin("v2"))
    # Then it is rolled back, saying why, no traffic ever reached it, and nothing of it runs
    assert state.phase == Phase.ROLLED_BACK
    assert state.message is not None
    assert state.message.startswith("the canary did not become ready: canary-v2-0")
    assert not state.track("canary")
    assert made.traffic.weight == 0
    assert not list(made.recorder.decisions())
    with pytest.raises(RolledBackError):
        outcome(state)


def test_a_canary_lost_and_never_ready_again_is_rolled_back_on_resume(world: World) -> None:
    # Given a rollout whose canary replica is gone (say the host rebooted) and whose
    # version no longer starts
    made, engine = world(500)
    state = engine.begin("v2")
    state = made.store.save(state.without({r.name for r in state.track("canary")}))
    made.tracks.never_ready.add("v2")
    # When it is resumed
    state = engine.run(engine.ensure_canary(state))
    # Then it is rolled back with the reason
    assert state.phase == Phase.ROLLED_BACK
    assert state.message is not None
    assert state.message.startswith("the canary did not become ready:")
    assert state.stable_version == "v1"


def test_rollback_ends_a_rollout_killed_while_its_canary_was_starting(world: World) -> None:
    # Given a rollout whose CLI died after it began but before a canary replica was
    # recorded (kill -9 while the replica starts)
    made, _engine = world(500)
    state = made.store.load()
    state = made.fleet.transition(
        state, "rollout of v2 started", phase=Phase.PROGRESSING, canary_version="v2",
        canary_weight=0, step_index=0, auto_advance=True,
    )  # fmt: skip
    assert not state.track("canary")
    # When it is rolled back by hand
    done = rollback(made.fleet)
    # Then the rollout ends rolled back, with the stable alone
    assert done.phase == Phase.ROLLED_BACK
    assert done.canary_version is None
    assert made.traffic.weight == 0


def test_a_route_changed_mid_step_is_restored_and_the_step_starts_its_evidence_again(
    world: World,
) -> None:
    # Given a rollout at its first step (10%) with a few looks counted
    made, engine = world(500)
    state = engine.begin("v2")
    for _ in range(5):
        made.clock.sleep(1)
        state = engine.tick(state)
    counted = state.evidence.current
    assert counted is not None
    assert counted.canary.requests > 0

    # When someone sets the router to send the canary everything, behind the state's back
    made.tracks.router.apply(made.tracks.router.routes.model_copy(update={"canary_weight": 100}))
    made.clock.sleep(1)
    state = engine.tick(state)

    # Then the next look restored the state's split, recorded the drift, and the step's
    # evidence (and its min_duration) started again from this look
    assert made.tracks.router.routes.canary_weight == 10
    drifts = [
        f for kind, f in made.recorder.records if kind == "transition" and f["event"] == "drift"
    ]
    assert len(drifts) == 1
    assert "sent the canary 100%, not 10%; restored" in str(drifts[0]["reason"])
    assert "the step's evidence starts again" in str(drifts[0]["reason"])
    assert len(state.evidence.steps) == 2
    assert state.evidence.current.looks <= 1  # type: ignore[union-attr]
    assert state.step_started_at == made.clock.now

    # and the rollout still promotes, on evidence gathered at the state's split only
    state = engine.run(state)
    assert state.phase == Phase.PROMOTED


def test_traffic_that_does_not_follow_the_route_holds_with_the_reason(world: World) -> None:
    # Given a rollout at its first step, 10% by the route
    made, engine = world(500)
    state = engine.begin("v2")
    # When the data plane sends the canary 90% whatever the route says
    made.traffic.set_weight(90)
    for _ in range(40):
        made.clock.sleep(1)
        state = engine.tick(state)
    # Then no look passes the step: each holds, saying the split does not match
    looks = list(made.recorder.decisions())
    assert all(d["action"] != "promote" for d in looks)
    reasons = [r["message"] for r in looks[-1]["decision"]["output"]["reasons"]]  # type: ignore[index]
    assert any("the traffic does not follow the route" in r for r in reasons), reasons
    assert any("where its weight is 10%" in r for r in reasons)
    assert state.phase == Phase.PROGRESSING
