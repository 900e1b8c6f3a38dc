"""Requests to the driver in the cluster as ConfigMaps (runtime/kubernetes/control.py),
on the real control plane: a person's CLI (the operators' Role) files a request, one of
two drivers racing for it takes it, it is answered in place and removed by the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import kubernetes.client
import kubernetes.config
import pytest
from bench.support.cluster_driver import prepare
from bench.support.kube import KubeCluster
from bench.support.kubeproject import manifest_text

from swiftdeploy.errors import OperationalError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.runtime.kubernetes import control as control_module
from swiftdeploy.runtime.kubernetes.api import CountingApiClient, Kube
from swiftdeploy.runtime.kubernetes.control import SLOTS, ConfigMapControl
from swiftdeploy.state.control import Answer, DriverInfo


def _channel(kubeconfig: Path, manifest: Path, namespace: str) -> ConfigMapControl:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    kube = Kube(CountingApiClient(configuration=configuration), namespace)
    return ConfigMapControl(kube, load_manifest(manifest).manifest)


def _controls(
    cluster: KubeCluster, namespace: str, root: Path
) -> tuple[ConfigMapControl, ConfigMapControl, ConfigMapControl]:
    """A person's channel (as `deployer`) and two drivers' (the driver's token)."""
    a, _, platform = prepare(cluster, namespace, root, manifest_text(namespace, "http://x"))
    return (
        _channel(a.kubeconfig, a.manifest, namespace),
        _channel(platform.kubeconfig, platform.manifest, namespace),
        _channel(platform.kubeconfig, platform.manifest, namespace),
    )


def test_a_request_is_taken_once_answered_in_place_and_removed_by_its_cli(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    short_tmp: Path,
) -> None:
    person, first, second = _controls(kube_cluster, kube_namespace, short_tmp)

    # Given a request filed by a person (as the operators' Role allows)
    request = person.submit("pause", reason="looking")
    assert [r.id for r in first.pending()] == [request.id]
    assert [r.id for r in second.pending()] == [request.id]

    # When two drivers both try to take it, then exactly one does
    taken = [first.take(request), second.take(request)]
    assert sorted(taken) == [False, True]
    driver = first if taken[0] else second
    assert first.pending() == []
    assert second.interrupted() == [request]

    # and the person can no longer withdraw it: the driver has it
    assert person.withdraw(request) is False

    # When the driver answers, then the person reads the answer, and the request is gone
    driver.answer(request, Answer(id=request.id, result="done", message="paused at step 1"))
    answer = person.wait_answer(request, timeout_s=5)
    assert answer is not None
    assert answer.message == "paused at step 1"
    assert first.pending() == []
    assert first.interrupted() == []
    assert person.wait_answer(request, timeout_s=0.2) is None


def test_a_request_no_driver_took_is_withdrawn_and_a_full_queue_says_so(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    person, driver, _ = _controls(kube_cluster, kube_namespace, short_tmp)

    # A pending request is withdrawn by its CLI, and then no driver can take it
    request = person.submit("abort")
    assert driver.pending() == [request]
    assert person.withdraw(request) is True
    assert driver.take(request) is False
    assert driver.pending() == []

    # Every slot full of requests nobody takes: the next is refused in one line
    for _ in range(SLOTS):
        person.submit("resume")
    with pytest.raises(OperationalError, match=f"{SLOTS} requests to the driver"):
        person.submit("resume")

    # Answers nobody reads are deleted by the driver after a while, freeing the slots
    for waiting in driver.pending():
        assert driver.take(waiting)
        driver.answer(waiting, Answer(id=waiting.id, result="done", message="ok"))
    monkeypatch.setattr(control_module, "ABANDONED_S", 0.0)
    time.sleep(0.05)
    assert driver.pending() == []
    person.submit("resume")  # a slot is free again


def test_the_driver_heartbeat_names_the_driver_only_while_it_holds_the_lease(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    short_tmp: Path,
) -> None:
    person, driver, _ = _controls(kube_cluster, kube_namespace, short_tmp)
    now = time.time()
    info = DriverInfo(
        pid=1, rollout_id=None, started_at=now, first_started_at=now, holder="pod-a/1/x"
    )
    # A heartbeat without the Lease: no driver runs
    driver.save_driver(info)
    assert person.driver() == info
    assert person.running_driver() is None
