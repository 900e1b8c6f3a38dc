"""Shared fixtures: isolated projects in short temporary directories (unix socket paths
are limited to 108 bytes), a CLI runner, and a deployed project that is always torn down."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from bench.support.project import SWIFTDEPLOY, Project, fast_rollout, new_project, teardown

from swiftdeploy.audit.keys import CONFIG_ENV
from swiftdeploy.demo.app import COLD_START_ENV
from swiftdeploy.lock import lock_holder
from swiftdeploy.proc import pid_alive


def as_from_a_terminal() -> None:
    """In a CLI the tests start, before it runs: Ctrl-C and hangup take their default
    actions, as for a command typed at a terminal. A run started by a non-interactive
    shell in the background (`make test &`) inherits SIGINT ignored, and under `nohup`
    SIGHUP too; an ignored signal stays ignored across exec, so a test's Ctrl-C or
    closed terminal would reach a CLI that cannot hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(scope="session", autouse=True)
def audit_key_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The audit keys of every CLI the suite runs (subprocesses inherit the variable)
    live in the session's temporary directory, never in the real home directory."""
    directory = tmp_path_factory.mktemp("config") / "swiftdeploy"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONFIG_ENV, str(directory))
        yield directory


@pytest.fixture
def fresh_audit_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Audit keys in a directory of this test's own. A MonkeyPatch of its own, so that a
    test's `monkeypatch.undo()` cannot send the keys back to the session's directory."""
    directory = tmp_path_factory.mktemp("config") / "swiftdeploy"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONFIG_ENV, str(directory))
        yield directory


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def project(short_tmp: Path) -> Iterator[Project]:
    """A fresh project from `swiftdeploy init`, torn down after the test whatever happens."""
    proj = new_project(short_tmp)
    try:
        yield proj
    finally:
        teardown(proj)


@pytest.fixture(scope="module")
def deployed() -> Iterator[Project]:
    """One project per test module with v1 deployed (2 replicas); torn down at the end."""
    yield from deployed_project()


def deployed_project(change: Callable[[dict[str, Any]], None] | None = None) -> Iterator[Project]:
    """A new project, its manifest changed by `change`, with v1 deployed; torn down
    after: the body of the fixtures that deploy one."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    project = new_project(root)
    if change is not None:
        manifest = yaml.safe_load(project.manifest.read_text())
        change(manifest)
        project.manifest.write_text(yaml.safe_dump(manifest))
    try:
        project.cli("deploy")
        yield project
    finally:
        teardown(project)
        shutil.rmtree(root, ignore_errors=True)


def slowclient_deployed() -> Iterator[Project]:
    """v1 of tests.support.slowclient's service (one replica, no chaos) deployed behind
    the router, torn down after."""

    def slowclient(manifest: dict[str, Any]) -> None:
        manifest["service"]["command"] = [
            sys.executable, "-m", "tests.support.slowclient", "--port", "{port}",
            "--version", "{version}",
        ]  # fmt: skip
        manifest["service"]["env"] = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        manifest["service"]["chaos"] = False
        manifest["service"]["replicas"] = 1

    yield from deployed_project(slowclient)


def version_counts(
    url: str, requests: int, headers: dict[str, str] | None = None
) -> dict[str, int]:
    """Send `requests` GETs on one keepalive connection; count responses by X-App-Version."""
    counts: dict[str, int] = {}
    with httpx.Client(timeout=5.0) as client:
        for _ in range(requests):
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            version = response.headers["x-app-version"]
            counts[version] = counts.get(version, 0) + 1
    return counts


# --- rollouts -------------------------------------------------------------------


def recorded_events(project: Project, rollout_id: str) -> list[dict[str, Any]]:
    """`swiftdeploy events --rollout ID`, read after the fact."""
    done = project.cli("events", "--rollout", rollout_id)
    return [json.loads(line) for line in done.stdout.splitlines()]


def assert_restart_recorded(project: Project, pid: int) -> None:
    """The current rollout's events tell its driver's restart, the last one by `pid`."""
    rollout_id = project.state()["rollout_id"]
    events = recorded_events(project, rollout_id)
    restarted = [e for e in events if e["type"].endswith("restarted.v1")]
    assert [e["data"]["pid"] for e in restarted][-1:] == [pid], restarted


def canary_served(project: Project) -> int:
    """Requests nginx sent to the canary, from its own counters."""
    text = project.admin_get("/metrics/canary").text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("http_requests_total{")
    )


@pytest.fixture
def rollout_project(project: Project) -> Project:
    """v1 deployed, with fast_rollout's short steps under the rollout's own load."""
    fast_rollout(project)
    project.cli("deploy")
    return project


def cold_start(project: Project, slowdown: str) -> None:
    """Replicas started from now on play a cold start ("300ms/60s": every request 300 ms
    slower for the process's first 60 s): the demo's SWIFTDEPLOY_DEMO_COLD_START."""
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["service"]["env"] = {COLD_START_ENV: slowdown}
    project.manifest.write_text(yaml.safe_dump(manifest))


def start_rollout(project: Project, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SWIFTDEPLOY, "rollout", version, "-f", str(project.manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=project.root,
    )


def wait_for(
    predicate: Any,
    timeout: float = 30,
    what: str = "condition",
    seen: Callable[[], object] | None = None,
) -> None:
    """Until `predicate()` holds; on timeout an AssertionError naming `what`, and what
    `seen()` finds then (where the thing waited for stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    found = f": {seen()}" if seen is not None else ""
    raise AssertionError(f"timed out waiting for {what}{found}")


def canary_ready(project: Project) -> bool:
    try:
        state = project.state()
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return any(r["track"] == "canary" and r["ready"] for r in state["replicas"])


def finish_outputs(process: subprocess.Popen[str], timeout: float = 150) -> tuple[str, str]:
    """Wait for a background CLI; kill it if it outlives the timeout. Its stdout and its
    stderr ("" when it went to stdout)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return stdout, stderr or ""


def finish(rollout: subprocess.Popen[str], timeout: float = 150) -> str:
    """Wait for a background rollout; kill it if it outlives the timeout."""
    return finish_outputs(rollout, timeout)[0]


def finish_while(
    rollout: subprocess.Popen[str], chaos: Callable[[], None], every: float = 0.3
) -> str:
    """Wait for a background rollout while `chaos` runs again and again (every `every`
    seconds, e.g. killing the canary's processes), until the rollout ends."""
    stop = threading.Event()

    def repeat() -> None:
        while not stop.is_set():
            chaos()
            time.sleep(every)

    worker = threading.Thread(target=repeat, daemon=True)
    worker.start()
    try:
        return finish(rollout)
    finally:
        stop.set()
        worker.join()


def assert_routes_match_state(project: Project) -> None:
    """nginx routes exactly the ready replicas of each track in the state."""
    state = project.state()
    routes = project.admin_get("/routes").json()["routes"]
    for track in ("stable", "canary"):
        expected = sorted(
            f"127.0.0.1:{r['port']}"
            for r in state["replicas"]
            if r["track"] == track and r["ready"]
        )
        assert sorted(routes["endpoints"][track] or []) == expected, track


def rollout_with_fault(project: Project, version: str, *chaos: str) -> tuple[int, str]:
    """Roll `version` out and inject `swiftdeploy chaos *chaos` once its canary is up."""
    rollout = start_rollout(project, version)
    try:
        wait_for(lambda: canary_ready(project), what="the canary")
        project.cli("chaos", *chaos)
    finally:
        output = finish(rollout)
    return rollout.returncode, output


# --- the rollout's driver (commands/driver.py) ------------------------------------


class BackgroundCli:
    """A CLI started in its own session (so a test can signal its process group, as a
    terminal does at Ctrl-C or when it closes), its output read line by line as it
    comes (stderr with stdout)."""

    def __init__(self, project: Project, *args: str) -> None:
        self.process = subprocess.Popen(
            [SWIFTDEPLOY, *args, "-f", str(project.manifest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=project.root,
            start_new_session=True,
            preexec_fn=as_from_a_terminal,  # noqa: PLW1509 - signal dispositions only
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 90) -> int:
        """The index of the first line holding `text`, once it is printed."""

        def found() -> bool:
            return any(text in line for line in self.lines)

        wait_for(found, timeout, what=f"a line with {text!r} in:\n{self.output}")
        return next(i for i, line in enumerate(self.lines) if text in line)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def __enter__(self) -> BackgroundCli:
        return self

    def __exit__(self, *exc: object) -> None:
        """A CLI the test left running is killed, with its process group."""
        if self.process.poll() is None:
            self.signal_group(signal.SIGKILL)
        self.finish(timeout=30)

    def finish(self, timeout: float = 150) -> int:
        """Its exit code, once it exits (killed if it outlives `timeout`)."""
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
        return code


def driver_info(project: Project) -> dict[str, Any] | None:
    """What `.swiftdeploy/driver.json` says of the driver (None before the first one)."""
    try:
        return dict(json.loads((project.state_dir / "driver.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def driving_pid(project: Project) -> int | None:
    """The pid of the driver that runs the rollout now: the one driver.json names, alive
    and holding the project lock; None when none does."""
    info = driver_info(project)
    if info is None or info["exited"] or lock_holder(project.state_dir) != info["pid"]:
        return None
    return int(info["pid"]) if pid_alive(int(info["pid"])) else None


def wait_for_driver(project: Project, other_than: int | None = None, timeout: float = 60) -> int:
    """The pid of a driver that runs the rollout (another than `other_than`), once one does."""
    found: list[int] = []

    def running() -> bool:
        pid = driving_pid(project)
        if pid is not None and pid != other_than:
            found.append(pid)
        return bool(found)

    wait_for(running, timeout, what="a driver holding the rollout")
    return found[0]


def phase_is(project: Project, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(project.state()["phase"] == phase)
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    return check


def canary_weight_routed(project: Project) -> int:
    """The canary's weight nginx applies, from its admin `/routes`."""
    return int(project.admin_get("/routes").json()["routes"]["weights"]["canary"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Reports how long the kubernetes tests' control plane took to start (a measurement
    to read, not a unit test's assertion); xdist carries user properties back here."""
    starts = [
        value
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", [])
        if name == "kube_start_seconds"
    ]
    if starts:
        terminalreporter.write_line(f"kubernetes test cluster started in {starts[0]} s")
