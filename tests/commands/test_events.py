"""`project_events(loaded)`: the events of the project's trail, oldest first, picked by
`since` and `rollout`; with `follow`, those recorded later too, until `stop()`. (The
printing, exit codes and a follower's Ctrl-C are in tests/cli/test_events.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.commands.audit import settings
from swiftdeploy.commands.events import project_events
from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import LoadedManifest
from tests.support.trails import ROLLED_BACK, write_synthetic_trail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedManifest:
    """init's manifest (service `demo`, three steps)."""
    return init_manifest(tmp_path)


def _step(log: AuditLog, index: int) -> None:
    log.append("transition", event="step", rollout_id="r1", phase_before="progressing",
               phase_after="progressing", step_index=index, canary_weight=10 * (index + 1),
               reason=f"step {index + 1}")  # fmt: skip


def test_since_and_rollout_pick(loaded: LoadedManifest) -> None:
    write_synthetic_trail(settings(loaded).path)
    every = list(project_events(loaded))
    assert len(every) == 10  # two rollouts: 6 changes promoted, 4 rolled back
    assert every[1]["data"]["steps"] == 3  # init's steps, from the manifest
    after = every[4]["seq"]
    assert list(project_events(loaded, since=str(after))) == every[5:]
    assert list(project_events(loaded, since=every[8]["time"])) == every[8:]
    assert list(project_events(loaded, since="1m")) == []  # the trail is from 2025
    assert list(project_events(loaded, since="1m30s")) == []  # a compound duration too
    assert list(project_events(loaded, since="100000h30m")) == every
    assert list(project_events(loaded, since="100000h")) == every
    only = list(project_events(loaded, rollout=ROLLED_BACK))
    assert [e["seq"] for e in only] == [e["seq"] for e in every[6:]]


def test_no_trail_yet_is_no_events(loaded: LoadedManifest) -> None:
    assert list(project_events(loaded)) == []


@pytest.mark.parametrize("since", ["yesterday", "10 minutes", "-3"])
def test_a_bad_since_is_refused_at_the_call(loaded: LoadedManifest, since: str) -> None:
    # At the call, not at the first event: the CLI says so before printing anything
    with pytest.raises(BadInputError) as refused:
        project_events(loaded, since=since)
    assert refused.value.message.startswith(f"--since {since!r} is neither")
    assert "--since 10m" in str(refused.value.hint)


def test_follow_gives_what_is_recorded_later_until_stopped(loaded: LoadedManifest) -> None:
    log = AuditLog(settings(loaded).path, 10_000_000, [], command=["swiftdeploy", "test"])
    _step(log, 0)
    stopped = False
    follower = project_events(loaded, follow=True, stop=lambda: stopped)
    assert next(follower)["data"]["step"] == 1
    # When two more steps are recorded while it waits
    _step(log, 1)
    _step(log, 2)
    # Then it gives them, in order
    assert [next(follower)["data"]["step"] for _ in range(2)] == [2, 3]
    # And once stopped, it ends at its next poll
    stopped = True
    assert list(follower) == []
