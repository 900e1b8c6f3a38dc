"""The command line's conventions, one test each: `-f` before or after the command and
SWIFTDEPLOY_MANIFEST (command line > environment > default); `deploy VERSION`; help with
an example per command, no `<bool>` and no line broken where the source was; "did you
mean" for a misspelt manifest key; `init --runtime`; compound durations in options;
NO_COLOR with no escape at all; no hard wrap when the output is not a terminal."""

from __future__ import annotations

import inspect
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from swiftdeploy.cli import app, run
from swiftdeploy.cli.helptext import EXAMPLES, polished
from swiftdeploy.manifest import load_manifest

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def _commands(command: Any, path: str = "") -> list[tuple[str, Any]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(path, command)]
    return [
        found for name, sub in subs.items() for found in _commands(sub, f"{path} {name}".strip())
    ]


COMMANDS = _commands(polished(app))


def _missing(tmp_path: Path, name: str) -> str:
    return str(tmp_path / name)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_f_is_taken_before_the_command_as_well_as_after(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _missing(tmp_path, "before.yaml")
    after = _missing(tmp_path, "after.yaml")
    assert run(["-f", before, "validate"]) == 2
    assert f"{before}: manifest not found" in _error(capsys)
    assert run(["--file", before, "audit", "why"]) == 2  # a sub-app's command too
    assert f"{before}: manifest not found" in _error(capsys)
    assert run(["validate", "--file", after]) == 2
    assert f"{after}: manifest not found" in _error(capsys)
    # both: the command's own wins
    assert run(["-f", before, "validate", "-f", after]) == 2
    assert f"{after}: manifest not found" in _error(capsys)


def test_the_manifest_comes_from_the_command_line_then_the_environment_then_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["validate"]) == 2
    assert f"{tmp_path / 'swiftdeploy.yaml'}: manifest not found" in _error(capsys)
    from_env = _missing(tmp_path, "env.yaml")
    monkeypatch.setenv("SWIFTDEPLOY_MANIFEST", from_env)
    assert run(["status"]) == 2
    assert f"{from_env}: manifest not found" in _error(capsys)
    given = _missing(tmp_path, "given.yaml")
    assert run(["-f", given, "status"]) == 2
    assert f"{given}: manifest not found" in _error(capsys)
    assert run(["status", "-f", given]) == 2
    assert f"{given}: manifest not found" in _error(capsys)


def test_deploy_takes_its_version_as_an_argument_and_the_old_option_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = dict(COMMANDS)["deploy"]
    assert deploy.make_context("deploy", ["v7"]).params["version"] == "v7"
    # the global --version is still the program's
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.startswith("swiftdeploy ")
    # the earlier spelling still parses, and says what to write instead
    assert run(["deploy", "--version", "v7", "-f", _missing(tmp_path, "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert "warning: `deploy --version V` is deprecated; write `deploy V`" in err
    assert "manifest not found" in err


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_has_an_example_that_parses(path: str, command: Any) -> None:
    assert command.epilog == f"Example: {EXAMPLES[path]}"
    argv = shlex.split(EXAMPLES[path])
    assert argv[0] == "swiftdeploy"
    words = argv[1 : argv.index(">")] if ">" in argv else argv[1:]  # the shell's redirection
    current = polished(app)
    context = current.make_context("swiftdeploy", words)
    while getattr(current, "commands", None):
        # a group keeps the command's name and its words (click's protected args)
        rest = [*getattr(context, "_protected_args", []), *context.args]
        name, current, rest = current.resolve_command(context, rest)
        context = current.make_context(name, rest, parent=context)
    rest = list(context.args)
    assert not rest, f"{path}: {rest} left unparsed"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_help_shows_flags_bare_and_paragraphs_whole(
    path: str,
    command: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough that only the source could break
    assert run([*path.split(), "--help"]) == 0
    shown = capsys.readouterr().out
    assert "<bool>" not in shown
    assert f"Example: {EXAMPLES[path]}" in shown
    lines = [" ".join(line.split()) for line in shown.splitlines()]
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        words = " ".join(paragraph.split())
        assert any(words in line for line in lines), f"{path}: {words!r} broken across lines"


def test_a_misspelt_key_gets_did_you_mean_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path)]) == 0
    manifest = tmp_path / "swiftdeploy.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("      min_duration: 30s", "      min_durration: 30s"))
    assert run(["validate", "-f", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (
        "unknown key 'strategy.canary.analysis.min_durration';"
        " did you mean 'strategy.canary.analysis.min_duration'?"
    ) in err
    # a typo of a required key is named as the typo, not as the key missing
    manifest.write_text(text.replace("      - weight: 25", "      - wieght: 25"))
    assert run(["validate", "-f", str(manifest)]) == 2
    assert "did you mean 'strategy.canary.steps[1].weight'?" in capsys.readouterr().err


def test_nothing_close_gets_no_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path)]) == 0
    manifest = tmp_path / "swiftdeploy.yaml"
    manifest.write_text(manifest.read_text() + "\nzzz: 1\n")
    assert run(["validate", "-f", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'zzz'" in err
    assert "did you mean" not in err


@pytest.mark.parametrize("runtime", ["local", "docker", "kubernetes"])
def test_init_writes_a_manifest_for_the_runtime_asked(
    runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path), "--runtime", runtime]) == 0
    manifest = tmp_path / "swiftdeploy.yaml"
    assert yaml.safe_load(manifest.read_text())["runtime"] == runtime
    assert load_manifest(manifest).manifest.runtime == runtime


def test_init_refuses_an_unknown_runtime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["init", str(tmp_path), "--runtime", "nomad"]) == 2
    assert capsys.readouterr().err == (  # the CLI's words, not pydantic's "Value error, "
        "swiftdeploy: error: Invalid value for '--runtime': 'nomad' is not one of local,"
        " docker, kubernetes. (see `swiftdeploy init --help`)\n"
    )
    assert not (tmp_path / "swiftdeploy.yaml").exists()


def test_init_writes_the_manifest_f_or_the_environment_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["-f", "custom.yaml", "init"]) == 0
    assert load_manifest(tmp_path / "custom.yaml").manifest.runtime == "local"
    assert (tmp_path / "policies" / "canary.rego").is_file()  # beside it
    assert not (tmp_path / "swiftdeploy.yaml").exists()
    monkeypatch.setenv("SWIFTDEPLOY_MANIFEST", "env.yaml")
    assert run(["init", "shop"]) == 0  # a relative name is taken inside DIRECTORY
    assert (tmp_path / "shop" / "env.yaml").is_file()
    assert run(["init", "given", "--file", "mine.yaml"]) == 0  # the command line wins
    assert sorted(p.name for p in (tmp_path / "given").iterdir()) == ["mine.yaml", "policies"]
    capsys.readouterr()
    # an absolute manifest and a DIRECTORY name two places: refused, nothing written
    assert run(["init", "other", "-f", str(tmp_path / "abs.yaml")]) == 2
    assert "init got both a DIRECTORY (other) and the manifest" in _error(capsys)
    assert not (tmp_path / "other").exists()
    assert not (tmp_path / "abs.yaml").exists()


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("base.yaml", "base.yaml is a file, not a directory (init takes the project's DIRECTORY"),
        ("/proc/x", "cannot create the directory /proc/x (No such file or directory)"),
    ],
)
def test_init_into_a_place_it_cannot_write_is_one_line_and_writes_nothing(
    target: str,
    said: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("service: {}\n")
    assert run(["init", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"swiftdeploy: error: {said}")
    assert err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.yaml"]


def test_positionals_are_named_in_capitals_the_same_way_everywhere(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    shown = {}
    for path in ("weight", "canary", "rollout", "deploy", "demo-image"):
        assert run([path, "--help"]) == 0
        shown[path] = capsys.readouterr().out
    assert "Usage: swiftdeploy weight [OPTIONS] PERCENT " in shown["weight"]
    assert "Usage: swiftdeploy canary [OPTIONS] VERSION " in shown["canary"]
    assert "Usage: swiftdeploy rollout [OPTIONS] VERSION " in shown["rollout"]
    assert "Usage: swiftdeploy deploy [OPTIONS] [VERSION] " in shown["deploy"]
    assert "Usage: swiftdeploy demo-image [OPTIONS] [TAGS]..." in shown["demo-image"]
    for text in shown.values():
        arguments = text.split("Arguments")[1].split("Options")[0]
        assert "{" not in text, text
        assert "<" not in arguments, text
    for path, command in COMMANDS:
        for param in command.params:
            if param.param_type_name == "argument":
                assert param.metavar == param.name.upper(), path


def test_deploy_version_without_its_value_points_to_the_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["deploy", "--version"]) == 2
    assert capsys.readouterr().err == (
        "swiftdeploy: error: Option '--version' requires an argument; the version is an"
        " argument: `swiftdeploy deploy VERSION` (see `swiftdeploy deploy --help`)\n"
    )


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["metrics", "--window", "1m30s"], "window"),
        (["status", "--interval", "1m30s"], "interval"),
        (["chaos", "--duration-s", "1m30s"], "duration_s"),
        (["chaos", "--duration", "1m30s"], "duration_s"),
    ],
)
def test_an_option_takes_a_compound_duration(
    argv: list[str], name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dict(COMMANDS)[argv[0]].make_context(argv[0], argv[1:]).params[name] == 90.0
    # parsed: the command goes on to look for its manifest
    assert run([*argv, "-f", _missing(tmp_path, "m.yaml")]) == 2
    assert "manifest not found" in _error(capsys)


def test_duration_options_keep_plain_seconds_and_refuse_what_is_no_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    chaos = dict(COMMANDS)["chaos"]
    assert chaos.make_context("chaos", ["--duration-s", "60"]).params["duration_s"] == 60.0
    assert run(["chaos", "--duration-s", "soon"]) == 2
    assert "Invalid value for '--duration' / '--duration-s': 'soon' is not a" in _error(capsys)
    assert run(["status", "--interval", "50ms"]) == 2
    assert "Invalid value for '--interval': 50ms is under 100 ms" in _error(capsys)


def _piped(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        check=False,
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_color_leaves_no_escape_at_all(tmp_path: Path) -> None:
    # FORCE_COLOR: rich styles as for a terminal although the output is a pipe
    for argv in ([SWIFTDEPLOY, "deploy", "--help"], [SWIFTDEPLOY, "doctor"]):
        styled = _piped(argv, {"FORCE_COLOR": "1"}, tmp_path)
        assert "\x1b[" in styled.stdout  # bold headers and options
        plain = _piped(argv, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, tmp_path)
        assert plain.stdout.strip()
        assert "\x1b" not in plain.stdout + plain.stderr, argv


def test_a_long_line_stays_one_line_when_not_a_terminal(tmp_path: Path) -> None:
    words = " ".join(f"word{n}" for n in range(80))  # about 500 characters
    script = (
        "from swiftdeploy.cli.common import err, out\n"
        f"out.print({words!r}, markup=False)\nerr.print({words!r}, markup=False)\n"
    )
    shown = _piped([sys.executable, "-c", script], {"COLUMNS": ""}, tmp_path)
    assert shown.stdout == words + "\n"
    assert shown.stderr == words + "\n"
