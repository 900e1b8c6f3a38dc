"""`swiftdeploy events`: one JSON event a line from the project's trail (what --since
and --rollout pick: tests/commands/test_events.py); a bad --since is one line and exit
2, --follow goes on until Ctrl-C (exit 0, nothing on stderr) or until its reader goes
away."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import pytest
from bench.support.sim import init_manifest
from jsonschema import Draft202012Validator

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.cli import run
from swiftdeploy.commands.audit import settings
from swiftdeploy.errors import ExitCode
from swiftdeploy.manifest import load_manifest
from swiftdeploy.review.events import schema_text
from tests.conftest import SWIFTDEPLOY, as_from_a_terminal
from tests.support.trails import write_synthetic_trail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")

VALIDATOR = Draft202012Validator(json.loads(schema_text()))
# How long a follower may take to show a record (it polls every 0.25 s); generous,
# for a busy machine.
PATIENCE_S = 30.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with init's manifest (service `demo`, three steps)."""
    init_manifest(tmp_path)
    return tmp_path


def trail(project: Path) -> Path:
    return settings(load_manifest(project / "swiftdeploy.yaml")).path


def events(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    code = run(["events", *args, "-f", str(project / "swiftdeploy.yaml")])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    lines = captured.out.splitlines()
    return [json.loads(line) for line in lines]


def test_every_event_a_line_valid_against_the_schema(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_synthetic_trail(trail(project))
    got = events(project, capsys)
    assert len(got) == 10  # two rollouts: 6 changes promoted, 4 rolled back
    for event in got:
        VALIDATOR.validate(event)
        assert event["source"] == "swiftdeploy://demo"


def test_a_bad_since_is_one_line_and_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    since = "yesterday"  # the bad values: tests/commands/test_events.py
    code = run(["events", "--since", since, "-f", str(project / "swiftdeploy.yaml")])
    captured = capsys.readouterr()
    assert code == ExitCode.BAD_INPUT
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"swiftdeploy: error: --since {since!r} is neither")
    assert "--since 10m" in lines[0]


def _step(log: AuditLog, index: int) -> None:
    log.append("transition", event="step", rollout_id="r1", phase_before="progressing",
               phase_after="progressing", step_index=index, canary_weight=10 * (index + 1),
               reason=f"step {index + 1}")  # fmt: skip


class Lines:
    """A follower's stdout, a line at a time, waiting at most PATIENCE_S for each (read
    from the descriptor: a buffered reader would hide lines already read from select)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def next(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], PATIENCE_S)
            assert ready, f"nothing printed within {PATIENCE_S}s"
            chunk = os.read(self.fd, 65536)
            assert chunk, "the follower ended"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event


def follower(project: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SWIFTDEPLOY, "events", "--follow", *args, "-f", str(project / "swiftdeploy.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=as_from_a_terminal,  # noqa: PLW1509 - signal dispositions only
    )


def test_follow_prints_events_as_they_are_recorded_and_ctrl_c_ends_it(project: Path) -> None:
    log = AuditLog(trail(project), 10_000_000, [], command=["swiftdeploy", "test"])
    _step(log, 0)
    # Given a follower started after the first step
    process = follower(project)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        assert lines.next()["data"]["step"] == 1
        # When two more steps are recorded by another process
        _step(log, 1)
        _step(log, 2)
        # Then it prints them, in order, as they come
        assert [lines.next()["data"]["step"] for _ in range(2)] == [2, 3]
        # And Ctrl-C ends it quietly: a follower has nothing to report
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (0, b"", b"")


def test_a_follower_whose_reader_went_away_ends_quietly(project: Path) -> None:
    log = AuditLog(trail(project), 10_000_000, [], command=["swiftdeploy", "test"])
    _step(log, 0)
    process = follower(project)  # `swiftdeploy events --follow | head -1`
    try:
        assert process.stdout is not None
        assert Lines(process.stdout).next()
        process.stdout.close()
        _step(log, 1)  # the next line meets a closed pipe
        _, err = process.communicate(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, err) == (0, b"")
