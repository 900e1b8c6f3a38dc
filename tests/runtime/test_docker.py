"""The docker backend's replicas against the real engine and the real demo image:
labels, loopback-only ports, restarts, crash loops, and the engine's absence told in
one line by doctor and validate."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from bench.support.project import SWIFTDEPLOY, Project, use_docker

from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.ports import free_port
from swiftdeploy.runtime.docker import (
    PROJECT_LABEL,
    REPLICA_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    DockerReplicas,
    project_id,
)
from swiftdeploy.state import Replica
from tests.conftest import wait_for
from tests.support.docker import CRASH_TAG, demo_images, engine, launcher

UNREACHABLE = "unix:///nonexistent/docker.sock"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    client = engine()
    demo_images(client, "v1")
    return client


@pytest.fixture
def replicas(project: Project, client: docker.DockerClient) -> Iterator[DockerReplicas]:
    use_docker(project)
    with launcher(project, client) as replicas:
        yield replicas


def replica(track: str = "canary", version: str = "v1") -> Replica:
    return Replica(name=f"{track}-{version}-0", track=track, version=version, port=free_port())


def answers(port: int) -> str | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
    except httpx.HTTPError:
        return None
    return str(response.json()["version"]) if response.status_code == 200 else None


def test_a_replica_is_a_labelled_container_on_loopback_that_restarts_when_killed(
    replicas: DockerReplicas, client: docker.DockerClient
) -> None:
    # Given a canary replica started from the demo image
    canary = replica()
    replicas.start(canary)
    container = client.containers.get(replicas.container_name(canary.name))
    # Then it carries the project's labels and publishes its port on 127.0.0.1 only
    assert container.labels[PROJECT_LABEL] == project_id(replicas.loaded)
    assert (container.labels[TRACK_LABEL], container.labels[VERSION_LABEL]) == ("canary", "v1")
    assert container.labels[REPLICA_LABEL] == canary.name
    bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(canary.port)}]
    # And it serves the version the runtime gave it
    wait_for(lambda: answers(canary.port) == "v1", timeout=20, what="the canary to answer")
    first = replicas.inspect()[canary.name]
    assert first.running
    assert first.pid > 0
    # When its process is killed with SIGKILL
    os.kill(first.pid, signal.SIGKILL)
    # Then the engine restarts it: a new process, serving again
    wait_for(
        lambda: (i := replicas.inspect()[canary.name]).running and i.pid != first.pid,
        timeout=20,
        what="the engine to restart the container",
    )
    wait_for(lambda: answers(canary.port) == "v1", timeout=20, what="the canary to answer")
    container.reload()
    assert container.attrs["RestartCount"] >= 1
    # And stopping it removes it
    replicas.stop(canary.name)
    assert replicas.inspect() == {}
    replicas.stop(canary.name)  # stopping what is gone is a no-op


def test_a_crash_looping_container_is_never_reported_running(
    replicas: DockerReplicas, client: docker.DockerClient
) -> None:
    # Given a version whose service exits at once, every time
    crashing = replica(version=CRASH_TAG)
    # When it is started, Then the start fails saying so, with where to read why
    with pytest.raises(RuntimeProcessError, match="did not start") as failure:
        replicas.start(crashing)
    assert f"docker logs {replicas.container_name(crashing.name)}" in str(failure.value.hint)
    # And while the engine keeps restarting it, it never reads as running
    seen = set()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen.add(replicas.inspect()[crashing.name].state)
        time.sleep(0.02)
    assert "RUNNING" not in seen, seen
    assert seen & {"BACKOFF", "STARTING"}, seen


def test_a_missing_image_is_one_line_naming_the_field(project: Project) -> None:
    # Given a manifest whose version has no image on the engine
    use_docker(project)
    project.edit_manifest("version: v1", "version: never-built")
    # When it is validated, Then exit 2 and one line naming service.image and the fix
    done = project.cli("validate", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "service.image" in done.stderr
    assert "swiftdeploy-demo:never-built" in done.stderr
    assert "swiftdeploy demo-image" in done.stderr


def test_doctor_and_validate_say_in_one_line_when_the_engine_is_unreachable(
    project: Project, client: docker.DockerClient
) -> None:
    use_docker(project)
    # Given the engine reachable, doctor reports its version
    done = project.cli("doctor", "--json")
    engine_check = next(c for c in _checks(done.stdout) if c["part"] == "docker engine")
    assert engine_check["ok"] is True
    assert str(client.version()["Version"]) in str(engine_check["detail"])
    # When DOCKER_HOST names no engine
    env = {**os.environ, "DOCKER_HOST": UNREACHABLE}
    doctor = _run(project, env, "doctor", "--json")
    validate = _run(project, env, "validate")
    # Then doctor fails that one check, saying how to fix it
    assert doctor.returncode == 1
    engine_check = next(c for c in _checks(doctor.stdout) if c["part"] == "docker engine")
    assert engine_check["ok"] is False
    assert "not reachable" in str(engine_check["detail"])
    assert "install-docker.sh start" in str(engine_check["detail"])
    # And validate stops with one line and exit 1 (the machine, not the manifest)
    assert validate.returncode == 1, validate.stdout + validate.stderr
    assert validate.stderr.count("\n") == 1, validate.stderr
    assert "the Docker engine is not reachable" in validate.stderr


def _checks(stdout: str) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = json.loads(stdout)["checks"]
    return checks


def _run(project: Project, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SWIFTDEPLOY, *args, "-f", str(project.manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=project.root,
        check=False,
    )


def test_demo_image_is_cached_and_refuses_a_bad_tag_in_one_line(
    client: docker.DockerClient,
) -> None:
    # Given the demo image built (the module's fixture)
    before = client.images.get("swiftdeploy-demo:v1").id
    # When it is asked for again, Then nothing is rebuilt
    again = subprocess.run(
        [SWIFTDEPLOY, "demo-image", "v1"], capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stderr
    assert client.images.get("swiftdeploy-demo:v1").id == before
    # And a tag the engine would refuse is bad input: exit 2, one line, nothing built
    bad = subprocess.run(
        [SWIFTDEPLOY, "demo-image", "v1;rm"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "invalid image tag 'v1;rm'" in bad.stderr


@pytest.fixture
def hung_up_engine(short_tmp: Path) -> Iterator[str]:
    """An engine that stopped answering: its socket accepts and hangs up at once."""
    path = short_tmp / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=5)


def test_an_engine_that_stops_answering_is_one_error_not_a_traceback(
    project: Project, hung_up_engine: str
) -> None:
    # Given replicas driven through a client whose engine hangs up on every request
    use_docker(project)
    gone = docker.DockerClient(base_url=hung_up_engine, version="1.41")
    replicas = DockerReplicas(load_manifest(project.manifest), gone)
    # When they are listed, stopped or started, Then each is one RuntimeProcessError
    # naming the engine and how to start it
    try:
        for call in (replicas.inspect, lambda: replicas.stop("canary-v1-0"),
                     lambda: replicas.start(replica())):  # fmt: skip
            with pytest.raises(RuntimeProcessError, match="the Docker engine failed") as failure:
                call()
            assert "install-docker.sh start" in str(failure.value.hint)
    finally:
        gone.close()
