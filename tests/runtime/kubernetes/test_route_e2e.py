"""The service's HTTPRoute shared with other editors, on the real control plane, the CLI
as the user bound to the printed Role: others' rules survive every step and teardown,
and a route edited or deleted mid-step is restored, recorded, and the step's evidence
starts again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.support.cluster_driver import (
    Driver,
    Machine,
    lease_holder,
    pod_machine,
    prepare,
    start_driver,
    wait_for,
)
from bench.support.kube import KubeCluster
from bench.support.kubeproject import QUICK_POLICY, SERVICE, KubeProject, manifest_text
from kubernetes import client

from tests.support.kube import FakeDataPlane

STABLE, CANARY = f"{SERVICE}-stable", f"{SERVICE}-canary"
GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
THEIR_FILTER = {
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"set": [{"name": "X-Team", "value": "payments"}]},
}
ADMIN_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
    "filters": [THEIR_FILTER],
    "backendRefs": [{"name": "admin-ui", "port": 80}],
}


def _custom(project: KubeProject) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(project.cluster.api)


def edit_route(project: KubeProject, manager: str, change: Any) -> None:
    """Another field manager's read-change-write of the route (as `kubectl edit` does)."""
    route = project.route()
    assert route is not None
    change(route["spec"])
    _custom(project).replace_namespaced_custom_object(
        GROUP, VERSION, project.namespace, PLURAL, SERVICE, route, field_manager=manager
    )


def add_theirs(spec: dict[str, Any]) -> None:
    """Another team's /admin rule (with its filter), a filter on the split rule, and a
    hostname."""
    spec["rules"].append(ADMIN_RULE)
    for rule in spec["rules"]:
        if not any(m.get("headers") for m in rule.get("matches") or []) and any(
            ref["name"] == STABLE for ref in rule["backendRefs"]
        ):
            rule["filters"] = [THEIR_FILTER]
    spec["hostnames"] = ["demo.example"]


def theirs_intact(route: dict[str, Any] | None, split_filter: bool = True) -> None:
    assert route is not None
    spec = route["spec"]
    assert spec["hostnames"] == ["demo.example"]
    admin = [r for r in spec["rules"] if r["matches"][0]["path"]["value"] == "/admin"]
    assert len(admin) == 1, spec["rules"]
    assert admin[0]["filters"] == [THEIR_FILTER]
    assert admin[0]["backendRefs"][0]["name"] == "admin-ui"
    if split_filter:
        split = [
            r
            for r in spec["rules"]
            if r["matches"][0]["path"]["value"] == "/" and not r["matches"][0].get("headers")
        ]
        assert [r.get("filters") for r in split] == [[THEIR_FILTER]], spec["rules"]


def records(operator: Machine) -> list[dict[str, Any]]:
    """The service's trail in the cluster, as an operator's `audit export` gives it."""
    done = operator.cli("audit", "export", "--format", "json")
    found: list[dict[str, Any]] = json.loads(done.stdout)
    assert found, done.stderr
    return found


def driven(
    cluster: KubeCluster, namespace: str, root: Path, text: str
) -> tuple[Machine, Machine, Driver, KubeProject]:
    """The service's Roles, v1 deployed by the platform, the driver running in the
    cluster; operators A and B (the user bound to the printed operators' Role)."""
    a, b, platform = prepare(cluster, namespace, root, text)
    platform.cli("deploy")
    driver = start_driver(pod_machine(root / "pod", platform))
    wait_for(
        "the driver's Lease",
        lambda: f"/{driver.pid}/" in lease_holder(cluster, namespace),
        driver=driver,
    )
    return a, b, driver, KubeProject(a.root, namespace, cluster.admin_kubeconfig, cluster)


def test_another_managers_rule_and_filters_survive_a_rollout_and_teardown(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=200)
    driver: Driver | None = None
    try:
        # Given v1 deployed, another team's /admin rule, filters and hostname on the
        # service's route, and the driver running
        text = manifest_text(
            kube_namespace, plane.prometheus_url, min_duration="5s", extra=QUICK_POLICY
        )
        a, b, driver, read = driven(kube_cluster, kube_namespace, short_tmp, text)
        edit_route(read, "team-admin", add_theirs)

        # When A rolls v2 out through both steps to promotion
        following = a.popen("rollout", "v2")
        for weight in (10, 50):
            wait_for(
                f"the step at {weight}%",
                lambda w=weight: split_of(read.route()).get(CANARY) == w,
                driver=driver,
            )
            # Then at every step their rule, filters and hostname are there
            theirs_intact(read.route())
        out, _ = following.communicate(timeout=180)
        assert following.returncode == 0, out
        assert "promoted" in out
        theirs_intact(read.route())
        assert split_of(read.route()) == {STABLE: 100}

        # When a rollout of v3 is rolled back by B at its first step
        following = a.popen("rollout", "v3")
        wait_for("v3's first step", lambda: split_of(read.route()).get(CANARY) == 10, driver=driver)
        theirs_intact(read.route())
        b.cli("rollback", timeout=90)
        following.communicate(timeout=120)
        wait_for("the rollback", lambda: split_of(read.route()) == {STABLE: 100}, driver=driver)
        theirs_intact(read.route())
        # and nobody touched SwiftDeploy's part, so nothing was warned about
        assert "changed SwiftDeploy's part" not in driver.output()

        # When the service is torn down, SwiftDeploy's rules go and theirs stays
        driver.stop()
        pod = driver.machine
        pod.cli("teardown")
        route = read.route()
        theirs_intact(route, split_filter=False)
        assert route is not None
        names = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
        assert names == {"admin-ui"}
        assert route["spec"]["parentRefs"][0]["name"]  # the Gateway they attach to stays
    finally:
        if driver is not None:
            driver.stop()
        plane.close()


def wait_route(project: KubeProject, what: str, check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        route = project.route()
        if route is not None and check(route):
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {route}"
        time.sleep(0.1)


def split_of(route: dict[str, Any] | None) -> dict[str, int]:
    """The catch-all `/` rule's weights (not the /admin rule's), by Service name."""
    assert route is not None
    for rule in route["spec"]["rules"]:
        match = (rule.get("matches") or [{}])[0]
        if match.get("path", {}).get("value", "/") == "/" and not match.get("headers"):
            return {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}
    return {}


def set_all_to_canary(spec: dict[str, Any]) -> None:
    for rule in spec["rules"]:
        if not any(m.get("headers") for m in rule.get("matches") or []):
            for ref in rule["backendRefs"]:
                ref["weight"] = 100 if ref["name"] == CANARY else 0


def test_a_route_edited_then_deleted_mid_step_is_restored_and_the_step_starts_again(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=100)
    driver: Driver | None = None
    try:
        # Given a rollout of v2 at its only step (20%), which needs 15 s at that split
        text = manifest_text(
            kube_namespace,
            plane.prometheus_url,
            steps="[{weight: 20}]",
            min_duration="15s",
            max_duration="120s",
            extra=QUICK_POLICY,
        )
        a, _, driver, read = driven(kube_cluster, kube_namespace, short_tmp, text)
        following = a.popen("rollout", "v2")
        wait_route(read, "step 1", lambda r: split_of(r).get(CANARY) == 20, timeout=60)

        # When an admin sends the canary everything
        edit_route(read, "kubectl-edit", set_all_to_canary)
        edited = time.time()
        # Then the next look restores the state's split
        wait_route(read, "the split restored", lambda r: split_of(r).get(CANARY) == 20)

        # When the route is deleted
        time.sleep(2)
        _custom(read).delete_namespaced_custom_object(
            GROUP, VERSION, read.namespace, PLURAL, SERVICE
        )
        deleted = time.time()
        # Then it is re-created at the state's split
        wait_route(read, "the route re-created", lambda r: split_of(r).get(CANARY) == 20)

        # and the rollout still promotes
        out, _ = following.communicate(timeout=180)
        assert following.returncode == 0, out
        assert "promoted" in out
        # the driver having said so in one line each, naming who changed the split
        warnings = [line for line in driver.output().splitlines() if "warning:" in line]
        assert any(
            "split 0/100 (stable/canary) (by field manager 'kubectl-edit')" in w
            and "restored to 80/20" in w
            for w in warnings
        ), warnings
        assert any("was missing" in w for w in warnings), warnings

        # The trail holds both drifts, and the step passed only on evidence counted
        # after the last one, for at least min_duration: not on the other split's
        trail = records(a)
        drifts = [r for r in trail if r.get("kind") == "transition" and r.get("event") == "drift"]
        assert len(drifts) == 2, [(r.get("kind"), r.get("event"), r.get("reason")) for r in trail]
        assert "kubectl-edit" in drifts[0]["reason"]
        assert "was missing" in drifts[1]["reason"]
        assert all("the step's evidence starts again" in d["reason"] for d in drifts)
        passed = [r for r in trail if r.get("kind") == "decision" and r.get("action") == "promote"]
        assert len(passed) == 1
        assert passed[0]["decision"]["input"]["step"]["elapsed_s"] >= 15
        assert _ts(passed[0]) - _ts(drifts[1]) >= 15
        assert _ts(drifts[0]) >= edited - 1
        assert _ts(drifts[1]) >= deleted - 1
        # and the operator's `audit why` names them before the decision
        said = a.cli("audit", "why").stdout.splitlines()
        assert [line for line in said if "route drift: " in line] == [
            f"{d['ts']}: {d['reason']}" for d in drifts
        ], said
    finally:
        if driver is not None:
            driver.stop()
        plane.close()


def _ts(record: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")).timestamp()
