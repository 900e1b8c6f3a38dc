"""`run_checks(loaded)`: a line per part the manifest's runtime drives, then the tools
every runtime uses, each saying its version or how to install it; `processes_of(loaded)`:
the project's platform processes. (The docker engine's line: tests/runtime/test_docker.py;
the cluster's: tests/runtime/kubernetes/test_e2e.py.) Without a runtime's client (the plain
install), that runtime is one failing line naming its extra, and the other lines follow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy import __version__
from swiftdeploy.commands.doctor import CLUSTER_ROUTED, processes_of, run_checks
from swiftdeploy.commands.init import init_project
from swiftdeploy.errors import ExitCode
from swiftdeploy.manifest import load_manifest
from swiftdeploy.proc import ProcessSpec, pid_alive
from swiftdeploy.runtime import BACKENDS, backend
from swiftdeploy.runtime.supervisor import ProcessSupervisor
from swiftdeploy.tools import OPA_ENV
from tests.test_registry import _without_extras

LOCAL_PARTS = ["swiftdeploy", "nginx", "nginx lua module", "supervisord", "prometheus", "hey"]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_every_part_of_the_local_runtime_is_found_on_this_machine(tmp_path: Path) -> None:
    # `make setup` installed them all; without a manifest, the default runtime's parts
    for loaded in (None, init_manifest(tmp_path)):
        checks = run_checks(loaded)
        assert [c.part for c in checks] == [*LOCAL_PARTS, "opa"]
        assert all(c.ok for c in checks), checks
    swiftdeploy, nginx, lua, supervisord, prometheus, hey, opa = checks
    assert swiftdeploy.detail == f"{__version__} on Python {sys.version.split()[0]}"
    assert nginx.detail.startswith("nginx version: nginx/")
    assert lua.detail.endswith("ngx_http_lua_module.so")
    assert supervisord.detail[0].isdigit()  # its version
    assert prometheus.detail.startswith("prometheus, version ")
    assert hey.detail.endswith("/hey")
    assert opa.detail.startswith("Version: ")


def test_a_missing_tool_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a PATH with nothing on it, and OPA named where it is not
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv(OPA_ENV, str(empty / "opa"))
    checks = {c.part: c for c in run_checks(None)}
    # Then each tool fails its line, saying what to do
    assert checks["nginx"].detail == "nginx not found on PATH"
    assert checks["hey"].detail == "missing: apt-get install hey"
    assert checks["prometheus"].detail == "prometheus not found on PATH"
    assert checks["opa"].detail.startswith("not found: `make setup` builds it with Go")
    assert not any(checks[part].ok for part in ("nginx", "hey", "prometheus", "opa"))
    # and what runs from this Python still answers
    assert checks["swiftdeploy"].ok
    assert checks["supervisord"].ok


def test_a_cluster_has_no_nginx_and_an_unusable_kubeconfig_is_its_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    init_project(tmp_path, "127.0.0.1:18080", force=True, runtime="kubernetes")
    checks = run_checks(load_manifest(tmp_path / "swiftdeploy.yaml"))
    parts = [c.part for c in checks]
    assert parts == ["swiftdeploy", "kubernetes client", "kubernetes API server", "prometheus",
                     "hey", "opa"]  # fmt: skip
    server = checks[2]
    assert not server.ok
    assert "cannot use the current context of the kubeconfig" in server.detail
    assert "\n" not in server.detail


def test_the_projects_processes_with_their_states(short_tmp: Path) -> None:
    loaded = init_manifest(short_tmp)  # short: supervisord's socket is in its state dir
    assert processes_of(loaded) == []  # nothing started yet
    supervisor = ProcessSupervisor(loaded.state_dir)
    try:
        started = supervisor.start(ProcessSpec(name="sleeper", argv=SLEEPER))
        assert processes_of(loaded) == [{"name": "sleeper", "state": "RUNNING", "pid": started.pid}]
        assert pid_alive(started.pid)
    finally:
        supervisor.shutdown()
    assert processes_of(loaded) == []


@pytest.mark.parametrize(
    ("runtime", "parts"),
    [
        ("docker", ["swiftdeploy", "nginx", "nginx lua module", "docker client"]),
        ("kubernetes", ["swiftdeploy", "kubernetes client"]),  # nginx does not route it
    ],
)
def test_without_its_client_a_runtime_is_one_failing_line_and_the_rest_follow(
    runtime: str, parts: list[str], short_tmp: Path
) -> None:
    # Given a project of a runtime whose client the plain install lacks
    init_project(short_tmp, "127.0.0.1:18080", force=False, runtime=runtime)
    # When doctor runs without the docker and kubernetes clients
    done = _without_extras(short_tmp, "doctor", "--json")
    # Then every line is there, the client's failing with the extra to install
    assert done.returncode == ExitCode.OPERATIONAL, done.stderr
    assert done.stderr == ""
    report = json.loads(done.stdout)
    checks = {c["part"]: c for c in report["checks"]}
    assert list(checks) == [*parts, "prometheus", "hey", "opa"]
    client = checks[f"{runtime} client"]
    assert not client["ok"]
    assert client["detail"] == (
        f"runtime {runtime} needs the {runtime} client, which this install lacks"
        f" (pip install 'swiftdeploy[{runtime}]')"
    )
    assert checks["swiftdeploy"]["ok"]
    assert checks["opa"]["ok"]
    assert report["processes"] == []


@pytest.mark.parametrize("name", BACKENDS.names()[:3])  # the built-ins
def test_the_runtimes_nginx_does_not_route_are_the_ones_doctor_names(name: str) -> None:
    # doctor's list stands in for NGINX_ROUTED when the module cannot load
    assert (name not in CLUSTER_ROUTED) == backend(name).NGINX_ROUTED
