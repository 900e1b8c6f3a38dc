"""`rollout --events-file FILE` (cli/release.py): the rollout's events written to a file
while it runs, for CI systems that read a file rather than stdout; a FILE it cannot
write is refused before anything starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.support.project import SWIFTDEPLOY, Project, fast_rollout, tune
from jsonschema import Draft202012Validator

from swiftdeploy.review.events import schema_text
from tests.conftest import finish_outputs, wait_for

VALIDATOR = Draft202012Validator(
    json.loads(schema_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
)
TERMINAL = {"rollout.promoted", "rollout.rolled-back", "rollout.held"}


def kind(event: dict[str, Any]) -> str:
    """`rollout.step` for dev.swiftdeploy.rollout.step.v1."""
    return str(event["type"]).removeprefix("dev.swiftdeploy.").removesuffix(".v1")


def events_in(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rollout_to_file(project: Project, version: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SWIFTDEPLOY, "rollout", version, "--wait", "--events-file", str(path),
         "-f", str(project.manifest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root,
    )  # fmt: skip


@pytest.mark.e2e
def test_events_file_holds_the_rollouts_events_as_it_runs(project: Project, tmp_path: Path) -> None:
    # Given a deployed project (one short step), and a file from an earlier run at the path
    fast_rollout(project, steps=[{"weight": 50}])
    # a step that lasts, so the rollout still runs when its first event is read however
    # busy the machine, and cannot end held (its events would differ)
    tune(project, min_duration="15s", max_duration="120s")
    # and, as this test is about the file, not detection, a latency harm a CPU-starved
    # machine cannot fake (+100 ms rolled this healthy canary back at load 11 per core)
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["policy"]["detect"]["latency"] = "+250ms"
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("deploy")
    path = tmp_path / "events.jsonl"
    path.write_text("an earlier run's line\n")
    # When v2 rolls out with --wait --events-file
    rollout = rollout_to_file(project, "v2", path)
    # Then the file has the rollout's first event while it still runs (its steps take
    # seconds after it)
    wait_for(lambda: "rollout.started" in path.read_text(), timeout=60, what="the first event")
    assert rollout.poll() is None
    output, errors = finish_outputs(rollout, timeout=240)
    assert rollout.returncode == 0, errors
    # and once it ends: only its events, each line one event valid in the published
    # schema, every state change once and in order, the promotion the last of them
    events = events_in(path)
    for event in events:
        VALIDATOR.validate(event)
    assert len({e["id"] for e in events}) == len(events)
    assert {e["subject"] for e in events} == {project.state()["rollout_id"]}
    changes = [kind(e) for e in events if kind(e).startswith("rollout.")]
    assert changes == ["rollout.started", "rollout.step", "rollout.promoting", "rollout.promoted"]
    # (the driver's own exit may be recorded after it: it is the rollout's too)
    last = max(i for i, e in enumerate(events) if kind(e) in TERMINAL)
    assert all(kind(e).startswith("driver.") for e in events[last + 1 :]), events
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    # The outcome line is on stdout as without the file (stdout holds no event)
    assert "promoted: v2 is stable" in output
    assert "dev.swiftdeploy" not in output


def test_an_events_file_it_cannot_write_is_refused_before_anything_starts(
    project: Project, tmp_path: Path
) -> None:
    # Given a symbolic link where the file should be (one planted in /tmp, say)
    target = tmp_path / "elsewhere"
    link = tmp_path / "events.jsonl"
    link.symlink_to(target)
    for path, why in ((link, "it is a symbolic link"), (tmp_path / "no" / "e", "No such file")):
        # When a rollout is asked to write its events there
        done = project.cli("rollout", "v2", "--events-file", str(path), check=False)
        # Then it is one line with exit 2, and nothing was written or started
        assert done.returncode == 2, done.stderr
        assert f"--events-file {path}: cannot write it: {why}" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not target.exists()
    assert not (project.state_dir / "state.json").exists()


def test_events_file_does_not_go_with_detach(project: Project, tmp_path: Path) -> None:
    done = project.cli(
        "rollout", "v2", "--detach", "--events-file", str(tmp_path / "e"), check=False
    )
    assert done.returncode == 2, done.stderr
    assert "--events-file follows the rollout: it does not go with --detach" in done.stderr
    assert not (tmp_path / "e").exists()


def test_a_new_events_file_is_private(project: Project, tmp_path: Path) -> None:
    # Given nothing deployed: the rollout is refused, after its events file was made
    path = tmp_path / "events.jsonl"
    done = project.cli("rollout", "v2", "--events-file", str(path), check=False)
    assert done.returncode != 0
    # Then the file is there, empty and readable by its owner only (events carry reasons)
    assert path.read_text() == ""
    assert path.stat().st_mode & 0o777 == 0o600
