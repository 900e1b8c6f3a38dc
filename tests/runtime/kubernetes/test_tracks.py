"""KubeTracks and the Lease against a real control plane, in process, as the user bound
to the Role `swiftdeploy kube rbac` prints."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from bench.support.kube import KubeCluster
from bench.support.kubeproject import SERVICE, KubeProject
from kubernetes import client

from swiftdeploy.commands.context import open_fleet
from swiftdeploy.errors import LockedError
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.runtime.kubernetes import kube_of, lease_of, shared_lock, state_store
from swiftdeploy.runtime.kubernetes.lease import LeaseLock
from swiftdeploy.state import State

SECRET_ENV = "  env: {TOKEN: {value: s3cret}}\n"


@pytest.fixture
def loaded(user_project: KubeProject) -> LoadedManifest:
    text = user_project.manifest.read_text()
    user_project.manifest.write_text(text.replace("  port: 8080\n", "  port: 8080\n" + SECRET_ENV))
    return load_manifest(user_project.manifest)


def test_a_look_at_a_track_costs_the_same_api_calls_for_any_replica_count(
    loaded: LoadedManifest,
) -> None:
    fleet = open_fleet(loaded, progress=lambda message: None)
    kube = kube_of(loaded)
    calls = {}
    for replicas in (1, 4):
        # Given the canary track ready with this many replicas
        state = fleet.tracks.ensure_track(fleet.store.load(), "canary", "v2", replicas)
        # When a look asks whether it is healthy
        before = kube.calls
        healthy = fleet.tracks.track_healthy(state, "canary")
        calls[replicas] = kube.calls - before
        # Then it is, at the cost of
        assert healthy
        assert len([r for r in fleet.tracks.replicas() if r.track == "canary"]) == replicas
    assert calls[1] == calls[4] == 1


def test_secret_env_values_reach_the_pods_through_a_secret(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    # Given a service with a secret env value, when a track is started
    fleet = open_fleet(loaded, progress=lambda message: None)
    fleet.tracks.ensure_track(fleet.store.load(), "stable", "v1", 1)
    # Then the value is in a Secret, the Deployment only names it, and the state never
    # holds it
    secret = client.CoreV1Api(kube_cluster.api).read_namespaced_secret(
        f"{SERVICE}-swiftdeploy-env", kube_namespace
    )
    assert base64.b64decode(secret.data["TOKEN"]) == b"s3cret"
    deployment = client.AppsV1Api(kube_cluster.api).read_namespaced_deployment(
        f"{SERVICE}-stable", kube_namespace
    )
    env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
    assert env["TOKEN"].value is None
    assert env["TOKEN"].value_from.secret_key_ref.name == f"{SERVICE}-swiftdeploy-env"
    assert "s3cret" not in fleet.store.load().model_dump_json()


def test_a_live_lease_refuses_and_an_expired_one_is_taken_over(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    # Given a lease held by a CLI on another machine
    other = LeaseLock(kube, loaded.manifest)
    other.me = "elsewhere/4242/cafe"
    other.acquire()

    # When this CLI asks for it, it is refused, naming the holder
    mine = LeaseLock(kube, loaded.manifest)
    with pytest.raises(LockedError, match="elsewhere/4242/cafe"):
        mine.acquire()

    # When the holder stops renewing for longer than the lease's duration
    coordination = client.CoordinationV1Api(kube_cluster.api)
    lease = coordination.read_namespaced_lease(f"{SERVICE}-swiftdeploy", kube_namespace)
    lease.spec.renew_time = datetime.now(UTC) - timedelta(minutes=1)
    coordination.replace_namespaced_lease(lease.metadata.name, kube_namespace, lease)

    # Then this CLI takes it over, and the transition is counted
    mine.acquire()
    taken = coordination.read_namespaced_lease(f"{SERVICE}-swiftdeploy", kube_namespace)
    assert taken.spec.holder_identity == mine.me
    assert taken.spec.lease_transitions == 1
    mine.release()


def test_a_cli_that_lost_its_lease_stops_at_its_next_save(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    # Given this CLI holding the service's lease, as a mutating command does
    with shared_lock(loaded):
        store = state_store(loaded)
        store.save(State())
        # When another CLI took it over meanwhile (this one stalled past its duration)
        coordination = client.CoordinationV1Api(kube_cluster.api)
        lease = coordination.read_namespaced_lease(f"{SERVICE}-swiftdeploy", kube_namespace)
        lease.spec.holder_identity = "elsewhere/7/beef"
        coordination.replace_namespaced_lease(lease.metadata.name, kube_namespace, lease)
        held = lease_of(loaded)
        assert held is not None
        held.renew()
        # Then its next save is refused, naming the new holder, and nothing is written
        with pytest.raises(LockedError, match=r"lost the Lease .* to elsewhere/7/beef"):
            store.save(State(stable_version="v9"))
    assert state_store(loaded).load().stable_version is None


def test_a_track_the_state_does_not_know_is_deleted_by_name_at_reconcile(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    # Given a canary Deployment left by a command interrupted before its state was saved
    fleet = open_fleet(loaded, progress=lambda message: None)
    state = fleet.tracks.ensure_track(fleet.store.load(), "stable", "v1", 1)
    fleet.tracks.ensure_track(state, "canary", "v2", 1)
    state = fleet.store.save(state)
    # When the state is reconciled, by the user whose Roles cannot list Deployments
    fleet.tracks.reconcile(state)
    # Then the orphan is gone and the stable stays
    apps = client.AppsV1Api(kube_cluster.api)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(kube_namespace).items}
    assert names == {f"{SERVICE}-stable"}
