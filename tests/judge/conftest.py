"""The judge's end-to-end tests with real rollout controllers (Argo Rollouts, Flagger):
one test control plane per test session (per xdist worker), the pods' traffic for a
real Prometheus, and each controller started when a test first asks for it; all
stopped at the session's end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.support.kube import KubeCluster, start_cluster

from swiftdeploy.commands.judge import Running
from tests.support.controllers import Controller, start_argo, start_flagger
from tests.support.judge import serving_judge
from tests.support.pod_traffic import PodTraffic
from tests.support.prometheus import running_prometheus, serving_exposition


@pytest.fixture(scope="session")
def judge_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pods_prometheus(
    judge_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus scraping, every second, what the cluster's pods would serve."""
    traffic = PodTraffic(judge_cluster)
    try:
        with serving_exposition(lambda path: traffic.exposition()) as port:
            job = {
                "job_name": "kubernetes-pods",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
            with running_prometheus(tmp_path_factory.mktemp("prometheus"), [job]) as url:
                yield url
    finally:
        traffic.close()


@pytest.fixture(scope="session")
def argo_controller(
    judge_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controller]:
    argo = start_argo(judge_cluster, tmp_path_factory.mktemp("argo"))
    try:
        yield argo
    finally:
        argo.stop()


@pytest.fixture(scope="session")
def flagger_controller(
    judge_cluster: KubeCluster, pods_prometheus: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controller]:
    flagger = start_flagger(judge_cluster, tmp_path_factory.mktemp("flagger"), pods_prometheus)
    try:
        yield flagger
    finally:
        flagger.stop()


@pytest.fixture
def judge(pods_prometheus: str, tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    """The judge on loopback reading the pods' Prometheus; its config and trail in
    tmp_path."""
    with serving_judge(tmp_path, pods_prometheus) as served:
        yield served
