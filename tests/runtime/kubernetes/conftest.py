"""The kubernetes tests' cluster: one control plane per test session (per xdist worker),
and a fresh namespace per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.kube import KubeCluster, start_cluster


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
