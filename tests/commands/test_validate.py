"""`validate` says which secret refs of notifications and hooks cannot be read here:
the field, the variable, and what it will cost, without failing the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.cli import run
from swiftdeploy.notify.secrets import unresolved

SINKS = [
    {"name": "oncall", "kind": "slack", "url": {"env": "SD_TEST_SLACK_URL"}},
    {"name": "log", "kind": "webhook", "url": "https://events.internal/x",
     "headers": {"Authorization": {"env": "SD_TEST_LOG_TOKEN"}}},
]  # fmt: skip


def test_validate_warns_for_each_unset_variable_and_names_its_field(
    short_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local manifest whose signing key is set here and two secrets that are not
    monkeypatch.setenv("SD_TEST_KEY", "k" * 32)
    monkeypatch.delenv("SD_TEST_SLACK_URL", raising=False)
    monkeypatch.setenv("SD_TEST_LOG_TOKEN", "")
    notifications = {"signing_key": {"env": "SD_TEST_KEY"}, "sinks": SINKS}
    loaded = init_manifest(short_tmp, notifications=notifications)
    # When it is validated
    code = run(["validate", "-f", str(loaded.path)])
    # Then it is valid (exit 0), with one warning per secret it cannot read
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    secret_lines = [line for line in warnings if "environment variable" in line]
    assert len(secret_lines) == 2, warnings
    url_line = loaded.lines["notifications.sinks[0].url"]
    assert secret_lines[0] == (
        f"warning: {loaded.path}:{url_line}: notifications.sinks[0].url: the environment"
        " variable SD_TEST_SLACK_URL is not set; export it in the shell that runs"
        " `swiftdeploy rollout` (without it `swiftdeploy rollout` refuses to start: exit 2)"
    )
    assert (
        "notifications.sinks[1].headers.Authorization: the environment variable"
        in (secret_lines[1])
    )
    assert "SD_TEST_LOG_TOKEN is empty" in secret_lines[1]
    assert "SD_TEST_KEY" not in captured.err


def test_on_kubernetes_an_environment_variable_is_the_driver_pods(tmp_path: Path) -> None:
    # Given a kubernetes manifest whose sink's URL is an environment variable
    loaded = init_manifest(
        tmp_path,
        runtime="kubernetes",
        **{"service.image": "demo:{version}", "metrics.provider": "prometheus",
           "metrics.prometheus.url": "http://prometheus:9090"},
        notifications={"signing_key": {"env": "SD_TEST_KEY"}, "sinks": SINKS[:1]},
    )  # fmt: skip
    # When what cannot be read is listed, both variables set in this shell
    problems = unresolved(loaded, {"SD_TEST_KEY": "k", "SD_TEST_SLACK_URL": "https://h/x"})
    # Then each says the driver's pod reads it, not this shell, and how to give it one
    assert len(problems) == 2, problems
    assert (
        "notifications.sinks[0].url: the environment variable SD_TEST_SLACK_URL is not set"
        " in the driver's pod" in problems[1]
    ), problems
    assert all("{secret: NAME, key: KEY}" in problem for problem in problems)
