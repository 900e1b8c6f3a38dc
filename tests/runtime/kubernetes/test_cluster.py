"""The test control plane itself: it starts, schedules pods onto the fake node, serves the
Gateway API and enforces RBAC, as the kubernetes backend's tests assume."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bench.support.kube import (
    GATEWAY_GROUP,
    GATEWAY_NAME,
    GATEWAY_NAMESPACE,
    KUBE_TOOLS,
    KubeCluster,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kube import FakeDataPlane

RBAC_GROUP = "rbac.authorization.k8s.io"


def deployment(name: str, image: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def http_route(name: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": service, "port": 80, "weight": weight}
                        for service, weight in weights.items()
                    ]
                }
            ],
        },
    }


def wait_for(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


def test_cluster_starts_with_a_ready_node_and_a_gateway(
    kube_cluster: KubeCluster, record_property: Any
) -> None:
    # Given the session's cluster (started by the fixture)
    record_property("kube_start_seconds", round(kube_cluster.start_seconds, 1))
    # Then it reports the version setup built
    built = (KUBE_TOOLS / "VERSION").read_text().split()[1]
    assert client.VersionApi(kube_cluster.api).get_code().git_version == built
    # And its one node is a Ready kwok node
    nodes = client.CoreV1Api(kube_cluster.api).list_node().items
    assert [n.metadata.name for n in nodes] == [kube_cluster.node_name]
    ready = {c.type: c.status for c in nodes[0].status.conditions}
    assert ready["Ready"] == "True"
    # And the Gateway routes attach to exists
    gateway = client.CustomObjectsApi(kube_cluster.api).get_namespaced_custom_object(
        GATEWAY_GROUP, "v1", GATEWAY_NAMESPACE, "gateways", GATEWAY_NAME
    )
    assert gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["from"] == "All"


def test_a_deployment_becomes_available_with_running_pods(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_cluster.api)
    core = client.CoreV1Api(kube_cluster.api)
    labels = {"app": "web", "track": "stable"}
    # When a Deployment with 2 replicas is created
    apps.create_namespaced_deployment(
        kube_namespace, deployment("web-stable", "registry.example/web:v1", 2, labels)
    )

    # Then it becomes Available with both replicas
    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web-stable", kube_namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return status.available_replicas == 2 and conditions.get("Available") == "True"

    wait_for("the Deployment to be Available", available)
    # And its pods run on the fake node, with pod IPs
    pods = core.list_namespaced_pod(kube_namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" and p.status.pod_ip for p in pods)
    assert {p.spec.node_name for p in pods} == {kube_cluster.node_name}


def test_pods_created_while_the_node_is_cordoned_never_become_ready(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_cluster.api)
    core = client.CoreV1Api(kube_cluster.api)

    def ready_replicas() -> int:
        status = apps.read_namespaced_deployment_status("web-canary", kube_namespace).status
        return int(status.ready_replicas or 0)

    # Given the fake node cordoned (how a test makes a canary that never becomes ready)
    with kube_cluster.unschedulable():
        # When a Deployment is created
        labels = {"app": "web", "track": "canary"}
        apps.create_namespaced_deployment(
            kube_namespace, deployment("web-canary", "registry.example/web:v2", 1, labels)
        )

        # Then its pod stays Pending as Unschedulable, and no replica is ready
        def unschedulable() -> bool:
            pods = core.list_namespaced_pod(kube_namespace, label_selector="app=web").items
            return bool(pods) and all(
                any(c.reason == "Unschedulable" for c in p.status.conditions or []) for p in pods
            )

        wait_for("the pod to be Unschedulable", unschedulable, timeout=15)
        assert ready_replicas() == 0
    # And once the node is uncordoned, the replica becomes ready
    wait_for("the replica to be ready", lambda: ready_replicas() == 1, timeout=15)


def test_an_httproute_with_weighted_backends_is_accepted_and_read_back(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_cluster.api)
    # When an HTTPRoute splits 80/20 between two Services
    custom.create_namespaced_custom_object(
        GATEWAY_GROUP,
        "v1",
        kube_namespace,
        "httproutes",
        http_route("web", {"web-stable": 80, "web-canary": 20}),
    )
    # Then the API server keeps the weights
    route = custom.get_namespaced_custom_object(
        GATEWAY_GROUP, "v1", kube_namespace, "httproutes", "web"
    )
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert {r["name"]: r["weight"] for r in refs} == {"web-stable": 80, "web-canary": 20}
    # And the CRD's schema is enforced: a negative weight is refused
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            GATEWAY_GROUP,
            "v1",
            kube_namespace,
            "httproutes",
            http_route("bad", {"web-stable": -1}),
        )
    assert refused.value.status == 422


def test_rbac_forbids_a_user_until_a_role_is_bound(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    # Given a user with no RoleBinding
    with kube_cluster.api_client(kube_cluster.user_kubeconfig("alice", kube_namespace)) as api:
        check_rbac(kube_cluster, kube_namespace, client.AppsV1Api(api))


def check_rbac(kube_cluster: KubeCluster, kube_namespace: str, user: client.AppsV1Api) -> None:
    body = deployment("web", "registry.example/web:v1", 1, {"app": "web"})
    # When it creates a Deployment, Then it is Forbidden
    with pytest.raises(ApiException) as forbidden:
        user.create_namespaced_deployment(kube_namespace, body)
    assert forbidden.value.status == 403
    # Given a Role allowing Deployments, bound to the user
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api)
    rbac.create_namespaced_role(
        kube_namespace,
        {
            "metadata": {"name": "deployer"},
            "rules": [
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        kube_namespace,
        {
            "metadata": {"name": "deployer"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "deployer",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}
            ],
        },
    )

    # When it tries again (the authorizer's cache catches up within moments)
    def create() -> bool:
        try:
            user.create_namespaced_deployment(kube_namespace, body)
        except ApiException as exc:
            if exc.status != 403:
                raise
            return False
        return True

    # Then the Deployment is created
    wait_for("the RoleBinding to take effect", create, timeout=10)
    assert user.read_namespaced_deployment("web", kube_namespace).metadata.name == "web"


def test_the_fake_data_plane_splits_load_by_the_route_and_follows_the_deployments(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_cluster.api)
    core = client.CoreV1Api(kube_cluster.api)
    # Given stable v1 and canary v2 Deployments of "web", each with its Service
    for track, version in (("stable", "v1"), ("canary", "v2")):
        labels = {"app": "web", "track": track}
        apps.create_namespaced_deployment(
            kube_namespace, deployment(f"web-{track}", f"registry.example/web:{version}", 1, labels)
        )
        core.create_namespaced_service(
            kube_namespace,
            {
                "metadata": {"name": f"web-{track}", "labels": {"app": "web"}},
                "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )
    # And an HTTPRoute sending them 80/20, and X-Canary: always to the canary
    weights = {"web-stable": 80, "web-canary": 20}
    route = http_route("web", weights)
    header = {"name": "X-Canary", "value": "always"}
    route["spec"]["rules"].insert(
        0, {"matches": [{"headers": [header]}], "backendRefs": [{"name": "web-canary", "port": 80}]}
    )
    client.CustomObjectsApi(kube_cluster.api).create_namespaced_custom_object(
        GATEWAY_GROUP, "v1", kube_namespace, "httproutes", route
    )
    # When the fake data plane runs
    with FakeDataPlane(kube_cluster, kube_namespace, "web", rate_rps=50) as plane:
        selector = f'namespace="{kube_namespace}",app="web"'
        requests = f'sum by (track) (http_requests_total{{{selector},route="/"}})'

        def enough() -> dict[str, float] | None:
            seen = {s["metric"]["track"]: float(s["value"][1]) for s in plane.query(requests)}
            return seen if len(seen) == 2 and sum(seen.values()) >= 400 else None

        # Then Prometheus sees both tracks' requests, about in the route's ratio
        seen = wait_for("400 requests in Prometheus", enough, timeout=40)
        expected = weights["web-canary"] / sum(weights.values())
        assert abs(seen["canary"] / sum(seen.values()) - expected) < 0.05, seen
        # And each track's series carries the version of its Deployment's image
        info = plane.query(f"app_info{{{selector}}}")
        assert {s["metric"]["track"]: s["metric"]["version"] for s in info} == {
            "stable": "v1",
            "canary": "v2",
        }
        # And no request failed
        assert all(c.failed == 0 for c in plane.counts().values()), plane.counts()
        # And a request with the canary header goes to the canary, every time
        assert {plane.request({"x-canary": "always"}) for _ in range(5)} == {("canary", 200)}

        # When the canary is scaled to 0 and the stable image moves to v3
        apps.patch_namespaced_deployment("web-canary", kube_namespace, {"spec": {"replicas": 0}})
        v3 = {"containers": [{"name": "app", "image": "registry.example/web:v3"}]}
        apps.patch_namespaced_deployment(
            "web-stable", kube_namespace, {"spec": {"template": {"spec": v3}}}
        )
        # Then the canary's process is gone and stable's runs v3
        wait_for(
            "the stand-ins to follow",
            lambda: {t: p.version for t, p in plane.pods().items()} == {"stable": "v3"},
            timeout=20,
        )
