"""The driver's secrets come from the CLI that starts it, not from supervisord's
environment captured at `deploy`: a variable unset since stops the rollout's start in
one line (exit 2); a changed one is the one used; the launch file that carries the
driver's env is 0600 and goes when the driver exits."""

from __future__ import annotations

import stat

import pytest
import yaml
from bench.support.project import Project, fast_rollout
from bench.support.receivers import Receiver

from tests.conftest import driver_info, wait_for

pytestmark = pytest.mark.e2e

KEY = "driver-env-signing-key-0123456789"
URL_ENV = "SD_TEST_DRIVER_ENV_URL"


def test_the_driver_s_secrets_are_the_starting_cli_s(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_rollout(project)
    monkeypatch.setenv("SD_SIGNING_KEY", KEY)
    with Receiver("slack", KEY.encode()) as old, Receiver("slack", KEY.encode()) as new:
        # Given a sink whose URL is a variable, set in the shell that deployed (the
        # project's supervisord started with it)
        manifest = yaml.safe_load(project.manifest.read_text())
        manifest["notifications"] = {
            "signing_key": {"env": "SD_SIGNING_KEY"},
            "backoff": "50ms",
            "sinks": [{"name": "oncall", "kind": "slack", "url": {"env": URL_ENV}}],
        }
        project.manifest.write_text(yaml.safe_dump(manifest))
        monkeypatch.setenv(URL_ENV, old.url)
        project.cli("deploy")
        # When a rollout is started from a shell where it is unset
        monkeypatch.delenv(URL_ENV)
        refused = project.cli("rollout", "v2", check=False)
        # Then it is refused in one line naming the field, exit 2, and no driver started
        assert refused.returncode == 2, refused.stdout + refused.stderr
        said = refused.stderr.strip().splitlines()
        assert len(said) == 1, said
        assert (
            f"notifications.sinks[0].url: the environment variable {URL_ENV} is not set;"
            " export it in the shell that runs `swiftdeploy rollout`" in said[0]
        )
        assert driver_info(project) is None
        # When it is started from a shell where the URL changed
        monkeypatch.setenv(URL_ENV, new.url)
        project.cli("rollout", "v2", "--detach")
        # Then the new URL gets the rollout's events, the old one nothing
        wait_for(lambda: new.accepted, timeout=60, what="a delivery to the new URL")
        assert old.deliveries == []
        # And the driver's launch file, which holds its env, is the owner's alone while it
        # runs, and is gone once the driver has exited (not only at teardown)
        launch_file = project.state_dir / "supervisor.d" / "driver.json"
        assert stat.S_IMODE(launch_file.stat().st_mode) == 0o600
        project.cli("abort")
        wait_for(lambda: (driver_info(project) or {}).get("exited"), timeout=120,
                 what="the driver's exit")  # fmt: skip
        wait_for(lambda: not launch_file.exists(), timeout=30, what="the launch file removed")
        assert old.deliveries == []
