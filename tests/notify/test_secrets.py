"""Secrets are read once from the environment: a missing one is one clear error
naming the variable (never a value); values are redacted from text."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.errors import BadInputError
from swiftdeploy.notify.secrets import resolve_secrets


def test_a_missing_environment_variable_is_one_clear_error(tmp_path: Path) -> None:
    sinks = [{"name": "oncall", "kind": "slack", "url": {"env": "SD_SLACK_URL"}}]
    loaded = init_manifest(tmp_path, notifications={"signing_key": {"env": "SD_KEY"},
                                                    "sinks": sinks})  # fmt: skip
    with pytest.raises(BadInputError) as caught:
        resolve_secrets(loaded, {"SD_KEY": "k"})
    # Then exit 2 (bad input), the field and its line named, and what to do in plain words
    assert caught.value.exit_code == 2
    line = loaded.lines["notifications.sinks[0].url"]
    assert caught.value.one_line() == (
        f"{loaded.path}:{line}: notifications.sinks[0].url: the environment variable"
        " SD_SLACK_URL is not set; export it in the shell that runs `swiftdeploy rollout`"
    )
    secrets = resolve_secrets(loaded, {"SD_KEY": "k" * 20, "SD_SLACK_URL": "https://h/s3cr3t"})
    url = loaded.manifest.notifications.sinks[0].url
    assert secrets.value(url) == "https://h/s3cr3t"
    assert secrets.redact("POST https://h/s3cr3t failed") == "POST <secret> failed"
