"""Notifications and gating hooks from the driver in the cluster (issue 23): the driver
runs with its ServiceAccount's token under the Role `swiftdeploy kube rbac` prints, reads
its sink's URL, the signing key and a hook's token from Kubernetes Secrets, keeps its
cursors in the ConfigMap `<svc>-swiftdeploy-outbox`, and operators (the user `deployer`)
start, follow and read it from their own machines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from bench.support.cluster_driver import (
    Driver,
    Machine,
    create_secret,
    lease_holder,
    pod_machine,
    prepare,
    start_driver,
    wait_for,
)
from bench.support.kube import KubeCluster
from bench.support.kubeproject import QUICK_POLICY, SERVICE, manifest_text
from bench.support.receivers import Receiver
from kubernetes import client
from kubernetes.client.rest import ApiException

from swiftdeploy.notify.http import verify_signature
from swiftdeploy.ports import free_port
from tests.support.hook_server import hook_server
from tests.support.kube import FakeDataPlane

KEY = "cluster-signing-key-0123456789abcdef"
TOKEN = "hook-token-5f0c1d"
NOTIFY_SECRET, HOOK_SECRET = f"{SERVICE}-notify", f"{SERVICE}-hook"
OUTBOX = f"{SERVICE}-swiftdeploy-outbox"
STABLE, CANARY = f"{SERVICE}-stable", f"{SERVICE}-canary"
NOTIFICATIONS = f"""\
notifications:
  signing_key: {{secret: {NOTIFY_SECRET}, key: signing-key}}
  timeout: 500ms
  retries: 20
  backoff: 100ms
  sinks:
    - name: log
      kind: webhook
      url: {{secret: {NOTIFY_SECRET}, key: url}}
"""


def approval_hook(url: str) -> str:
    return f"""\
hooks:
  - name: approve
    type: confirm-promotion
    url: {url}
    timeout: 2s
    retries: 0
    headers:
      Authorization: {{secret: {HOOK_SECRET}, key: token}}
"""


def secrets_for(cluster: KubeCluster, namespace: str, receiver_url: str | None) -> None:
    """The sink's URL (unless None: a Secret without that key) and the signing key; the
    hook's token in a Secret of its own."""
    data = {"signing-key": KEY} | ({"url": receiver_url} if receiver_url else {})
    create_secret(cluster, namespace, NOTIFY_SECRET, data)
    create_secret(cluster, namespace, HOOK_SECRET, {"token": TOKEN})


def events(machine: Machine, *args: str) -> list[dict[str, Any]]:
    """The service's events as an operator reads them (the cluster's trail)."""
    done = machine.cli("events", *args)
    return [json.loads(line) for line in done.stdout.splitlines()]


def start_cursor(driver: Driver) -> int:
    """The trail record the sink started after, as the driver said it."""
    found = re.search(r"notifications: log start\(s\) at record (\d+)", driver.output())
    assert found, driver.output()[-3000:]
    return int(found.group(1))


def outbox(cluster: KubeCluster, namespace: str) -> dict[str, Any] | None:
    """The outbox ConfigMap's cursors, read as the admin (None: not written)."""
    try:
        found = client.CoreV1Api(cluster.api).read_namespaced_config_map(OUTBOX, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    loaded: dict[str, Any] = json.loads(found.data["outbox.json"])
    return loaded


def state(cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    found = client.CoreV1Api(cluster.api).read_namespaced_config_map(
        f"{SERVICE}-swiftdeploy-state", namespace
    )
    loaded: dict[str, Any] = json.loads(found.data["state.json"])
    return loaded


def weights(cluster: KubeCluster, namespace: str) -> dict[str, int]:
    route = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", SERVICE
    )
    (split,) = [r for r in route["spec"]["rules"] if not any(
        m.get("headers") for m in r.get("matches") or [])]  # fmt: skip
    return {ref["name"]: ref.get("weight", 1) for ref in split["backendRefs"]}


def delivered_through(receiver: Receiver, machine: Machine, after: int) -> list[str]:
    """The ids of the events after record `after`, once the receiver has accepted every
    one of them (in the trail's order or not: the caller compares)."""
    expected: list[str] = []

    def caught_up() -> bool:
        expected[:] = [e["id"] for e in events(machine) if e["seq"] > after]
        return bool(expected) and set(expected) <= set(receiver.accepted)

    wait_for("every event at the receiver", caught_up, timeout=90)
    return expected


def test_a_rollout_in_the_cluster_notifies_signed_once_in_order_and_waits_for_approval(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=200)
    driver = None
    with (
        Receiver("webhook", KEY.encode(), fail=0.3, seed=7) as receiver,
        hook_server() as hooks,
    ):
        try:
            # Given a sink whose URL and signing key are in a Secret, a confirm-promotion
            # hook whose token is in another (saying no for now), the Roles as
            # `kube rbac` prints them, and the driver running as its ServiceAccount
            hooks.answer("/approve", 403, {"approved": False})
            text = manifest_text(
                kube_namespace,
                plane.prometheus_url,
                steps="[{weight: 50}]",
                min_duration="5s",
                max_duration="90s",
                extra=QUICK_POLICY + NOTIFICATIONS + approval_hook(hooks.url("/approve")),
            )
            a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
            secrets_for(kube_cluster, kube_namespace, receiver.url)
            platform.cli("deploy")
            driver = start_driver(pod_machine(short_tmp / "pod", platform))
            wait_for("the driver's Lease", lambda: f"/{driver.pid}/" in lease_holder(
                kube_cluster, kube_namespace), driver=driver)  # fmt: skip

            # When machine A starts a rollout of v2 and follows it
            following = a.popen("rollout", "v2")

            # Then its passed step waits for the approval: the hook is asked again and
            # again, and nothing is promoted while it says no
            wait_for(
                "the step waiting for confirm-promotion",
                lambda: (
                    (state(kube_cluster, kube_namespace).get("awaiting") or {}).get("type")
                    == "confirm-promotion"
                ),
                timeout=120,
                driver=driver,
            )
            hooks.wait_for_calls("/approve", 2, timeout_s=60)
            status = json.loads(b.cli("status", "--json", "--window", "0").stdout)
            assert status["phase"] == "progressing", status
            assert status["awaiting"]["hooks"] == ["approve"], status
            assert weights(kube_cluster, kube_namespace).get(CANARY) == 50

            # When the hook says yes
            hooks.answer("/approve", 200, {"approved": True})

            # Then A's follower ends with the promotion
            out, err = following.communicate(timeout=180)
            assert following.returncode == 0, out + err + driver.output()[-3000:]
            assert "promoted" in out
            assert weights(kube_cluster, kube_namespace) == {STABLE: 100}

            # and each hook call carried the token from its Secret and was signed
            calls = hooks.calls_to("/approve")
            assert all(c.headers.get("Authorization") == TOKEN for c in calls)
            assert all(verify_signature(KEY.encode(), c.raw, c.headers) for c in calls)

            # and every event since the sink started reached the receiver exactly once
            # by Idempotency-Key, in the trail's order, signed with the Secret's key,
            # through 30% of deliveries answered 500
            after = start_cursor(driver)
            expected = delivered_through(receiver, b, after)
            assert receiver.accepted == expected
            assert receiver.duplicates == []
            assert all(d.signed for d in receiver.deliveries)
            assert receiver.attempts() > len(receiver.accepted)  # failures did happen
            types = [receiver.bodies[key]["type"] for key in expected]
            for name in ("rollout.started", "hook.confirm-promotion", "rollout.promoted"):
                assert f"dev.swiftdeploy.{name}.v1" in types, types
            results = [receiver.bodies[key]["data"]["result"] for key in expected
                       if "hook.confirm-promotion" in receiver.bodies[key]["type"]]  # fmt: skip
            assert (results[0], results[-1]) == ("refused", "ok"), results

            # and the outbox ConfigMap's cursor is at the last of them
            cursor = (outbox(kube_cluster, kube_namespace) or {})["sinks"]["log"]
            last = receiver.bodies[expected[-1]]["seq"]
            assert (cursor["seq"], cursor["attempts"]) == (last, 0), cursor

            # And B, as `deployer`, reads the outbox through status, but not the Secrets
            status = json.loads(b.cli("status", "--json", "--window", "0").stdout)
            (log,) = status["notifications"]
            assert (log["name"], log["pending"], log["dead_letters"]) == ("log", 0, [])
            assert log["delivered_to"] == last
            assert log["delivered"] == len(expected)
            human = b.cli("status", "--window", "0").stdout
            assert "notifications to log (webhook): up to date" in human, human
            said = human + json.dumps(status) + driver.output()
            for secret in (receiver.url, KEY, TOKEN):
                assert secret not in said
            as_operator = client.CoreV1Api(kube_cluster.api_client(a.kubeconfig))
            with pytest.raises(ApiException) as refused:
                as_operator.read_namespaced_secret(NOTIFY_SECRET, kube_namespace)
            assert refused.value.status == 403
        finally:
            if driver is not None:
                driver.stop()
            plane.close()


def test_a_driver_killed_with_a_delivery_pending_leaves_it_to_its_standby_once(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    drivers: list[Driver] = []
    with Receiver("webhook", KEY.encode(), down=True) as receiver:
        try:
            # Given the receiver down, the driver holding the Lease and a standby
            # (no Prometheus answers: every look holds)
            dead = f"http://127.0.0.1:{free_port()}"
            text = manifest_text(kube_namespace, dead, max_duration="300s", extra=NOTIFICATIONS)
            a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
            secrets_for(kube_cluster, kube_namespace, receiver.url)
            platform.cli("deploy")
            first = start_driver(pod_machine(short_tmp / "pod1", platform))
            drivers.append(first)
            wait_for("the driver's Lease", lambda: f"/{first.pid}/" in lease_holder(
                kube_cluster, kube_namespace), driver=first)  # fmt: skip
            standby = start_driver(pod_machine(short_tmp / "pod2", platform))
            drivers.append(standby)
            wait_for("the standby", lambda: "standing by" in standby.output(), driver=standby)

            # When A starts a rollout: its first events are tried and not delivered
            a.cli("rollout", "v2", "--detach")
            wait_for("deliveries tried", lambda: receiver.attempts() >= 2, driver=first)
            after = start_cursor(first)
            pending = receiver.deliveries[0].key
            before = (outbox(kube_cluster, kube_namespace) or {})["sinks"]["log"]
            assert before["seq"] == after, before
            assert receiver.accepted == []

            # When that driver's pod is killed (SIGKILL) and the receiver comes back
            first.kill()
            receiver.down = False

            # Then the standby takes the Lease and delivers what was pending
            wait_for("the standby's Lease", lambda: f"/{standby.pid}/" in lease_holder(
                kube_cluster, kube_namespace), timeout=90, driver=standby)  # fmt: skip
            wait_for("the pending event", lambda: pending in receiver.accepted, driver=standby)

            # and once B aborts the rollout, every event (those recorded before the kill
            # too) was delivered exactly once, in order, and the cursor moved to the last
            b.cli("abort", "--reason", "notifications test")
            wait_for("rolled back", lambda: state(kube_cluster, kube_namespace)["phase"]
                     == "rolled-back", driver=standby)  # fmt: skip
            expected = delivered_through(receiver, b, after)
            assert receiver.accepted == expected
            assert receiver.accepted[0] == pending
            assert receiver.duplicates == []
            assert [d.status for d in receiver.deliveries if d.key == pending][-1] == 200
            cursor = (outbox(kube_cluster, kube_namespace) or {})["sinks"]["log"]
            assert cursor["seq"] == receiver.bodies[expected[-1]]["seq"] > before["seq"]
            assert cursor["attempts"] == 0
            types = {receiver.bodies[key]["type"] for key in expected}
            assert "dev.swiftdeploy.driver.restarted.v1" in types, types
        finally:
            for driver in drivers:
                driver.stop()


@pytest.mark.parametrize("missing", ["sink-url", "hook-token"])
def test_a_missing_secret_key_stops_the_driver_before_its_session_in_one_line(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path, missing: str
) -> None:
    # Given a Secret without the key the manifest names: the sink's URL, or (no sink)
    # a hook's token
    with hook_server() as hooks:
        notify = (
            NOTIFICATIONS
            if missing == "sink-url"
            else (f"notifications:\n  signing_key: {{secret: {NOTIFY_SECRET}, key: signing-key}}\n")
        )
        text = manifest_text(
            kube_namespace,
            f"http://127.0.0.1:{free_port()}",
            extra=notify + approval_hook(hooks.url("/approve")),
        )
        _, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
        create_secret(kube_cluster, kube_namespace, NOTIFY_SECRET, {"signing-key": KEY})
        if missing == "sink-url":
            create_secret(kube_cluster, kube_namespace, HOOK_SECRET, {"token": TOKEN})
        else:
            create_secret(kube_cluster, kube_namespace, HOOK_SECRET, {"other": "x"})

        # When the driver starts
        driver = start_driver(pod_machine(short_tmp / "pod", platform))
        try:
            wait_for("the driver to exit", lambda: driver.process.poll() is not None,
                     log=driver.log)  # fmt: skip
        finally:
            driver.stop()

        # Then it exits 1 saying which key of which Secret is missing, in one line
        assert driver.process.returncode == 1, driver.output()
        secret, key = (NOTIFY_SECRET, "url") if missing == "sink-url" else (HOOK_SECRET, "token")
        lines = [line for line in driver.output().splitlines() if line.strip()]
        said = [line for line in lines if f"has no key {key}" in line]
        assert len(said) == 1, lines
        assert f"Secret {secret}" in said[0], lines
        assert "Traceback" not in driver.output()
        # and nothing was started or recorded: no driver record, no heartbeat, no
        # outbox, the Lease released, and status says no driver runs
        assert not [e for e in events(b) if ".driver." in e["type"]]
        core = client.CoreV1Api(kube_cluster.api)
        names = {c.metadata.name for c in core.list_namespaced_config_map(kube_namespace).items}
        assert OUTBOX not in names, names
        assert f"{SERVICE}-swiftdeploy-driver" not in names, names
        assert f"/{driver.pid}/" not in lease_holder(kube_cluster, kube_namespace)
        assert "no driver" in b.cli("status", "--window", "0").stdout
