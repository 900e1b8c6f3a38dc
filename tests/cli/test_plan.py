"""`rollout VERSION --plan`: each replica's load per step, and a warning when a canary
replica would carry more than a stable replica did before the rollout."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from bench.support.project import Project, new_project

from swiftdeploy.cli import run
from swiftdeploy.commands import rollout as rollout_cmd
from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.ports import free_port
from swiftdeploy.rollout.plan import Plan, plan

RPS = 200.0  # the service's traffic the injected plan read


def at_steady_traffic(fleet: Fleet) -> Plan:
    """The plan as `plan_now` makes it, from 200 req/s with no errors in 30 s."""
    reference = Measurement(
        track="stable", provider="nginx", status="ok", elapsed_s=30.0,
        requests=6000, errors=0, error_rate=0.0, rps=RPS, buckets={"0.1": 6000, "+Inf": 6000},
    )  # fmt: skip
    return plan(fleet.loaded.manifest, reference)


@pytest.fixture
def manifest(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """init's manifest; the plan sees steady traffic without anything deployed."""
    assert run(["init", str(short_tmp), "--listen", f"127.0.0.1:{free_port()}"]) == 0
    monkeypatch.setattr(rollout_cmd, "plan_now", at_steady_traffic)
    return short_tmp / "swiftdeploy.yaml"


def replicas(path: Path, stable: int, canary: int) -> None:
    data = yaml.safe_load(path.read_text())
    data["service"]["replicas"] = stable
    data["strategy"]["canary"]["replicas"] = canary
    path.write_text(yaml.safe_dump(data))


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def test_init_defaults_plan_shows_each_replicas_load_and_no_warning(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given init's defaults: steps 10/25/50, 1 canary replica, 2 stable replicas
    assert run(["rollout", "v2", "--plan", "-f", str(manifest)]) == 0
    captured = capsys.readouterr()
    # Then each step shows what one canary and one stable replica carry
    assert "per canary replica" in captured.out
    rows = [line for line in captured.out.splitlines() if "%" in line and "│" in line]
    assert "10% (20.0 req/s)" in rows[0]
    assert "45% (90.0 req/s)" in rows[0]
    assert "50% (100.0 req/s)" in rows[2]  # the canary replica at 50% ...
    assert "each stable replica carries 50% (100.0 req/s)" in captured.out  # ... as before
    # And at 50% on 1 canary replica vs 50% per stable replica before: equal, no warning
    assert warnings_of(captured.err) == []


def test_one_canary_replica_next_to_four_stable_ones_is_warned_at_50_percent(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 4 stable replicas (25% each before the rollout) and 1 canary replica
    replicas(manifest, stable=4, canary=1)
    assert run(["rollout", "v2", "--plan", "-f", str(manifest)]) == 0
    # Then the one step where the canary replica carries more is warned, in one line
    # naming the step, the load ratio and the fix
    assert warnings_of(capsys.readouterr().err) == [
        "warning: step 3 (weight 50%): a canary replica would carry 50% of the traffic"
        " (100.0 req/s), 2x a stable replica's 25% (50.0 req/s) before the rollout"
        " (1 canary vs 4 stable replicas); raise strategy.canary.replicas to 2"
    ]


def test_the_fix_the_warning_names_silences_it(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replicas(manifest, stable=4, canary=2)
    assert run(["rollout", "v2", "--plan", "-f", str(manifest)]) == 0
    assert warnings_of(capsys.readouterr().err) == []


def test_the_json_plan_carries_each_replicas_load_and_the_warnings(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replicas(manifest, stable=4, canary=1)
    assert run(["rollout", "v2", "--plan", "--json", "-f", str(manifest)]) == 0
    found = json.loads(capsys.readouterr().out)
    capacity = found["capacity"]
    assert [step["canary_share_per_replica"] for step in capacity] == [0.1, 0.25, 0.5]
    assert [step["overloaded"] for step in capacity] == [False, False, True]
    assert capacity[2]["canary_rps_per_replica"] == 100.0
    assert capacity[2]["stable_rps_per_replica_before"] == 50.0
    assert capacity[2]["canary_replicas_needed"] == 2
    [line] = found["warnings"]
    assert line.startswith("step 3 (weight 50%): ")


@pytest.mark.e2e
def test_a_deployed_projects_plan_reads_its_traffic_and_warns(short_tmp: Path) -> None:
    # Given init's project deployed, with some traffic in the last window
    project: Project = new_project(short_tmp)
    try:
        project.cli("deploy")
        with httpx.Client(timeout=5.0) as client:
            for _ in range(60):
                client.get(project.url + "/")
        done = project.cli("rollout", "v2", "--plan")
        assert "per canary replica" in done.stdout
        assert warnings_of(done.stderr) == []
        # When service.replicas says 4 (25% each before the rollout)
        project.edit_manifest("replicas: 2               # stable", "replicas: 4  # stable")
        done = project.cli("rollout", "v2", "--plan")
        # Then step 3 is warned, with its rates (the traffic nginx counted)
        [line] = warnings_of(done.stderr)
        assert line.startswith("warning: step 3 (weight 50%): a canary replica would carry 50%")
        assert "req/s), 2x a stable replica's 25% (" in line
        assert line.endswith("raise strategy.canary.replicas to 2")
        assert project.state()["canary_version"] is None  # --plan starts nothing
    finally:
        project.cli("teardown", check=False)


def test_validate_warns_of_an_overloaded_canary_replica_without_failing(
    manifest: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 4 stable replicas and 1 canary replica: at 50% it carries 2x a stable's load
    replicas(manifest, stable=4, canary=1)
    # When the manifest is validated
    assert run(["validate", "-f", str(manifest)]) == 0
    captured = capsys.readouterr()
    # Then it is valid, with one warning naming the step and the fix
    assert "is valid" in captured.out
    [line] = warnings_of(captured.err)
    assert "step 3 (weight 50%)" in line
    assert "raise strategy.canary.replicas to 2" in line
    # And with 2 canary replicas there is none
    replicas(manifest, stable=4, canary=2)
    assert run(["validate", "-f", str(manifest)]) == 0
    assert warnings_of(capsys.readouterr().err) == []
