"""The supervisord runtime with real processes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.proc import ProcessSpec, pid_alive
from swiftdeploy.runtime.supervisor import ProcessSupervisor
from tests.conftest import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_start_restart_after_crash_stop_and_shutdown(short_tmp: Path) -> None:
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    try:
        first = runtime.start(ProcessSpec(name="sleeper", argv=SLEEPER))
        assert first.running
        assert pid_alive(first.pid)
        # A crashed process is restarted
        os.kill(first.pid, signal.SIGKILL)
        wait_for(
            lambda: (i := runtime.info("sleeper")) is not None and i.running and i.pid != first.pid,
            timeout=10,
        )
        # Others keep running when one is stopped
        other = runtime.start(ProcessSpec(name="other", argv=SLEEPER))
        runtime.stop("sleeper")
        assert [p.name for p in runtime.processes()] == ["other"]
        assert pid_alive(other.pid)
    finally:
        pids = runtime.shutdown()
    assert not any(pid_alive(p) for p in pids)
    assert not runtime.is_running()


def test_a_program_that_cannot_start_is_reported(short_tmp: Path) -> None:
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    try:
        with pytest.raises(RuntimeProcessError, match="did not start"):
            runtime.start(
                ProcessSpec(name="crasher", argv=[sys.executable, "-c", "raise SystemExit(3)"]),
                timeout=4,
            )
    finally:
        runtime.shutdown()


def test_env_values_with_quotes_and_percent_reach_the_process(short_tmp: Path) -> None:
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    out = short_tmp / "env.txt"
    script = (
        f"import os; open({str(out)!r}, 'w').write(os.environ['ODD']); import time; time.sleep(600)"
    )
    try:
        runtime.start(
            ProcessSpec(name="env", argv=[sys.executable, "-c", script], env={"ODD": 'a "b" 50% c'})
        )
        wait_for(out.exists, timeout=10)
        assert out.read_text() == 'a "b" 50% c'
    finally:
        runtime.shutdown()


def test_socket_is_private(short_tmp: Path) -> None:
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    try:
        runtime.ensure_running()
        assert (runtime.socket.stat().st_mode & 0o777) == 0o700
        assert (runtime.state_dir.stat().st_mode & 0o777) == 0o700
    finally:
        runtime.shutdown()


@pytest.mark.parametrize("name", ["a]\n[program:x", "../up", "", "-flag", "x" * 82, "a b"])
def test_names_that_could_escape_the_supervisord_config_are_refused(
    short_tmp: Path, name: str
) -> None:
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    try:
        with pytest.raises(RuntimeProcessError, match="refusing process name"):
            runtime.start(ProcessSpec(name=name, argv=SLEEPER))
        assert not runtime.is_running(), "nothing starts for a refused name"
    finally:
        runtime.shutdown()


def test_a_hidden_name_from_the_shell_that_started_supervisord_does_not_reach_the_process(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given supervisord started from a shell that exported a notifications secret
    monkeypatch.setenv("SD_SIGNING_KEY_TEST", "s3cr3t")
    runtime = ProcessSupervisor(short_tmp / ".swiftdeploy")
    out = short_tmp / "env.txt"
    script = (
        f"import os; open({str(out)!r}, 'w').write(os.environ.get('SD_SIGNING_KEY_TEST', '-'));"
        " import time; time.sleep(600)"
    )
    try:
        runtime.ensure_running()
        # When a replica's program hides that name
        runtime.start(
            ProcessSpec(
                name="replica",
                argv=[sys.executable, "-c", script],
                hidden_env=("SD_SIGNING_KEY_TEST",),
            )
        )
        # Then the process does not see it
        wait_for(out.exists, timeout=10)
        assert out.read_text() == "-"
    finally:
        runtime.shutdown()
