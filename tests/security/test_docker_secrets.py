"""Secret `service.env` values on `runtime: docker` (issue 22, finding 7): `docker
inspect`, which anyone who can reach the engine may run (and monitoring agents do), shows
a container's environment; the secrets are not in it, yet the service has them. And
another local user, played by `nobody`, can neither read them through /proc nor signal
the replica: the demo image runs as a uid no host account has, and undumpable."""

from __future__ import annotations

import json
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
import yaml
from bench.support.project import Project, use_docker

from swiftdeploy.commands.demo_image import REPOSITORY
from swiftdeploy.manifest import load_manifest
from swiftdeploy.ports import free_port
from swiftdeploy.runtime.docker import DockerReplicas, build_image, user_warnings
from swiftdeploy.state import Replica
from tests.conftest import wait_for
from tests.support.docker import demo_images, engine, launcher

pytestmark = pytest.mark.e2e

SECRET = "tok-inspect-me-not-4711"
PLAIN = "hello-plain"
# What another local user tries on a replica's process, with Debian's own python3 (the
# venv's lives under /root, which nobody cannot enter): one line per attempt.
ATTACK = """
import os, sys
pid = sys.argv[1]
def attempt(what, act):
    try:
        print(what, "READ", repr(act()))
    except OSError as exc:
        print(what, type(exc).__name__)
attempt("environ", lambda: open(f"/proc/{pid}/environ", "rb").read())
attempt("env-file", lambda: open(f"/proc/{pid}/root/run/swiftdeploy/env").read())
attempt("mem", lambda: open(f"/proc/{pid}/mem", "r+b").close())
attempt("signal", lambda: os.kill(int(pid), 0))
"""


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


def started(replicas: DockerReplicas, project: Project, track: str) -> tuple[Replica, str]:
    """A replica of `track` answering, and the project's chaos token."""
    replica = Replica(name=f"{track}-v1-0", track=track, version="v1", port=free_port())
    replicas.start(replica)
    wait_for(lambda: answers(replica.port), timeout=20, what="the replica to answer")
    return replica, (project.state_dir / "chaos.token").read_text().strip()


def test_secret_env_values_are_not_in_docker_inspect(
    replicas: DockerReplicas, project: Project
) -> None:
    # Given a replica of a service with a secret env value and the chaos token
    replica, token = started(replicas, project, "canary")
    name = replicas.container_name(replica.name)
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
    # And the service has both in its environment (read as root: it is undumpable)
    environ = Path(f"/proc/{service_pid(name)}/environ").read_bytes().split(b"\0")
    assert f"API_TOKEN={SECRET}".encode() in environ
    assert f"SWIFTDEPLOY_CHAOS_TOKEN={token}".encode() in environ
    # And on this machine they are in a file only the project's owner can reach
    env_file = replicas.env_file(replica.name)
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert SECRET in env_file.read_text()
    # And stopping the replica removes it
    replicas.stop(replica.name)
    assert not env_file.exists()


def service_pid(container: str) -> int:
    """The container's first process, as this machine's pid: the service itself, as the
    wrapper execs the image's command, whose shell form execs python3."""
    return int(docker.from_env().containers.get(container).attrs["State"]["Pid"])


def test_another_user_cannot_read_or_signal_a_replica(
    replicas: DockerReplicas, project: Project
) -> None:
    # Given a stable replica of a service with a secret env value and the chaos token
    replica, token = started(replicas, project, "stable")
    pid = service_pid(replicas.container_name(replica.name))
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert status["Name"].strip().startswith("python3")
    # When nobody tries its environment, the mounted env file, its memory and a signal
    attack = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3", "-c", ATTACK, str(pid)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    # Then each is refused, and neither secret is in what it got
    assert attack.stdout.split("\n")[:4] == [
        "environ PermissionError",
        "env-file PermissionError",
        "mem PermissionError",
        "signal PermissionError",
    ], attack.stdout
    assert SECRET not in attack.stdout
    assert token not in attack.stdout
    # And it runs as a uid no account of this machine has
    uid = int(status["Uid"].split()[0])
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    # And it is undumpable: its /proc files are root's, not its own uid's
    assert uid != 0
    assert Path(f"/proc/{pid}/environ").stat().st_uid == 0


def test_an_image_running_as_a_host_account_is_warned_about(
    replicas: DockerReplicas, project: Project, tmp_path: Path
) -> None:
    # Given the demo image, and one like it whose USER is a name the image's
    # /etc/passwd gives nobody's uid
    client = engine()
    theirs = f"{REPOSITORY}:as-nobody"
    (tmp_path / "Dockerfile").write_text(f"FROM {REPOSITORY}:v1\nUSER nobody\n")
    build_image(client, tmp_path, [theirs], {})
    loaded = load_manifest(project.manifest)
    try:
        # When a command is about to start replicas of either
        # Then the demo image's is not warned about, and the other's is, in one line
        assert user_warnings(loaded, "v1") == []
        [line] = user_warnings(loaded, "as-nobody")
        assert f"{theirs} runs as uid 65534 (USER nobody)" in line
        assert "the account nobody" in line
        # And reading its /etc/passwd left no container behind
        assert not client.containers.list(all=True, filters={"ancestor": theirs})
    finally:
        client.images.remove(theirs, force=True)
