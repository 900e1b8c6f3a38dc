"""Secret `service.env` values on `runtime: docker` (issue 22, finding 7): `docker
inspect`, which anyone who can reach the engine may run (and monitoring agents do), shows
a container's environment; the secrets are not in it, yet the service has them."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator

import docker
import httpx
import pytest
import yaml

from swiftdeploy.ports import free_port
from swiftdeploy.runtime.docker import DockerReplicas
from swiftdeploy.state import Replica
from tests.conftest import Project, wait_for
from tests.support.docker import demo_images, engine, launcher, use_docker

pytestmark = pytest.mark.e2e

SECRET = "tok-inspect-me-not-4711"
PLAIN = "hello-plain"


@pytest.fixture
def replicas(project: Project) -> Iterator[DockerReplicas]:
    client = engine()
    demo_images(client, "v1")
    use_docker(project, replicas=1)
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["service"]["env"] = {"API_TOKEN": {"value": SECRET, "secret": True}, "PLAIN": PLAIN}
    manifest["service"]["chaos"] = True  # its token is a secret too
    project.manifest.write_text(yaml.safe_dump(manifest))
    with launcher(project, client) as replicas:
        yield replicas


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_secret_env_values_are_not_in_docker_inspect(
    replicas: DockerReplicas, project: Project
) -> None:
    # Given a replica of a service with a secret env value and the chaos token
    replica = Replica(name="canary-v1-0", track="canary", version="v1", port=free_port())
    replicas.start(replica)
    wait_for(lambda: answers(replica.port), timeout=20, what="the replica to answer")
    name = replicas.container_name(replica.name)
    token = (project.state_dir / "chaos.token").read_text().strip()
    # When someone in the docker group inspects its container
    shown = subprocess.run(
        ["docker", "inspect", name], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # Then neither secret is there, while the plain values are
    assert SECRET not in shown
    assert token not in shown
    assert f"PLAIN={PLAIN}" in json.loads(shown)[0]["Config"]["Env"]
    # And the container runs the image's own command (the demo's shell-form CMD)
    # behind the wrapper that exports them
    image = docker.from_env().images.get("swiftdeploy-demo:v1").attrs["Config"]
    config = json.loads(shown)[0]["Config"]
    assert config["Cmd"] == [*(image["Entrypoint"] or []), *image["Cmd"]]
    assert config["Entrypoint"][:2] == ["/bin/sh", "-c"]
    # And the service has both in its environment
    environ = subprocess.run(
        ["docker", "exec", name, "cat", "/proc/1/environ"],
        capture_output=True, timeout=30, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    assert f"API_TOKEN={SECRET}".encode() in environ
    assert f"SWIFTDEPLOY_CHAOS_TOKEN={token}".encode() in environ
    # And on this machine they are in a file only the project's owner can reach
    env_file = replicas.env_file(replica.name)
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert SECRET in env_file.read_text()
    # And stopping the replica removes it
    replicas.stop(replica.name)
    assert not env_file.exists()
