"""The launcher supervisord runs: a program's env is merged with supervisord's, but a
launch file marked OWN_ENV (the rollout's driver) gives exactly its own, and is removed
once the program has finished, kept when it died (supervisord restarts it from it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from swiftdeploy.runtime.launch import OWN_ENV


def launch(
    tmp_path: Path, script: str, own: bool, hidden: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The launcher run as supervisord runs it, whose own env has a stale secret."""
    env = {"PATH": os.environ["PATH"], "SD_TEST_URL": "fresh"} | ({OWN_ENV: "1"} if own else {})
    launch_file = tmp_path / "driver.json"
    spec = {"argv": ["sh", "-c", script], "env": env, "hidden_env": list(hidden)}
    launch_file.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "swiftdeploy.runtime.launch", str(launch_file)],
        env={**os.environ, "SD_TEST_URL": "stale", "SD_TEST_GONE": "stale"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done, launch_file


def test_a_program_s_env_is_merged_with_supervisords(tmp_path: Path) -> None:
    done, launch_file = launch(tmp_path, 'echo "$SD_TEST_URL ${SD_TEST_GONE-unset}"', own=False)
    assert (done.returncode, done.stdout) == (0, "fresh stale\n")
    assert launch_file.exists()


def test_a_replica_does_not_inherit_the_manifest_s_secrets_from_supervisord(
    tmp_path: Path,
) -> None:
    # Given supervisord started from a shell that exported a notifications secret
    # When a replica's program is launched with that name hidden
    done, _ = launch(tmp_path, 'echo "$SD_TEST_URL ${SD_TEST_GONE-unset}"', own=False,
                     hidden=("SD_TEST_GONE",))  # fmt: skip
    # Then it does not see it; what its own spec gives it, it still gets
    assert (done.returncode, done.stdout) == (0, "fresh unset\n"), done.stderr


def test_an_own_env_program_gets_exactly_its_env_and_its_file_goes_when_it_finishes(
    tmp_path: Path,
) -> None:
    # When the driver's program runs and finishes
    done, launch_file = launch(
        tmp_path, f'echo "$SD_TEST_URL ${{SD_TEST_GONE-unset}} ${{{OWN_ENV}-none}}"', own=True
    )
    # Then it saw its own env alone (a variable unset since the deploy is unset), and the
    # file that held its env is gone
    assert (done.returncode, done.stdout) == (0, "fresh unset none\n"), done.stderr
    assert not launch_file.exists()


def test_an_own_env_program_that_died_keeps_its_file_and_its_exit(tmp_path: Path) -> None:
    # an error exit: supervisord restarts it, from the same file
    done, launch_file = launch(tmp_path, "exit 3", own=True)
    assert done.returncode == 3
    assert launch_file.exists()
    # killed: the launcher ends by the same signal, so supervisord sees the same death
    done, launch_file = launch(tmp_path, "kill -9 $$", own=True)
    assert done.returncode == -signal.SIGKILL
    assert launch_file.exists()
