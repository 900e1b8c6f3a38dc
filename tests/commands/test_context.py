"""The command context: the gates in their one order (preflight -> lock -> the
infrastructure gate -> the verb), and everything it opened closed however the verb
ends, on init's local project (nothing is started: the verbs here only look)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.commands import context as context_module
from swiftdeploy.commands import gate
from swiftdeploy.commands.context import CommandContext, command_context
from swiftdeploy.commands.init import init_project
from swiftdeploy.errors import BadInputError, LockedError, PolicyDeniedError
from swiftdeploy.hostfacts import HostFacts
from swiftdeploy.lock import lock_holder, project_lock
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.ports import free_port

QUIET = HostFacts(
    disk_free_gb=80.0, load_per_core=0.4, mem_available_pct=60.0, cpu_count=2, state_dir="/x"
)


class VerbFailed(Exception):
    pass


@pytest.fixture
def loaded(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedManifest:
    # short: the supervisor's socket lives in the state dir, and pytest's tmp_path
    # (pytest-NNN/popen-gwN/<30 characters of the test's name>) is one byte too long
    init_project(short_tmp, f"127.0.0.1:{free_port()}", force=False)
    monkeypatch.setattr(gate, "measure_host", lambda state_dir: QUIET)
    return load_manifest(short_tmp / "swiftdeploy.yaml")


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of what the contexts closed, in order (the policy engines and the
    fleets; each still closes for real)."""
    seen: list[str] = []

    def spied(name: str, close: Callable[[], None]) -> Callable[[], None]:
        def closing() -> None:
            seen.append(name)
            close()

        return closing

    build = context_module.policy_engine

    def policy_engine(fleet: Any) -> PolicyEngine:
        engine = build(fleet)
        monkeypatch.setattr(engine, "close", spied("policy", engine.close))
        return engine

    monkeypatch.setattr(context_module, "policy_engine", policy_engine)
    open_fleet = context_module.open_fleet

    def fleet_of(loaded: LoadedManifest, progress: Any) -> Any:
        fleet = open_fleet(loaded, progress)
        monkeypatch.setattr(fleet, "close", spied("fleet", fleet.close))
        return fleet

    monkeypatch.setattr(context_module, "open_fleet", fleet_of)
    return seen


def fail_in(loaded: LoadedManifest, opened: list[Any]) -> None:
    """A verb that fails once it has the fleet, the policy engine and a rollout engine."""
    with command_context(loaded, lambda _: None, lock=True, gate="canary") as context:
        opened += [context.fleet, context.policy(), context.engine()]
        raise VerbFailed


def trail(loaded: LoadedManifest) -> list[dict[str, Any]]:
    path = context_module.audit_settings(loaded).path
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def kinds(loaded: LoadedManifest) -> list[str]:
    return [r["kind"] for r in trail(loaded)]


def test_the_gates_run_in_their_order_before_the_verb(loaded: LoadedManifest) -> None:
    warned_under: list[int | None] = []

    def warn(lines: list[str]) -> None:
        warned_under.append(lock_holder(loaded.state_dir))  # preflight: before the lock

    # When a mutating verb runs through every gate
    with command_context(
        loaded, lambda _: None, preflight=True, lock=True, gate="deploy", warn=warn
    ) as context:
        # Then preflight ran with no lock held, the lock is held now, and the command was
        # recorded before the gate's decision
        assert warned_under == [None]
        assert lock_holder(loaded.state_dir) == os.getpid()
        records = trail(loaded)
        assert [r["kind"] for r in records] == ["command", "decision"]
        assert records[1]["action"] == "deploy"
        assert isinstance(context, CommandContext)
    # And after it, the lock is free
    assert lock_holder(loaded.state_dir) is None


def test_a_failing_verb_closes_everything_and_releases_the_lock(
    loaded: LoadedManifest, closed: list[str]
) -> None:
    opened: list[Any] = []
    with pytest.raises(VerbFailed):
        fail_in(loaded, opened)
    fleet, policy, engine = opened
    # the policy engine (asked by the gate, shared with the rollout engine) and the fleet
    # are closed, the last opened first; the fleet's clients are closed
    assert closed == ["policy", "fleet"]
    assert fleet.http.is_closed
    assert engine.policy is policy  # one policy engine per command
    assert lock_holder(loaded.state_dir) is None
    # and the project can be locked again at once
    with command_context(loaded, lambda _: None, lock=True):
        assert lock_holder(loaded.state_dir) == os.getpid()


def test_closing_twice_closes_once(loaded: LoadedManifest, closed: list[str]) -> None:
    with command_context(loaded, lambda _: None) as context:
        context.policy()
    context.close()  # again: nothing left to close but the fleet, whose close is idempotent
    assert closed == ["policy", "fleet", "fleet"]
    assert context.fleet.http.is_closed


def test_a_refused_gate_leaves_nothing_half_done(
    loaded: LoadedManifest, closed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a host the infrastructure policy refuses
    monkeypatch.setattr(
        gate, "measure_host", lambda state_dir: QUIET.model_copy(update={"load_per_core": 9.0})
    )
    ran: list[bool] = []
    # When a verb is asked for
    with (
        pytest.raises(PolicyDeniedError, match="infrastructure policy denied deploy"),
        command_context(loaded, lambda _: None, lock=True, gate="deploy"),
    ):
        ran.append(True)
    # Then the verb never ran, the refusal is recorded after the command, everything
    # opened is closed, the lock is free, and nothing was started
    assert ran == []
    records = trail(loaded)
    assert [r["kind"] for r in records] == ["command", "decision"]
    assert records[1]["action"] == "denied"
    assert closed == ["policy", "fleet"]
    assert lock_holder(loaded.state_dir) is None
    assert not (loaded.state_dir / "supervisord.pid").exists()
    assert not (loaded.state_dir / "supervisor.sock").exists()
    assert context_module.state_store(loaded).load().replicas == ()


def test_a_failing_preflight_takes_no_lock_and_records_nothing(
    loaded: LoadedManifest, closed: list[str]
) -> None:
    # Given the manifest's listener taken by another process
    traffic = loaded.manifest.traffic
    with socket.socket() as taken:
        taken.bind((traffic.host, traffic.port))
        taken.listen()
        # When a verb runs its preflight, then it is refused before anything else
        with (
            pytest.raises(BadInputError, match="already in use"),
            command_context(loaded, lambda _: None, preflight=True, lock=True, gate="deploy"),
        ):
            pytest.fail("the verb ran")
    assert kinds(loaded) == []
    assert closed == []  # no fleet was built
    assert lock_holder(loaded.state_dir) is None


def test_a_held_lock_refuses_before_the_command_is_recorded(
    loaded: LoadedManifest, closed: list[str]
) -> None:
    # Given another command holding the project (its own open of the lock file)
    with (
        project_lock(loaded.state_dir),
        pytest.raises(LockedError, match="rollout in progress"),
        command_context(loaded, lambda _: None, lock=True, gate="deploy"),
    ):
        pytest.fail("the verb ran")
    # Then nothing was recorded, built or asked
    assert kinds(loaded) == []
    assert closed == []


def test_reading_takes_no_lock_and_records_nothing(loaded: LoadedManifest) -> None:
    # a rollout holds the project: `status` still reads
    with project_lock(loaded.state_dir), command_context(loaded, lambda _: None) as context:
        assert context.fleet.store.load().stable_version is None
    assert kinds(loaded) == []


def test_the_driver_holds_the_lock_without_a_command_record(loaded: LoadedManifest) -> None:
    with command_context(loaded, lambda _: None, lock=True, record_command=False):
        assert lock_holder(loaded.state_dir) == os.getpid()
    assert kinds(loaded) == []


def test_the_gate_is_only_asked_under_the_lock(loaded: LoadedManifest) -> None:
    with (
        pytest.raises(ValueError, match="under the project's lock"),
        command_context(loaded, lambda _: None, gate="deploy"),
    ):
        pytest.fail("the verb ran")
