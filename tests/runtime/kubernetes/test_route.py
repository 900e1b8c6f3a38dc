"""SwiftDeploy's part of a shared HTTPRoute, without a cluster: which rules are its own,
what a change of the split writes, what drift and another manager's edit read as."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.manifest import Manifest, load_manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes import route as routes

MANIFEST = """\
apiVersion: swiftdeploy/v1
runtime: kubernetes
service: {name: shop, image: "reg.example/shop:{version}", version: v1, port: 9000}
kubernetes: {namespace: team-a}
metrics: {provider: prometheus, prometheus: {url: "http://prometheus.example:9090"}}
"""
ADMIN_RULE = {
    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
    "backendRefs": [{"name": "admin-ui", "port": 80, "weight": 1}],
}
HEADER_FILTER = {
    "type": "RequestHeaderModifier",
    "requestHeaderModifier": {"add": [{"name": "X-Team", "value": "payments"}]},
}


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    path = tmp_path / "swiftdeploy.yaml"
    path.write_text(MANIFEST)
    return load_manifest(path).manifest


def served(route: dict[str, Any]) -> dict[str, Any]:
    """The route as the API server gives it back: matches and refs defaulted."""
    route = copy.deepcopy(route)
    for rule in route["spec"]["rules"]:
        rule.setdefault("matches", [{}])
        for match in rule["matches"]:
            match.setdefault("path", {"type": "PathPrefix", "value": "/"})
            for header in match.get("headers", []):
                header.setdefault("type", "Exact")
        for ref in rule["backendRefs"]:
            ref.setdefault("group", "")
            ref.setdefault("kind", "Service")
            ref.setdefault("weight", 1)
    return route


def shared(manifest: Manifest, weight: int = 10) -> dict[str, Any]:
    """SwiftDeploy's route at `weight` after another team added an /admin rule, a filter
    on the split rule and a hostname."""
    route = served(objects.http_route(manifest, weight, canary=True))
    route["spec"]["rules"][2]["filters"] = [HEADER_FILTER]
    route["spec"]["rules"].insert(1, ADMIN_RULE)
    route["spec"]["hostnames"] = ["shop.example"]
    return route


def test_swiftdeploys_rules_are_known_by_their_matches_and_backends(manifest: Manifest) -> None:
    route = shared(manifest)
    roles = [routes.role_of(manifest, rule) for rule in route["spec"]["rules"]]
    assert roles == ["always", None, "never", "split"]
    # a catch-all to someone else's Service is not SwiftDeploy's, nor a second header
    assert routes.role_of(manifest, {"backendRefs": [{"name": "other", "port": 1}]}) is None
    two_headers = {
        "matches": [
            {"headers": [{"name": "X-Canary", "value": "always"}, {"name": "a", "value": "b"}]}
        ],
        "backendRefs": [{"name": "shop-canary", "port": 9000}],
    }
    assert routes.role_of(manifest, two_headers) is None


def test_a_new_split_changes_only_swiftdeploys_backend_refs(manifest: Manifest) -> None:
    # Given a route another team added a rule, a filter and a hostname to
    route = shared(manifest, weight=10)

    # When SwiftDeploy moves the split to 50%
    rules = routes.merged_rules(manifest, route, 50, canary=True)

    # Then their rule is still there, in place, and their filter is on the split rule
    assert rules[1] == ADMIN_RULE
    assert rules[3]["filters"] == [HEADER_FILTER]
    assert routes.ours(manifest, {"spec": {"rules": rules}})["split"] == [
        ("shop-stable", 9000, 50),
        ("shop-canary", 9000, 50),
    ]
    # and the refs keep what the server defaulted (no spurious difference)
    assert rules[3]["backendRefs"][0]["kind"] == "Service"


def test_without_a_canary_only_the_always_rule_goes(manifest: Manifest) -> None:
    rules = routes.merged_rules(manifest, shared(manifest), 0, canary=False)
    assert [routes.role_of(manifest, rule) for rule in rules] == [None, "never", "split"]
    assert rules[0] == ADMIN_RULE
    assert rules[2]["filters"] == [HEADER_FILTER]


def test_a_lost_rule_is_added_back_after_the_others(manifest: Manifest) -> None:
    route = shared(manifest)
    del route["spec"]["rules"][3]  # someone deleted the split rule
    rules = routes.merged_rules(manifest, route, 10, canary=True)
    assert [routes.role_of(manifest, rule) for rule in rules] == ["always", None, "never", "split"]


def test_drift_in_words(manifest: Manifest) -> None:
    route = shared(manifest, weight=10)
    found = routes.ours(manifest, route)
    want = {r: routes._refs(refs) for r, refs in routes.wanted(manifest, 10, True).items()}
    assert routes.differences(manifest, found, want) == ""

    route["spec"]["rules"][3]["backendRefs"][0]["weight"] = 0
    route["spec"]["rules"][3]["backendRefs"][1]["weight"] = 100
    del route["spec"]["rules"][0]
    words = routes.differences(manifest, routes.ours(manifest, route), want)
    assert words == "split 0/100 (stable/canary); no `X-Canary: always` rule"


def test_the_manager_that_changed_the_rules_is_named(manifest: Manifest) -> None:
    route = shared(manifest)
    route["metadata"]["managedFields"] = [
        {
            "manager": "swiftdeploy",
            "time": "2026-12-07T10:00:00Z",
            "fieldsV1": {"f:spec": {"f:rules": {}}},
        },
        {
            "manager": "kubectl-edit",
            "time": "2026-12-07T10:05:00Z",
            "fieldsV1": {"f:spec": {"f:rules": {}}},
        },
        {"manager": "labeller", "time": "2026-12-07T10:09:00Z", "fieldsV1": {"f:metadata": {}}},
    ]
    assert routes.changed_by(route) == "field manager 'kubectl-edit'"
    assert routes.changed_by({"metadata": {}}) == "another field manager"


def test_what_swiftdeploy_wrote_survives_the_annotation(manifest: Manifest) -> None:
    route = shared(manifest)
    found = routes.ours(manifest, route)
    route["metadata"]["annotations"] = {routes.WRITTEN: routes._written_text(found)}
    assert routes.written_of(route) == found
    route["metadata"]["annotations"] = {routes.WRITTEN: "not json"}
    assert routes.written_of(route) is None
