"""What the docker tests share: the engine up (started by the setup script's start part
if need be), the demo image built once (cached by `swiftdeploy demo-image`), a crashing
variant of it, a project switched to `runtime: docker`, and its labelled containers."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
from bench.support.project import SWIFTDEPLOY, Project
from docker.models.containers import Container

from swiftdeploy.commands.demo_image import DIGEST_LABEL, REPOSITORY
from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.runtime.docker import DockerReplicas, build_image, connect, project_filter

ROOT = Path(__file__).resolve().parents[2]
CRASH_TAG = "crashloop"
# The crashing variant: the demo image whose service exits at once, every time.
CRASH_DOCKERFILE = f'FROM {REPOSITORY}:v1\nCMD ["python3", "-c", "raise SystemExit(3)"]\n'


def engine() -> docker.DockerClient:
    """A client of a running engine; starts dockerd the way `make setup` does if none is."""
    try:
        return connect()
    except RuntimeProcessError:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "install-docker.sh"), "start"], check=True, timeout=60
        )
        return connect()


def demo_images(client: docker.DockerClient, *tags: str) -> None:
    """The demo image under `tags` (seconds when cached), and the crashing variant."""
    subprocess.run([SWIFTDEPLOY, "demo-image", *tags], check=True, timeout=900)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(CRASH_DOCKERFILE)
        # Labels are inherited: this one must not pass for an up-to-date demo image.
        build_image(client, Path(tmp), [f"{REPOSITORY}:{CRASH_TAG}"], {DIGEST_LABEL: "none"})


def project_containers(client: docker.DockerClient, project: Project) -> list[Container]:
    """Every container labelled with the project's id, whatever its state."""
    loaded = load_manifest(project.manifest)
    found: list[Container] = client.containers.list(all=True, filters=project_filter(loaded))
    return found


def project_networks(client: docker.DockerClient, project: Project) -> list[str]:
    loaded = load_manifest(project.manifest)
    return [n.name or "" for n in client.networks.list(filters=project_filter(loaded))]


@contextmanager
def launcher(project: Project, client: docker.DockerClient) -> Iterator[DockerReplicas]:
    """The project's replicas as containers; every one it labelled is removed after."""
    try:
        yield DockerReplicas(load_manifest(project.manifest), client)
    finally:
        for container in project_containers(client, project):
            container.remove(force=True)
