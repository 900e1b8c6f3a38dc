"""Smoke test of the test control plane: real apiserver, controllers, scheduler and kwok.

Talks to it only through the official ``kubernetes`` client, as the code under test would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.kube.controlplane import FAKE_NODE, POD_CIDR, SERVICE_CIDR, ControlPlane

TOOLS = Path(__file__).resolve().parents[2] / ".tools"
NAMESPACE = "smoke"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # pod_delay=0: kwok moves pods along at once instead of after its stock 1-6 s.
    cp = ControlPlane(TOOLS, tmp_path_factory.mktemp("kube"), pod_delay=0)
    cp.start(timeout=90)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="module")
def api(cluster: ControlPlane) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api_client:
        client.CoreV1Api(api_client).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        yield api_client


def eventually(probe: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_starts_a_versioned_control_plane(cluster: ControlPlane, api: client.ApiClient) -> None:
    assert cluster.startup_seconds is not None
    assert client.VersionApi(api).get_code().git_version == "v1.37.2"
    node = client.CoreV1Api(api).read_node(FAKE_NODE)
    ready = {c.type: c.status for c in node.status.conditions}["Ready"]
    assert ready == "True"
    assert set(cluster.memory_mb()) == set(ControlPlane.BINARIES)


def test_deployment_pods_run_on_the_fake_node_and_fill_the_service(
    api: client.ApiClient,
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "web"}
    container = client.V1Container(
        name="web",
        image="registry.invalid/web:1.0",  # never pulled: kwok only fakes pod status
        ports=[client.V1ContainerPort(container_port=8080)],
    )
    apps.create_namespaced_deployment(
        NAMESPACE,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web", labels=labels),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[container]),
                ),
            ),
        ),
    )
    service = core.create_namespaced_service(
        NAMESPACE,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    assert ip_address(service.spec.cluster_ip) in ip_network(SERVICE_CIDR)

    def available() -> client.V1Deployment | None:
        d = apps.read_namespaced_deployment("web", NAMESPACE)
        conditions = {c.type: c.status for c in d.status.conditions or []}
        ok = d.status.available_replicas == 2 and conditions.get("Available") == "True"
        return d if ok else None

    eventually(available, what="Deployment web Available with 2 replicas")

    pods = core.list_namespaced_pod(NAMESPACE, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name == FAKE_NODE
        assert ip_address(pod.status.pod_ip) in ip_network(POD_CIDR)

    def ready_endpoints() -> set[str] | None:
        slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            NAMESPACE, label_selector="kubernetes.io/service-name=web"
        )
        addresses = {
            a
            for s in slices.items
            for e in s.endpoints or []
            if e.conditions.ready
            for a in e.addresses
        }
        return addresses if len(addresses) == 2 else None

    assert eventually(ready_endpoints, what="2 ready endpoints") == {p.status.pod_ip for p in pods}


def test_a_watch_without_resource_version_sees_existing_and_new_objects(
    api: client.ApiClient,
) -> None:
    core = client.CoreV1Api(api)

    def config_map(name: str) -> client.V1ConfigMap:
        return client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"watched": "yes"})
        )

    core.create_namespaced_config_map(NAMESPACE, config_map("before"))
    seen: list[tuple[str, str]] = []
    watcher = watch.Watch()
    for event in watcher.stream(
        core.list_namespaced_config_map,
        NAMESPACE,
        label_selector="watched=yes",
        timeout_seconds=20,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if seen[-1] == ("ADDED", "before"):
            core.create_namespaced_config_map(NAMESPACE, config_map("after"))
        if seen[-1] == ("ADDED", "after"):
            watcher.stop()
    assert seen == [("ADDED", "before"), ("ADDED", "after")]


def _route(weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": name, "port": 80, "weight": weight}
                        for name, weight in weights.items()
                    ],
                }
            ],
        },
    }


def test_httproute_weighted_backends_round_trip_and_are_validated(
    api: client.ApiClient,
) -> None:
    routes = client.CustomObjectsApi(api)
    gvr = ("gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes")
    routes.create_namespaced_custom_object(*gvr, _route({"web-stable": 90, "web-canary": 10}))

    def weights() -> dict[str, int]:
        route = routes.get_namespaced_custom_object(*gvr, "web")
        refs = route["spec"]["rules"][0]["backendRefs"]
        return {r["name"]: r["weight"] for r in refs}

    assert weights() == {"web-stable": 90, "web-canary": 10}

    routes.patch_namespaced_custom_object(*gvr, "web", _route({"web-stable": 50, "web-canary": 50}))
    assert weights() == {"web-stable": 50, "web-canary": 50}

    # The CRD's OpenAPI schema is enforced: a weight must be 0..1000000.
    with pytest.raises(ApiException) as rejected:
        routes.patch_namespaced_custom_object(*gvr, "web", _route({"web-stable": -1}))
    assert rejected.value.status == 422
    assert weights() == {"web-stable": 50, "web-canary": 50}


def test_a_restricted_service_account_gets_only_what_rbac_grants(
    cluster: ControlPlane, api: client.ApiClient, tmp_path: Path
) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(
        NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="deployer"))
    )
    rbac.create_namespaced_role(
        NAMESPACE,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-deployments"),
            rules=[
                client.V1PolicyRule(
                    api_groups=["apps"], resources=["deployments"], verbs=["get", "list"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="deployer-reads"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-deployments"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="deployer")],
        ),
    )
    kubeconfig = cluster.write_kubeconfig(
        tmp_path / "deployer.kubeconfig", token=cluster.create_token(NAMESPACE, "deployer")
    )
    with config.new_client_from_config(config_file=str(kubeconfig)) as restricted:
        client.AppsV1Api(restricted).list_namespaced_deployment(NAMESPACE)
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(restricted).list_namespaced_secret(NAMESPACE)
        assert denied.value.status == 403
        assert "system:serviceaccount:smoke:deployer" in denied.value.body
