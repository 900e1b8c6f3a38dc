"""The judge's end-to-end tests with the real Argo Rollouts controller: one test control
plane and one controller per test session (per xdist worker), stopped at its end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.argo import ArgoController, start_argo
from tests.support.kube import start_cluster


@pytest.fixture(scope="session")
def argo_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoController]:
    cluster = start_cluster(tmp_path_factory.mktemp("kube"))
    try:
        argo = start_argo(cluster, tmp_path_factory.mktemp("argo"))
        try:
            yield argo
        finally:
            argo.stop()
    finally:
        cluster.stop()
