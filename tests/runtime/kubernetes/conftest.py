"""The kubernetes tests' cluster: one control plane per test session (per xdist worker),
and a fresh namespace per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.support.kube import KubeCluster, start_cluster
from bench.support.kubeproject import KubeProject, new_project

from swiftdeploy.ports import free_port


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    name = f"t-{secrets.token_hex(4)}"
    kube_cluster.create_namespace(name)
    try:
        yield name
    finally:
        kube_cluster.delete_namespace(name)


@pytest.fixture
def user_project(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> KubeProject:
    """A project whose CLI is the user bound to the Roles `swiftdeploy kube rbac` prints,
    and this process's kubeconfig that user's (no Prometheus answers)."""
    project = new_project(
        kube_cluster, kube_namespace, short_tmp, f"http://127.0.0.1:{free_port()}"
    )
    monkeypatch.setenv("KUBECONFIG", str(project.kubeconfig))
    return project
