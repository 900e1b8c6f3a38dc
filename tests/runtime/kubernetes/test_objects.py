"""The kubernetes runtime's objects and manifest rules, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftdeploy.errors import ManifestError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.metrics.prometheus import PrometheusProvider
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes import route as routes

MANIFEST = """\
apiVersion: swiftdeploy/v1
runtime: kubernetes
service:
  name: shop
  image: "reg.example/shop:{version}"
  version: v1
  port: 9000
  env: {MODE: fast, TOKEN: {value: s3cret}}
kubernetes: {namespace: team-a, gateway: {name: edge, namespace: infra}}
traffic: {canary_header: X-Canary}
metrics: {provider: prometheus, prometheus: {url: "http://prometheus.example:9090"}}
"""


@pytest.fixture
def manifest_path(tmp_path: Path) -> Path:
    path = tmp_path / "swiftdeploy.yaml"
    path.write_text(MANIFEST)
    return path


def test_the_route_splits_by_weight_and_pins_by_header(manifest_path: Path) -> None:
    manifest = load_manifest(manifest_path).manifest
    route = objects.http_route(manifest, 25, canary=True)
    assert route["spec"]["parentRefs"] == [{"name": "edge", "namespace": "infra"}]
    rules = route["spec"]["rules"]
    assert rules[0]["matches"][0]["headers"] == [{"name": "X-Canary", "value": "always"}]
    assert rules[0]["backendRefs"] == [{"name": "shop-canary", "port": 9000}]
    assert rules[1]["backendRefs"] == [{"name": "shop-stable", "port": 9000}]
    assert [r["weight"] for r in rules[2]["backendRefs"]] == [75, 25]
    assert routes.ours(manifest, route)["split"] == [
        ("shop-stable", 9000, 75),
        ("shop-canary", 9000, 25),
    ]


def test_without_a_canary_the_route_names_none(manifest_path: Path) -> None:
    manifest = load_manifest(manifest_path).manifest
    route = objects.http_route(manifest, 25, canary=False)
    names = {ref["name"] for rule in route["spec"]["rules"] for ref in rule["backendRefs"]}
    assert names == {"shop-stable"}
    assert routes.ours(manifest, route)["split"] == [("shop-stable", 9000, 100)]


def test_the_deployment_runs_the_image_at_the_version_behind_readiness(
    manifest_path: Path,
) -> None:
    manifest = load_manifest(manifest_path).manifest
    deployment = objects.deployment(manifest, "canary", "v2", 3)
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["version"] == "v2"
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "shop", "track": "canary"}
    container = pod["spec"]["containers"][0]
    assert container["image"] == "reg.example/shop:v2"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_secret_env_values_go_into_a_secret_the_deployment_only_references(
    manifest_path: Path,
) -> None:
    manifest = load_manifest(manifest_path).manifest
    env = objects.deployment(manifest, "stable", "v1", 2)["spec"]["template"]["spec"]["containers"][
        0
    ]["env"]
    assert {"name": "MODE", "value": "fast"} in env
    reference = {"secretKeyRef": {"name": "shop-swiftdeploy-env", "key": "TOKEN"}}
    assert {"name": "TOKEN", "valueFrom": reference} in env
    assert "s3cret" not in str(env)
    secret = objects.env_secret(manifest)
    assert secret is not None
    assert secret["stringData"] == {"TOKEN": "s3cret"}


def test_kubernetes_needs_the_clusters_prometheus(manifest_path: Path) -> None:
    manifest_path.write_text(MANIFEST.replace("provider: prometheus", "provider: scrape"))
    with pytest.raises(
        ManifestError, match=r"metrics.provider: prometheus and metrics.prometheus.url"
    ):
        load_manifest(manifest_path)


def test_kubernetes_queries_select_the_service_by_its_labels(manifest_path: Path) -> None:
    provider = PrometheusProvider(
        "http://prometheus.example:9090",
        client=None,  # type: ignore[arg-type]  # rendering asks nothing
        labels={"namespace": "team-a", "service": "shop"},
    )
    query = provider.render("requests", "canary", 30)
    assert 'namespace="team-a",app="shop",track="canary"' in query
