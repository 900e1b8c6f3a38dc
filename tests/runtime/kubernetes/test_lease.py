"""The Lease against a real control plane: who may take it over early (only a holder of
this host's boot and PID namespace whose process is gone), the check before every
write (a lost or deleted lease stops the next one), and an API server that goes away
(calls are transient errors; the lease is kept, or taken back once it expired)."""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import kubernetes.client
import kubernetes.config
import pytest
from bench.support.kube import KubeCluster
from bench.support.kubeproject import SERVICE, KubeProject
from kubernetes import client

from swiftdeploy.errors import LockedError, TransientError
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.runtime.kubernetes import api, kube_of, lease
from swiftdeploy.runtime.kubernetes.api import Kube
from swiftdeploy.runtime.kubernetes.lease import Holder, LeaseLock
from swiftdeploy.runtime.kubernetes.store import ConfigMapStateStore
from swiftdeploy.state import State
from tests.runtime.kubernetes.test_rbac import write_manifest
from tests.support.kube_faults import ScriptedServer, api_server_stopped, kube_at

LEASE = f"{SERVICE}-swiftdeploy"
OUTAGE_S = 30.0


@pytest.fixture
def loaded(user_project: KubeProject) -> LoadedManifest:
    return load_manifest(user_project.manifest)


def admin_kube(cluster: KubeCluster, namespace: str) -> Kube:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.admin_kubeconfig), client_configuration=configuration
    )
    return Kube(api.client_for(configuration), namespace)


def read_lease(cluster: KubeCluster, namespace: str, name: str = LEASE) -> client.V1Lease:
    return client.CoordinationV1Api(cluster.api).read_namespaced_lease(name, namespace)


def held_by(cluster: KubeCluster, namespace: str, holder: Holder | str) -> None:
    """The lease written by another process that holds it, renewed just now."""
    now = datetime.now(UTC)
    spec = client.V1LeaseSpec(
        holder_identity=str(holder), lease_duration_seconds=15, acquire_time=now, renew_time=now
    )
    coordination = client.CoordinationV1Api(cluster.api)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE), spec=spec)
    if coordination.list_namespaced_lease(namespace).items:
        coordination.delete_namespaced_lease(LEASE, namespace)
    coordination.create_namespaced_lease(namespace, body)


def dead_pid() -> tuple[int, str]:
    """The pid and start time of a process of ours that has exited."""
    child = subprocess.Popen(["sleep", "30"])
    started = lease.started(child.pid)
    assert started
    child.kill()
    child.wait()
    return child.pid, started


def test_a_holder_in_another_pid_namespace_is_not_taken_over(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    me = lease.here()
    pid, started = dead_pid()
    # Given a lease held by a process with our hostname and boot, whose pid is not running
    # here, but in another PID namespace (a container, a CI runner with our hostname)
    other = Holder(me.host, pid, "cafe", me.boot_id, f"{me.pid_ns}9", started)
    held_by(kube_cluster, kube_namespace, other)
    # When this CLI asks for the lease, Then it is refused, naming that holder
    mine = LeaseLock(kube, loaded.manifest)
    with pytest.raises(LockedError, match=f"driven by {me.host}/{pid}/cafe .*pidns={me.pid_ns}9"):
        mine.acquire()
    # And so is one of another boot of this host, and one in an older form (no namespace)
    for holder in (
        Holder(me.host, pid, "cafe", "another-boot", me.pid_ns, started),
        f"{me.host}/{pid}/cafe",
    ):
        held_by(kube_cluster, kube_namespace, holder)
        with pytest.raises(LockedError, match="is being driven by"):
            mine.acquire()


def test_a_dead_holder_of_this_machine_is_taken_over_at_once(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    me = lease.here()
    # Given a lease just renewed by a process of this boot and PID namespace that has exited
    pid, started = dead_pid()
    held_by(
        kube_cluster, kube_namespace, Holder(me.host, pid, "cafe", me.boot_id, me.pid_ns, started)
    )
    # When this CLI asks for the lease, Then it takes it over at once, the transition counted
    mine = LeaseLock(kube, loaded.manifest)
    mine.acquire()
    taken = read_lease(kube_cluster, kube_namespace)
    assert taken.spec.holder_identity == mine.me
    assert taken.spec.lease_transitions == 1
    mine.release()
    # And so for a holder whose pid runs again but as another process (another start time)
    reused = Holder(me.host, me.pid, "beef", me.boot_id, me.pid_ns, str(int(me.started) - 1))
    held_by(kube_cluster, kube_namespace, reused)
    again = LeaseLock(kube, loaded.manifest)
    again.acquire()
    assert read_lease(kube_cluster, kube_namespace).spec.holder_identity == again.me
    again.release()


def test_the_identity_says_where_the_holder_runs() -> None:
    me = lease.here()
    text = lease.identity()
    parsed = Holder.parse(text)
    assert parsed is not None
    assert (parsed.host, parsed.pid, parsed.boot_id, parsed.pid_ns, parsed.started) == (
        me.host,
        me.pid,
        Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        me.pid_ns,
        me.started,
    )
    assert me.pid_ns.isdigit()
    assert not lease.dead_here(text)  # this process runs


def test_a_lease_deleted_or_taken_by_someone_else_stops_the_next_write(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    store = ConfigMapStateStore(kube, loaded.manifest)
    coordination = client.CoordinationV1Api(kube_cluster.api)
    mine = LeaseLock(kube, loaded.manifest)
    with mine.held():
        store.save(State(stable_version="v1"))
        # When another user deletes the lease (no renewal has run since)
        coordination.delete_namespaced_lease(LEASE, kube_namespace)
        # Then the next write, whatever it is, is refused before it is sent
        with pytest.raises(LockedError, match=r"lost the Lease .* to nobody \(the Lease was"):
            store.save(State(stable_version="v9"))
        with pytest.raises(LockedError, match="lost the Lease"):
            kube.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo-x"}})
    # And nothing was written, nor the lease created again
    assert store.load().stable_version == "v1"
    assert client.CoreV1Api(kube_cluster.api).list_namespaced_service(kube_namespace).items == []
    assert coordination.list_namespaced_lease(kube_namespace).items == []

    # Given the lease held again, When someone else's identity is written into it
    again = LeaseLock(kube, loaded.manifest)
    with again.held():
        taken = read_lease(kube_cluster, kube_namespace)
        taken.spec.holder_identity = "elsewhere/7/beef"
        coordination.replace_namespaced_lease(LEASE, kube_namespace, taken)
        # Then the next write is refused, naming the new holder
        with pytest.raises(LockedError, match=r"lost the Lease .* to elsewhere/7/beef"):
            store.save(State(stable_version="v9"))
    assert store.load().stable_version == "v1"
    assert read_lease(kube_cluster, kube_namespace).spec.holder_identity == "elsewhere/7/beef"


@pytest.fixture
def other_service(kube_cluster: KubeCluster, kube_namespace: str) -> Iterator[Kube]:
    kube = admin_kube(kube_cluster, kube_namespace)
    yield kube
    kube.client.close()


def test_an_api_server_outage_is_transient_and_the_lease_is_kept_or_taken_back(
    loaded: LoadedManifest,
    kube_cluster: KubeCluster,
    kube_namespace: str,
    other_service: Kube,
) -> None:
    # Given two services' leases held, one long enough to outlast the outage, one not
    kube = kube_of(loaded)
    store = ConfigMapStateStore(kube, loaded.manifest)
    store.save(State(stable_version="v1"))
    long = LeaseLock(kube, loaded.manifest, duration_s=300)
    name = f"brief-{secrets.token_hex(2)}"
    brief_manifest = loaded.manifest.model_copy(
        update={"service": loaded.manifest.service.model_copy(update={"name": name})}
    )
    brief = LeaseLock(other_service, brief_manifest, duration_s=6)
    with long.held(), brief.held():
        before = {
            lock: read_lease(kube_cluster, kube_namespace, lock.name) for lock in (long, brief)
        }
        # When the API server is stopped for about 30 s
        with api_server_stopped(kube_cluster):
            stopped = time.monotonic()
            # Then every call, a write through the lease's check included, is a transient
            # error within seconds, and the state is not touched
            while time.monotonic() - stopped < OUTAGE_S:
                started = time.monotonic()
                with pytest.raises(TransientError):
                    store.save(State(stable_version="v2"))
                with pytest.raises(TransientError):
                    kube.get("ConfigMap", "anything")
                assert time.monotonic() - started < 2 * (api.RETRY_BUDGET_S + 1)
                time.sleep(2)
        # When it is back, Then the state is the last one saved, whole
        assert store.load().stable_version == "v1"
        # and the lease that had not expired is still ours, unchanged
        store.save(State(stable_version="v2"))
        assert store.load().stable_version == "v2"
        after = read_lease(kube_cluster, kube_namespace, long.name)
        assert after.spec.holder_identity == long.me
        assert after.spec.acquire_time == before[long].spec.acquire_time
        assert after.spec.lease_transitions == before[long].spec.lease_transitions
        # And the one that expired meanwhile (nobody took it) is taken back before a write
        other_service.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-x"}}
        )
        retaken = read_lease(kube_cluster, kube_namespace, brief.name)
        assert retaken.spec.holder_identity == brief.me
        assert isinstance(retaken.spec.acquire_time, datetime)
        assert retaken.spec.acquire_time > before[brief].spec.renew_time
        assert long.lost is None
        assert brief.lost is None


def test_a_lease_whose_create_went_through_but_whose_answer_was_lost_is_ours(
    short_tmp: Path,
) -> None:
    manifest = load_manifest(write_manifest(short_tmp, "team-a")).manifest

    def ours() -> dict[str, object]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": lock.me, "leaseDurationSeconds": 15, "renewTime": now}
        return {"kind": "Lease", "metadata": {"name": LEASE, "resourceVersion": "5"}, "spec": spec}

    # Given no lease, and a create that is applied but answered 503 (so retried: 409)
    with ScriptedServer([(404, {}), (503, {}), (409, {}), (200, {}, ours)]) as server:
        kube = kube_at(server.url)
        lock = LeaseLock(kube, manifest)
        # When the lease is acquired, Then it is ours, as the API server says, and guards
        lock.acquire()
    assert [method for method, _ in server.seen] == ["GET", "POST", "POST", "GET"]
    assert lock._lease is not None
    assert lock._lease["metadata"]["resourceVersion"] == "5"
    assert kube.guard == lock.verify


def test_the_renewer_outlives_a_refusal_and_renews_once_the_rights_are_back(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api)
    said: list[str] = []
    mine = LeaseLock(kube, loaded.manifest, duration_s=3)  # renewed every second
    mine.say = said.append
    with mine.held():
        renewer = next(t for t in threading.enumerate() if t.name == "lease-renewer")
        # Given the CLI's RoleBindings deleted (its renewals now refused, 403, as by an
        # API server whose authorizer is still filling its caches after a restart)
        bindings = rbac.list_namespaced_role_binding(kube_namespace).items
        for binding in bindings:
            rbac.delete_namespaced_role_binding(binding.metadata.name, kube_namespace)
        try:
            # When several renewals are refused
            wait_until("a refused renewal said", lambda: said)
            time.sleep(3 * mine.duration_s / 3)
        finally:
            for binding in bindings:  # Then the rights are back
                binding.metadata = client.V1ObjectMeta(name=binding.metadata.name)
                rbac.create_namespaced_role_binding(kube_namespace, binding)
        # Then the renewer still runs, said the fault once, and renews the lease again
        refused_at = read_lease(kube_cluster, kube_namespace).spec.renew_time
        wait_until(
            "a renewal after the refusals",
            lambda: read_lease(kube_cluster, kube_namespace).spec.renew_time > refused_at,
        )
        assert renewer.is_alive()
        assert mine.lost is None
        assert len(said) == 2, said
        assert "could not renew the Lease" in said[0]
        assert "forbidden" in said[0]
        assert said[1] == "driver: renewed the Lease again"
        assert read_lease(kube_cluster, kube_namespace).spec.holder_identity == mine.me


def test_a_renewal_after_the_lease_was_deleted_loses_it_and_creates_nothing(
    loaded: LoadedManifest, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    kube = kube_of(loaded)
    coordination = client.CoordinationV1Api(kube_cluster.api)
    mine = LeaseLock(kube, loaded.manifest)
    with mine.held():
        # When another user deletes the lease and the holder's next renewal comes
        coordination.delete_namespaced_lease(LEASE, kube_namespace)
        mine.renew()
        # Then it knows it lost it (a PUT with the old resourceVersion alone would have
        # created the Lease again, under its name), and the lease stays deleted
        assert mine.lost == "nobody (the Lease was deleted)"
        assert coordination.list_namespaced_lease(kube_namespace).items == []
        # and its next API call, a read too, is refused before it is sent
        calls = kube.calls
        with pytest.raises(LockedError, match="lost the Lease"):
            kube.get("ConfigMap", "anything")
        assert kube.calls == calls
    assert coordination.list_namespaced_lease(kube_namespace).items == []


def wait_until(what: str, check: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
