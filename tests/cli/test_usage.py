"""A new user's first minutes: every usage error is one line with exit 2 and no crash
log, `--version` answers, and completion works for bash, zsh and fish."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from swiftdeploy.cli import run

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Crash logs would land in TMPDIR: a fresh one shows whether any was written."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--bogus"], "No such option: --bogus"),  # unknown option
        (["status", "--bogus"], "No such option: --bogus"),
        (["canary"], "Missing argument 'VERSION'"),  # missing argument
        (["weight", "abc"], "Invalid value for 'PERCENT'"),  # bad type
        (["chaos", "--error-rate", "x"], "Invalid value for '--error-rate'"),
        (["weight", "150"], "less than or equal to 100"),  # out of range
        (["chaos", "--error-rate", "1.5"], "Invalid value for '--error-rate'"),
        (["metrics", "--window", "soon"], "is not a duration"),
        (["metrics", "--track", "blue"], "Invalid value for '--track'"),
        (["frobnicate"], "No such command 'frobnicate'"),  # unknown command
        (["audit", "frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], names: str, capsys: pytest.CaptureFixture[str], private_tmp: Path
) -> None:
    code = run(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("swiftdeploy: error: ")
    assert names in lines[0]
    assert lines[0].endswith("--help`)")
    assert "Traceback" not in captured.err + captured.out
    assert not list(private_tmp.glob("swiftdeploy-crash-*"))


def test_a_usage_error_names_the_command_to_ask_for_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["rollout", "v2", "--nope"]) == 2
    assert "(see `swiftdeploy rollout --help`)" in capsys.readouterr().err


def test_a_bad_version_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for version in ("[/x]", "a/b", "v2\n[program:evil]", ""):
        assert run(["canary", version, "-f", str(tmp_path / "none.yaml")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert "is not a version" in err


def test_version_matches_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"swiftdeploy {metadata.version('swiftdeploy')}\n"


def test_help_is_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "rollout" in out
    assert "--install-completion" in out


@pytest.mark.parametrize(
    ("shell", "env"),
    [
        ("bash", {"COMP_WORDS": "swiftdeploy rol", "COMP_CWORD": "1"}),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "swiftdeploy rol"}),
        ("fish", {"_TYPER_COMPLETE_ARGS": "swiftdeploy rol",
                  "_TYPER_COMPLETE_FISH_ACTION": "get-args"}),
    ],
)  # fmt: skip
def test_completion_answers_each_shell(shell: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [SWIFTDEPLOY],
        env={**os.environ, **env, "_SWIFTDEPLOY_COMPLETE": f"complete_{shell}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rollout" in done.stdout
    assert "rollback" in done.stdout
    assert "deploy" not in done.stdout.split()  # only what starts with "rol"


def test_completion_script_is_printed() -> None:
    # Typer asks the process tree which shell runs it, so run it from a bash (as a
    # user would, not exec'd in its place: hence the `exit`); under `sh -c`, as CI may
    # run the suite, it says "Shell sh not supported".
    done = subprocess.run(
        ["/bin/bash", "-c", f"{shlex.quote(SWIFTDEPLOY)} --show-completion; exit $?"],
        env={**os.environ, "SHELL": "/bin/bash"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "_swiftdeploy_completion" in done.stdout


def test_an_internal_error_goes_to_a_private_crash_log(
    capsys: pytest.CaptureFixture[str], private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("swiftdeploy.manifest.load_manifest", broken)
    assert run(["validate", "-f", str(private_tmp / "x.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    [log] = list(private_tmp.glob("swiftdeploy-crash-*.log"))
    assert str(log) in err
    assert log.stat().st_mode & 0o777 == 0o600
    assert "RuntimeError: a bug" in log.read_text()
