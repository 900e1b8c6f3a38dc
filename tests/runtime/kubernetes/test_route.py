"""SwiftDeploy's part of a shared HTTPRoute, without a cluster: which rules are its own,
what a change of the split writes, what drift and another manager's edit read as."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from swiftdeploy.errors import OperationalError
from swiftdeploy.manifest import Manifest, load_manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes import route as routes
from swiftdeploy.runtime.kubernetes.api import KubeApiError

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


# --- RouteKeeper against an API server in memory ------------------------------------


class MemoryKube:
    """The route's calls as the API server answers them: a merge patch carrying an old
    resourceVersion is refused (409), as is a create of a route that exists.
    `interfere` writes happen just before each of SwiftDeploy's next writes."""

    namespace = "team-a"

    def __init__(self, route: dict[str, Any] | None = None) -> None:
        self.route = copy.deepcopy(route)
        self.version = 1
        self.writes = 0
        self.interfere = 0
        if self.route is not None:
            self.route["metadata"]["resourceVersion"] = "1"

    def _path(self, kind: str, name: str | None = None) -> str:
        return f"/{kind}/{name or ''}"

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.route)

    def _bump(self) -> None:
        self.version += 1
        assert self.route is not None
        self.route["metadata"]["resourceVersion"] = str(self.version)

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = kwargs["body"]
        assert kwargs["query"] == {"fieldManager": "swiftdeploy"}  # never forced
        if self.interfere and self.route is not None:
            self.interfere -= 1
            self._bump()
        if method == "POST":
            if self.route is not None:
                raise ApiException(status=409, reason="AlreadyExists")
            self.route = copy.deepcopy(body)
            self._bump()
        else:
            assert self.route is not None
            if body["metadata"]["resourceVersion"] != self.route["metadata"]["resourceVersion"]:
                raise ApiException(status=409, reason="Conflict")
            annotations = self.route["metadata"].setdefault("annotations", {})
            for key, value in body["metadata"].get("annotations", {}).items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
            self.route["spec"]["rules"] = body["spec"]["rules"]
            self._bump()
        self.writes += 1
        return {}

    def delete(self, kind: str, name: str, resource_version: str | None = None) -> None:
        assert self.route is not None
        if resource_version != self.route["metadata"]["resourceVersion"]:
            raise KubeApiError("conflict", status=409)
        self.route = None
        self.writes += 1


def keeper(manifest: Manifest, kube: MemoryKube) -> tuple[routes.RouteKeeper, list[str]]:
    said: list[str] = []
    return routes.RouteKeeper(kube, manifest, said.append), said  # type: ignore[arg-type]


def test_a_new_split_is_one_write_and_the_same_split_none(manifest: Manifest) -> None:
    kube = MemoryKube(shared(manifest, weight=10))
    route, said = keeper(manifest, kube)
    route.apply(50, canary=True)
    assert kube.writes == 1
    assert kube.route is not None
    assert ADMIN_RULE in kube.route["spec"]["rules"]
    assert kube.route["spec"]["hostnames"] == ["shop.example"]
    assert route.canary_weight() == 50
    route.apply(50, canary=True)
    assert kube.writes == 1
    assert said == []


def test_a_write_that_meets_another_writer_is_done_again_on_a_fresh_read(
    manifest: Manifest,
) -> None:
    kube = MemoryKube(shared(manifest, weight=10))
    kube.interfere = 2  # two writers get in before SwiftDeploy's first two writes
    route, _ = keeper(manifest, kube)
    route.apply(50, canary=True)
    assert route.canary_weight() == 50
    # a route that changes under every write is an error, not a forced write
    kube.interfere = routes.ATTEMPTS
    with pytest.raises(OperationalError, match="changed under every one of 5 writes"):
        route.apply(10, canary=True)


def test_another_managers_change_to_swiftdeploys_part_is_warned_and_set_back(
    manifest: Manifest,
) -> None:
    kube = MemoryKube(shared(manifest, weight=10))
    route, said = keeper(manifest, kube)
    route.apply(10, canary=True)  # written by SwiftDeploy: the annotation says 90/10
    assert kube.route is not None
    split = kube.route["spec"]["rules"][3]["backendRefs"]
    split[0]["weight"], split[1]["weight"] = 0, 100
    kube.route["metadata"]["managedFields"] = [
        {"manager": "kubectl-edit", "time": "2026-12-07T10:05:00Z",
         "fieldsV1": {"f:spec": {"f:rules": {}}}},
    ]  # fmt: skip
    route.apply(50, canary=True)
    assert said == [
        "field manager 'kubectl-edit' changed SwiftDeploy's part of HTTPRoute team-a/shop "
        "(split 0/100 (stable/canary)); SwiftDeploy sets it back to the rollout's split"
    ]
    assert route.canary_weight() == 50


def test_reconcile_restores_a_missing_or_changed_route_and_says_what_it_found(
    manifest: Manifest,
) -> None:
    kube = MemoryKube()
    route, said = keeper(manifest, kube)
    assert route.reconcile(10, canary=True) == (
        "HTTPRoute team-a/shop was missing; restored to 90/10 (stable/canary)"
    )
    writes = kube.writes
    assert route.reconcile(10, canary=True) is None  # as the state says: no write
    assert kube.writes == writes
    assert kube.route is not None
    kube.route["spec"]["rules"][2]["backendRefs"][1]["weight"] = 90
    found = route.reconcile(10, canary=True)
    assert found is not None
    assert found.startswith("HTTPRoute team-a/shop had split 50/50 (stable/canary) (by ")
    assert found.endswith("; restored to 90/10 (stable/canary)")
    assert route.canary_weight() == 10
    assert said == []  # the look records the drift; no second warning


def test_teardown_leaves_others_rules_and_deletes_a_route_that_is_only_ours(
    manifest: Manifest,
) -> None:
    kube = MemoryKube(shared(manifest))
    route, _ = keeper(manifest, kube)
    route.apply(10, canary=True)
    route.teardown()
    assert kube.route is not None
    assert kube.route["spec"]["rules"] == [ADMIN_RULE]
    assert routes.WRITTEN not in kube.route["metadata"].get("annotations", {})

    only_ours = MemoryKube(served(objects.http_route(manifest, 10, canary=True)))
    route, _ = keeper(manifest, only_ours)
    route.teardown()
    assert only_ours.route is None
