"""The driver's answers to people, on a simulated service with the shipped policy:
Given a running rollout, When someone asks, Then the driver acts (or refuses), records
who asked, and answers."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from bench.support.sim import SimWorld, TrackModel, init_manifest, sim_world

from swiftdeploy.commands.driver import (
    _drive,
    driver_installed,
    follow_ends,
    serve_requests,
    start_in_cluster,
)
from swiftdeploy.errors import ExitCode, OperationalError, TransientError
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import Phase, State
from swiftdeploy.state.control import Answer, ControlDir, DriverInfo, Request, Verb
from tests.support.hook_server import hook_server

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


class _FlakyCluster:
    """The control channel and state store of a cluster whose API server goes away for
    the first `away_calls` reads after the start request is in, then answers."""

    def __init__(self, away_calls: int, rollout_id: str) -> None:
        self.away_calls = away_calls
        self.rollout_id = rollout_id
        self.submitted: list[Request] = []

    def _read(self) -> None:
        if self.away_calls > 0:
            self.away_calls -= 1
            raise TransientError("Kubernetes API: read ConfigMap: the API server did not answer")

    # the control channel
    def driver(self) -> object:
        return object()  # a driver said it runs

    def submit(self, verb: Verb, **fields: object) -> Request:
        request = Request(id="r1", verb=verb, requested_by="a", at=0.0)
        self.submitted.append(request)
        return request

    def wait_answer(self, request: Request, timeout_s: float) -> Answer | None:
        self._read()
        return None

    # the state store
    def load(self) -> State:
        self._read()
        return State(rollout_id=self.rollout_id, phase=Phase.PROGRESSING)


class _Patience:
    def __init__(self) -> None:
        self.waited: list[str] = []
        self.backs = 0

    def waits(self, exc: OperationalError) -> bool:
        self.waited.append(exc.one_line())
        return isinstance(exc, TransientError)

    def back(self) -> None:
        self.backs += 1


def _flaky_cluster(monkeypatch: pytest.MonkeyPatch, away_calls: int) -> _FlakyCluster:
    import swiftdeploy.commands.context as context_module
    import swiftdeploy.commands.driver as driver_module

    cluster = _FlakyCluster(away_calls, "ro-1")
    monkeypatch.setattr(driver_module, "cluster_control", lambda loaded: cluster)
    monkeypatch.setattr(driver_module, "driver_installed", lambda control: True)
    monkeypatch.setattr(context_module, "state_store", lambda loaded: cluster)
    return cluster


def test_a_start_request_waits_through_an_api_server_that_goes_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a start request that is in, and an API server that then stops answering
    # for six reads (the driver holds meanwhile)
    cluster = _flaky_cluster(monkeypatch, away_calls=6)
    patience = _Patience()

    # When the person's CLI waits for the rollout to be under way
    found = start_in_cluster(init_manifest(tmp_path), "v2", "ro-1", away=patience)

    # Then it waited through every failed read, said it was back, and returns the
    # rollout's state, with the request sent once
    assert isinstance(found, State)
    assert found.rollout_id == "ro-1"
    assert len(patience.waited) == 6
    assert patience.backs >= 1
    assert len(cluster.submitted) == 1


def test_without_patience_an_api_server_away_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flaky_cluster(monkeypatch, away_calls=1)
    with pytest.raises(TransientError, match="did not answer"):
        start_in_cluster(init_manifest(tmp_path), "v2", "ro-1")


class _CountingEnviron(dict[str, str]):
    """os.environ that counts the reads of the secrets' variables."""

    def __init__(self, values: dict[str, str], counted: tuple[str, ...]) -> None:
        super().__init__(values)
        self.counted = counted
        self.reads: list[str] = []

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        if key in self.counted:
            self.reads.append(key)
        return super().get(key, default)


def test_a_driver_start_reads_each_secret_once_for_its_hooks_and_its_notifications(
    tmp_path: Path, policy: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a manifest whose hooks and notification sink share the signing key (from
    # the environment; on Kubernetes each read is an API call to a Secret)
    made, _, state = rollout(
        tmp_path,
        policy,
        **{
            "notifications.signing_key": {"env": "SD_KEY"},
            "notifications.sinks": [
                {"name": "log", "kind": "webhook", "url": {"env": "SD_SINK_URL"}}
            ],
            "hooks": [{"name": "tell", "type": "rollback", "url": "http://127.0.0.1:9/tell"}],
        },
    )
    secrets = {"SD_KEY": "k" * 24, "SD_SINK_URL": "http://127.0.0.1:9/sink"}
    environ = _CountingEnviron({**os.environ, **secrets}, tuple(secrets))
    monkeypatch.setattr(os, "environ", environ)
    made.fleet.loaded.state_dir.mkdir(exist_ok=True)  # the outbox's file goes there
    control = ControlDir(tmp_path / "control")
    stopped: Any = SimpleNamespace(requested=True, is_set=lambda: True, halt=lambda: None)
    # When a driver starts (restarted on the rollout; told to stop after its start)
    code = _drive(made.fleet, control, state.rollout_id or "", None, stopped, lambda line: None)
    # Then it started, and read each secret once for both the hooks and the sink
    assert code == 0
    assert any(kind == "driver" and f["event"] == "restarted" for kind, f in made.recorder.records)
    assert sorted(environ.reads) == ["SD_KEY", "SD_SINK_URL"]


def hooked_rollout(
    tmp_path: Path, policy: EmbeddedEngine, hooks: list[dict[str, object]], **changes: object
) -> tuple[SimWorld, RolloutEngine, State]:
    """A rollout whose engine calls `hooks` on loopback (signed with HOOK_KEY)."""
    from swiftdeploy.notify.hooks import hook_caller
    from swiftdeploy.notify.secrets import resolve_secrets

    loaded = init_manifest(
        tmp_path,
        **{
            "notifications.signing_key": {"env": "HOOK_KEY"},
            "notifications.backoff": "20ms",
            "hooks": hooks,
            **changes,
        },
    )
    made = sim_world(loaded, total_rps=500, stable=TrackModel(), canary=TrackModel(), seed=3)
    engine = made.engine(policy)
    engine.keep_looking_when_held = True
    engine.hooks = hook_caller(loaded, resolve_secrets(loaded, {"HOOK_KEY": "k" * 24}))
    return made, engine, engine.begin("v2")


def heard(engine: RolloutEngine, state: State, made: SimWorld) -> State:
    """Ticks (a few simulated seconds each) until the hook's answer is in the state."""
    for _ in range(200):
        made.clock.sleep(1.0)
        state = engine.tick(state)
        if any(answer.status for answer in state.hooks.values()):
            return state
        time.sleep(0.02)
    raise AssertionError("no hook answer")


@pytest.mark.parametrize("to_the_end", [False, True])
def test_promote_while_a_confirm_promotion_hook_says_no_says_the_step_waits_for_it(
    tmp_path: Path, policy: EmbeddedEngine, to_the_end: bool
) -> None:
    # Given a one-step rollout whose confirm-promotion hook answers 403
    with hook_server() as server:
        server.answer("/approve", 403, {"approved": False})
        made, engine, state = hooked_rollout(
            tmp_path,
            policy,
            [{"name": "approve", "type": "confirm-promotion", "url": server.url("/approve")}],
            **{"strategy.canary.steps": [{"weight": 50}]},
        )
        control = ControlDir(tmp_path / "control")
        for _ in range(3):
            made.clock.sleep(2)
            state = engine.tick(state)
        # When a person promotes (or promotes --all): the hook is asked, no answer yet
        state, answer = ask(engine, control, state, "promote", to_the_end=to_the_end)
        # Then the answer says the step passed and waits for the hook; nothing promoted
        assert answer.result == "refused", answer.message
        assert answer.exit_code == ExitCode.HELD
        assert answer.message.startswith("step 1 passed; waiting")
        assert "for hook approve (confirm-promotion) before promoting" in answer.message
        assert answer.message.endswith("asked, no answer yet")
        assert state.phase == Phase.PROGRESSING
        assert state.stable_version == "v1"
        # and once the hook said 403, a promote says that
        state = heard(engine, state, made)
        state, answer = ask(engine, control, state, "promote", to_the_end=to_the_end)
        assert answer.exit_code == ExitCode.HELD
        assert re.search(r"approve \(confirm-promotion\) before promoting: HTTP 403 \d+ s ago$",
                         answer.message), answer.message  # fmt: skip
        assert state.stable_version == "v1"
        # and a weight set meanwhile is done, saying the step still waits
        state, answer = ask(engine, control, state, "weight", weight=30)
        assert answer.result == "done"
        assert "canary 30%" in answer.message
        assert "waiting" in answer.message
        assert "for hook approve (confirm-promotion)" in answer.message
        engine.close()


def test_promote_or_weight_before_the_pre_rollout_hook_said_yes_is_refused(
    tmp_path: Path, policy: EmbeddedEngine
) -> None:
    # Given a rollout waiting for its pre-rollout smoke test (still running)
    with hook_server() as server:
        server.answer("/smoke", 200, delay_s=1.0)
        made, engine, state = hooked_rollout(
            tmp_path,
            policy,
            [{"name": "smoke", "type": "pre-rollout", "url": server.url("/smoke")}],
        )
        assert state.awaiting is not None
        control = ControlDir(tmp_path / "control")
        # When a person promotes, or sets a weight
        for verb, fields in (("promote", {}), ("weight", {"weight": 20})):
            state, answer = ask(engine, control, state, verb, **fields)  # type: ignore[arg-type]
            # Then it is refused in one line (no crash), and the canary has no traffic
            assert answer.result == "refused", answer.message
            assert answer.exit_code == ExitCode.HELD
            assert "for hook smoke (pre-rollout) before the canary gets any traffic" in (
                answer.message
            )
            assert made.traffic.weight == 0
        engine.hooks.wait(("pre-rollout",))  # type: ignore[union-attr]


class _StartingDriver:
    """A cluster's control channel as a CLI sees it while a driver starts: the Lease
    held by `holder`, and the driver's record saved only from the `saved_at`-th read on
    (None: never)."""

    def __init__(self, holder: str | None, saved_at: int | None) -> None:
        self.lease_holder = holder
        self.saved_at = saved_at
        self.reads = 0

    def driver(self) -> DriverInfo | None:
        self.reads += 1
        if self.saved_at is None or self.reads < self.saved_at:
            return None
        return DriverInfo(pid=7, rollout_id=None, started_at=0, first_started_at=0, holder="d")

    def holder(self) -> str | None:
        return self.lease_holder


def test_a_driver_holding_the_lease_before_its_record_is_waited_for() -> None:
    # Given a driver that took the Lease and saves its record at the CLI's third read
    # (between the two it reads its trail, secrets and state)
    starting = _StartingDriver(holder="host/12/boot=1", saved_at=3)
    # When a CLI asks whether a driver runs, then it waits for the record: yes
    assert driver_installed(starting, starting_s=5.0)  # type: ignore[arg-type]
    assert starting.reads == 3


def test_no_lease_holder_is_no_driver_at_once_and_a_silent_holder_after_the_wait() -> None:
    # Given no holder of the Lease: no driver, without waiting
    nobody = _StartingDriver(holder=None, saved_at=None)
    started = time.monotonic()
    assert not driver_installed(nobody, starting_s=5.0)  # type: ignore[arg-type]
    assert nobody.reads == 1
    assert time.monotonic() - started < 1.0
    # Given a holder that never says it drives (a CLI's command holding the Lease): no
    # driver, once the bounded wait is over
    silent = _StartingDriver(holder="host/13/boot=1", saved_at=None)
    started = time.monotonic()
    assert not driver_installed(silent, starting_s=0.6)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.6
    assert silent.reads >= 2
