"""Gating hooks in the rollout engine, on a simulated service in simulated time with
the shipped policy, and real receivers on loopback: Given a hook's answers, When the
rollout runs, Then the hook gates it as documented (docs/notifications.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from bench.support.sim import SimWorld, TrackModel

from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import IDLE_OR_ENDED, RolloutEngine
from swiftdeploy.state import Phase, State
from tests.rollout.conftest import World
from tests.support.hook_server import HookServer, hook_server

ENV = {"HOOK_KEY": "test-signing-key"}
ONE_STEP = [{"weight": 50}]


@pytest.fixture
def server() -> Iterator[HookServer]:
    with hook_server() as running:
        yield running


def hooked(
    world: World,
    hooks: list[dict[str, Any]],
    canary: TrackModel | None = None,
    **changes: object,
) -> tuple[SimWorld, RolloutEngine, list[int]]:
    """A world whose engine calls `hooks` (the env signing key of ENV); the weights the
    router was given, in order. Each simulated sleep lets some real time pass too, so
    the hook threads are heard."""
    from swiftdeploy.notify.hooks import hook_caller
    from swiftdeploy.notify.secrets import resolve_secrets

    made, engine = world(
        500,
        canary=canary,
        **{
            "notifications.signing_key": {"env": "HOOK_KEY"},
            "notifications.backoff": "20ms",
            "hooks": hooks,
            **changes,
        },
    )
    loaded = made.fleet.loaded
    engine.hooks = hook_caller(loaded, resolve_secrets(loaded, ENV))

    def sleep(seconds: float) -> None:
        made.clock.sleep(seconds)
        time.sleep(0.005)

    engine.sleep = sleep
    weights: list[int] = []
    set_weight = made.traffic.set_weight

    def recorded(weight: int) -> None:
        weights.append(weight)
        set_weight(weight)

    made.traffic.set_weight = recorded  # type: ignore[method-assign]
    return made, engine, weights


def run_until(
    engine: RolloutEngine, state: State, done: Callable[[State], bool], ticks: int = 3000
) -> State:
    for _ in range(ticks):
        if done(state) or state.phase in IDLE_OR_ENDED:
            return state
        state = engine.tick(state)
        engine.sleep(engine.look_interval(state))
    raise AssertionError(f"not done after {ticks} ticks: {state.phase} {state.message}")


def hook_records(made: SimWorld, name: str) -> list[dict[str, object]]:
    return [
        fields
        for kind, fields in made.recorder.records
        if kind == "hook" and fields["hook"] == name
    ]


def test_a_pre_rollout_hook_answering_500_stops_the_rollout_before_any_traffic(
    world: World, server: HookServer
) -> None:
    # Given a smoke test that answers 500, and a rollback hook
    server.answer("/smoke", 500, "smoke failed: 3 of 10 checks")
    made, engine, weights = hooked(
        world,
        [
            {"name": "smoke", "type": "pre-rollout", "url": server.url("/smoke"), "retries": 1},
            {"name": "tell", "type": "rollback", "url": server.url("/tell")},
        ],
    )
    # When v2 rolls out
    state = run_until(engine, engine.begin("v2"), lambda state: False)
    engine.close()
    # Then it is rolled back, saying why, and the canary never got any traffic
    assert state.phase == Phase.ROLLED_BACK
    assert state.message == "pre-rollout hook smoke answered HTTP 500: smoke failed: 3 of 10 checks"
    assert max(weights, default=0) == 0
    assert not list(made.recorder.decisions())  # no look: nothing to look at
    # and the call, its retry folded in, is one record in the trail
    (record,) = hook_records(made, "smoke")
    assert (record["result"], record["status"], record["attempts"]) == ("refused", 500, 2)
    assert record["type"] == "pre-rollout"
    assert (record["step_index"], record["step"]) == (0, 0)
    # and the informational rollback hook was called once, after the rollback; both
    # payloads say step 0 of 1: before step 1
    (told,) = server.calls_to("/tell")
    assert told.json["phase"] == "rolled-back"
    assert {call.json["step"] for call in server.calls_to("/smoke")} == {0}
    assert (told.json["step"], told.json["steps"]) == (0, 3)
    assert len(hook_records(made, "tell")) == 1


def test_confirm_promotion_holds_until_the_hook_says_yes_and_looks_go_on(
    world: World, server: HookServer
) -> None:
    # Given an approval hook that says no, and a post-rollout hook that is slow
    server.answer("/approve", 403, {"approved": False})
    server.answer("/post", 200, "noted", delay_s=0.3)
    made, engine, weights = hooked(
        world,
        [
            {"name": "approve", "type": "confirm-promotion", "url": server.url("/approve")},
            {"name": "post", "type": "post-rollout", "url": server.url("/post")},
        ],
        **{"strategy.canary.steps": ONE_STEP, "strategy.canary.analysis.max_duration": "2m"},
    )
    # When the healthy canary's only step passes
    state = run_until(engine, engine.begin("v2"), lambda state: state.awaiting is not None)
    waited_from = made.clock.now
    # Then it waits for the hook, saying so, at its weight, past its max_duration
    deadline = state.step_deadline
    assert deadline is not None
    state = run_until(engine, state, lambda state: made.clock.now > deadline + 10)
    assert state.phase == Phase.PROGRESSING
    assert state.canary_weight == 50
    assert state.awaiting is not None
    assert state.awaiting.type == "confirm-promotion"
    assert "waiting for the confirm-promotion hook approve to answer 2xx" in (state.message or "")
    assert "held" not in {d["action"] for d in made.recorder.decisions()}
    looks = [d for d in made.recorder.decisions() if d["decision"]["input"]["step"]["elapsed_s"]
             > waited_from - (state.step_started_at or 0)]  # fmt: skip
    assert len(looks) >= 10
    assert {d["action"] for d in looks} == {"hold"}
    refusals = hook_records(made, "approve")
    assert len(refusals) >= 2
    assert {r["result"] for r in refusals} == {"refused"}
    # the hook was asked again at most every few (simulated) seconds
    assert len(refusals) <= (made.clock.now - waited_from) / 5 + 2
    # When the hook says yes
    server.answer("/approve", 200, {"approved": True})
    state = run_until(engine, state, lambda state: False)
    engine.close()
    # Then the canary is promoted; the post-rollout hook was called once and recorded
    assert state.phase == Phase.PROMOTED
    assert hook_records(made, "approve")[-1]["result"] == "ok"
    assert len(server.calls_to("/post")) == 1
    # and both payloads name the only step as events do: step 1 of 1
    asked = {(c.json["step"], c.json["steps"]) for c in server.calls_to("/approve")}
    assert asked == {(1, 1)} == {(server.calls_to("/post")[0].json["step"], 1)}
    assert [r["result"] for r in hook_records(made, "post")] == ["ok"]
    assert state.hooks["approve"].ok
    assert state.awaiting is None
    assert 100 in weights


def test_a_hook_that_times_out_never_promotes_and_harm_still_rolls_back(
    world: World, server: HookServer
) -> None:
    # Given an increase gate that never answers in time
    server.answer("/gate", 200, "", delay_s=1.0)
    made, engine, weights = hooked(
        world,
        [
            {
                "name": "gate",
                "type": "confirm-traffic-increase",
                "url": server.url("/gate"),
                "timeout": "100ms",
                "retries": 0,
            }
        ],
    )
    # When the first step passes, the gate is asked, and fails
    state = run_until(engine, engine.begin("v2"), lambda state: state.awaiting is not None)
    first = state.canary_weight
    state = run_until(engine, state, lambda state: len(hook_records(made, "gate")) >= 2)
    # Then the step holds at its weight (fail closed)
    assert state.phase == Phase.PROGRESSING
    assert state.canary_weight == first
    assert {r["result"] for r in hook_records(made, "gate")} == {"failed"}
    # When the canary starts failing a fifth of its requests while it waits
    made.traffic.models["canary"] = TrackModel(error_rate=0.2)
    state = run_until(engine, state, lambda state: False)
    engine.close()
    # Then it is rolled back on the evidence, never having gone past the first step
    assert state.phase == Phase.ROLLED_BACK
    assert "canary errors worse than stable" in (state.message or "")
    assert max(weights) == first


def test_a_project_rule_reads_a_hooks_answer(
    world: World, server: HookServer, tmp_path: Path
) -> None:
    # Given a smoke test that passes (2xx) but reports a p99 of 250 ms
    server.answer("/smoke", 200, {"p99_ms": 250})
    made, engine, _weights = hooked(
        world, [{"name": "smoke", "type": "pre-rollout", "url": server.url("/smoke")}]
    )
    # and the project's own rule (in the policy directory init wrote): roll back when
    # the smoke test's p99 is over 100 ms
    (tmp_path / "policies" / "hooks.rego").write_text(SMOKE_RULE)
    engine.policy = EmbeddedEngine(tmp_path / "policies")
    # When v2 rolls out
    state = run_until(engine, engine.begin("v2"), lambda state: False)
    # Then the rule decides at the first look, and the input carried the answer
    assert state.phase == Phase.ROLLED_BACK
    assert "the smoke test's p99 is 250 ms" in (state.message or "")
    first = next(iter(made.recorder.decisions()))
    smoke = first["decision"]["input"]["hooks"]["smoke"]
    assert (smoke["type"], smoke["ok"], smoke["status"], smoke["answer"], smoke["step"]) == (
        "pre-rollout", True, 200, {"p99_ms": 250}, 0,
    )  # fmt: skip


def test_without_hooks_the_input_has_none(world: World) -> None:
    made, engine = world(500)
    engine.tick(engine.begin("v2"))
    assert next(iter(made.recorder.decisions()))["decision"]["input"]["hooks"] == {}


SMOKE_RULE = """package swiftdeploy.canary

deny contains reason if {
	p99 := input.hooks.smoke.answer.p99_ms
	p99 > 100
	reason := {
		"rule": "smoke_p99",
		"message": sprintf("the smoke test's p99 is %v ms", [p99]),
		"observed": p99,
		"threshold": 100,
	}
}
"""


def restarted(made: SimWorld, engine: RolloutEngine, world_hooks: Any) -> RolloutEngine:
    """A new engine on the same project (a driver restarted): nothing in memory."""
    return RolloutEngine(
        fleet=made.fleet, metrics=made.provider, policy=engine.policy, clock=made.clock,
        sleep=engine.sleep, keep_looking_when_held=True, hooks=world_hooks,
    )  # fmt: skip


@pytest.mark.parametrize("killed", ["mid-rollback", "after the call"])
def test_the_rollback_hook_is_called_once_across_a_driver_restart(
    world: World, server: HookServer, killed: str
) -> None:
    # Given a failing canary rolled back, a rollback hook told, and a driver killed
    # mid-rollback (the state rolling-back) or after the hook's call went out
    from swiftdeploy.notify.hooks import hook_caller
    from swiftdeploy.notify.secrets import resolve_secrets

    made, engine, _ = hooked(
        world,
        [{"name": "tell", "type": "rollback", "url": server.url("/tell")}],
        canary=TrackModel(error_rate=0.2),
    )
    stop_canary = made.fleet.stop_canary
    if killed == "mid-rollback":

        def dies(state: State) -> State:
            made.fleet.stop_canary = stop_canary  # type: ignore[method-assign]
            raise KeyboardInterrupt  # the process killed while the canary drains

        made.fleet.stop_canary = dies  # type: ignore[method-assign]
    state = engine.begin("v2")
    with pytest.raises(KeyboardInterrupt) if killed == "mid-rollback" else nullcontext():
        state = run_until(engine, state, lambda state: False)
    state = made.store.load()
    if killed == "mid-rollback":
        assert state.phase == Phase.ROLLING_BACK
    else:
        assert state.phase == Phase.ROLLED_BACK
        server.wait_for_calls("/tell", 1)
    # When a driver restarts on it (a new engine and hook caller) and carries on
    loaded = made.fleet.loaded
    again = restarted(made, engine, hook_caller(loaded, resolve_secrets(loaded, ENV)))
    state = run_until(again, state, lambda state: False)
    again.close()
    # Then the rollback hook was called once in all
    assert state.phase == Phase.ROLLED_BACK
    assert len(server.calls_to("/tell")) == 1
