"""How `Kube` meets an API server that fails: against a loopback HTTP server that answers
as scripted (429, 5xx, 4xx), and a port nobody listens on. A transient failure is retried
inside the call and, if it persists, is a TransientError; any other refusal is permanent
and not retried. (The real API server stopped and restarted: test_lease.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from swiftdeploy.errors import TransientError
from swiftdeploy.ports import free_port
from swiftdeploy.runtime.kubernetes import api
from swiftdeploy.runtime.kubernetes.api import KubeApiError, KubeUnavailableError
from tests.support.kube_faults import FOUND, Answer, ScriptedServer, kube_at


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    servers: list[ScriptedServer] = []

    class Started(ScriptedServer):
        def __init__(self, script: list[Answer]) -> None:
            super().__init__(script)
            servers.append(self)

    yield Started
    for server in servers:
        server.close()


def test_5xx_answers_are_retried_within_the_call(scripted: type[ScriptedServer]) -> None:
    # Given an API server that answers 503 then 500, then the object
    server = scripted([(503, {}), (500, {})])
    kube = kube_at(server.url)
    # When the object is read, Then the call returns it, after three requests
    assert kube.get("ConfigMap", "demo") == FOUND
    assert [method for method, _ in server.seen] == ["GET"] * 3
    assert kube.calls == 3


def test_a_429_is_retried_after_the_servers_retry_after(scripted: type[ScriptedServer]) -> None:
    # Given an API server that throttles the first write, asking for a 1 s wait
    server = scripted([(429, {"Retry-After": "1"})])
    kube = kube_at(server.url)
    # When an object is applied
    kube.apply({"kind": "ConfigMap", "metadata": {"name": "demo"}})
    # Then the write was sent again, no sooner than asked
    assert [method for method, _ in server.seen] == ["PATCH", "PATCH"]
    assert server.seen[1][1] - server.seen[0][1] >= 0.95


def test_a_server_that_stays_unavailable_is_a_transient_error_within_seconds(
    scripted: type[ScriptedServer],
) -> None:
    # Given an API server that answers 503 to everything
    server = scripted([(503, {})] * 50)
    kube = kube_at(server.url)
    started = time.monotonic()
    # When an object is written, Then the call gives up with a transient error
    with pytest.raises(KubeUnavailableError, match="unavailable") as raised:
        kube.replace({"kind": "ConfigMap", "metadata": {"name": "demo"}})
    assert isinstance(raised.value, TransientError)
    assert raised.value.status == 503
    # after its bounded retries
    assert len(server.seen) == api.ATTEMPTS
    assert time.monotonic() - started < api.RETRY_BUDGET_S + 2


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_other_refusals_are_permanent_and_not_retried(
    scripted: type[ScriptedServer], status: int
) -> None:
    # Given an API server that refuses the write
    server = scripted([(status, {})])
    kube = kube_at(server.url)
    # When an object is written, Then the refusal is raised as it is, after one request
    with pytest.raises(KubeApiError, match=f"said {status}") as raised:
        kube.create({"kind": "ConfigMap", "metadata": {"name": "demo"}})
    assert not isinstance(raised.value, TransientError)
    assert raised.value.status == status
    assert len(server.seen) == 1


def test_no_server_at_all_is_a_transient_error() -> None:
    # Given a port nobody listens on
    kube = kube_at(f"http://127.0.0.1:{free_port()}")
    # When anything is read, Then it is a transient error saying the server did not answer
    with pytest.raises(KubeUnavailableError, match="did not answer") as raised:
        kube.get("ConfigMap", "demo")
    assert isinstance(raised.value, TransientError)
    assert kube.calls == api.ATTEMPTS


def test_every_write_passes_the_guard_first_and_a_dry_run_does_not(
    scripted: type[ScriptedServer],
) -> None:
    # Given a guard that refuses (a Lease this process lost)
    server = scripted([])
    kube = kube_at(server.url)

    def refuse() -> None:
        raise KubeApiError("lost the Lease")

    kube.guard = refuse
    obj = {"kind": "ConfigMap", "metadata": {"name": "demo", "resourceVersion": "7"}}
    # When anything is written, Then it is refused before a request is sent
    for write in (
        lambda: kube.apply(obj),
        lambda: kube.create(obj),
        lambda: kube.replace(obj),
        lambda: kube.delete("ConfigMap", "demo"),
        lambda: kube.request("PATCH", "/api/v1/namespaces/team-a/configmaps/demo", body={}),
    ):
        with pytest.raises(KubeApiError, match="lost the Lease"):
            write()
    assert server.seen == []
    # while reads, dry runs and the Lease's own writes (unguarded) are sent
    kube.get("ConfigMap", "demo")
    kube.apply(obj, dry_run=True)
    kube.replace(obj, guarded=False)
    assert [method for method, _ in server.seen] == ["GET", "PATCH", "PUT"]
