"""The service's HTTPRoute, shared with whoever else edits it.

SwiftDeploy owns three rules of the route `<svc>`, known by their matches and by
pointing only at the service's track Services:
- `X-Canary: always` -> the canary (only while a canary is routed),
- `X-Canary: never` -> the stable,
- the catch-all `/` -> the weighted split between the two.
Of those rules it writes only the `backendRefs` (their weights and ports); their
filters, timeouts and everything else in the route (other rules, hostnames,
parentRefs, labels) belong to whoever set them and are written back as read.

`spec.rules` is an atomic list for server-side apply, so the route is never applied
with force: it is read, changed in memory, and written with a merge patch carrying
the resourceVersion read (optimistic concurrency: a 409 means someone wrote it in
between, and the whole read-change-write starts again). It is created whole only when
it does not exist, and deleted at teardown only when nothing but SwiftDeploy's rules
is in it.

What SwiftDeploy last wrote of its rules is kept in an annotation, so a later read can
tell a person's or another controller's change to SwiftDeploy's part (warned about,
naming the field manager) from a change SwiftDeploy is about to make.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from swiftdeploy.errors import OperationalError
from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import FIELD_MANAGER, Kube, KubeApiError, calling

Obj = dict[str, Any]
Role = Literal["always", "never", "split"]
ROLES: tuple[Role, ...] = ("always", "never", "split")
WRITTEN = "swiftdeploy.dev/backends"  # annotation: SwiftDeploy's rules' backends as written
MERGE_PATCH = "application/merge-patch+json"
ATTEMPTS = 5  # read-change-write rounds before giving up on a route that keeps changing
Ref = tuple[str, int, int]  # (Service name, port, weight)


# --- pure: which rules are ours, what they should say ---------------------------------


def _path_is_root(match: Obj) -> bool:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    return bool(path.get("type", "PathPrefix") == "PathPrefix" and path.get("value") == "/")


def _header_of(match: Obj) -> tuple[str, str] | Literal[False] | None:
    """(name, value) of a match's one Exact header; None with no header; False for
    anything SwiftDeploy never writes (other match kinds, several headers)."""
    if match.get("queryParams") or match.get("method") or not _path_is_root(match):
        return False
    headers = match.get("headers") or []
    if not headers:
        return None
    if len(headers) != 1 or headers[0].get("type", "Exact") != "Exact":
        return False
    return str(headers[0].get("name", "")).lower(), str(headers[0].get("value", ""))


def role_of(manifest: Manifest, rule: Obj) -> Role | None:
    """Which of SwiftDeploy's rules this is, or None for someone else's."""
    tracks = {objects.track_name(manifest, "stable"), objects.track_name(manifest, "canary")}
    for ref in rule.get("backendRefs") or []:
        if ref.get("kind", "Service") != "Service" or ref.get("group", "") not in ("", None):
            return None
        if ref.get("name") not in tracks:
            return None
    matches = rule.get("matches") or [{}]
    if len(matches) != 1:
        return None
    header = _header_of(matches[0])
    if header is False:
        return None
    if header is None:
        return "split"
    name, value = header
    if name == manifest.traffic.canary_header.lower() and value in ("always", "never"):
        return "always" if value == "always" else "never"
    return None


def wanted(manifest: Manifest, weight: int, canary: bool) -> dict[Role, list[Obj]]:
    """The backendRefs of each of SwiftDeploy's rules for this split (no `always` rule
    without a canary: no rule names a canary Service that does not exist)."""
    rules = {
        role_of(manifest, rule): rule["backendRefs"]
        for rule in objects.http_route(manifest, weight, canary)["spec"]["rules"]
    }
    return {role: refs for role, refs in rules.items() if role is not None}


def _refs(refs: list[Obj]) -> list[Ref]:
    return [(str(r.get("name")), int(r.get("port", 0)), int(r.get("weight", 1))) for r in refs]


def ours(manifest: Manifest, route: Obj) -> dict[Role, list[Ref]]:
    """SwiftDeploy's rules in a route as read (the first of each role)."""
    found: dict[Role, list[Ref]] = {}
    for rule in route.get("spec", {}).get("rules") or []:
        role = role_of(manifest, rule)
        if role is not None and role not in found:
            found[role] = _refs(rule.get("backendRefs") or [])
    return found


def _merged_refs(current: list[Obj], desired: list[Obj]) -> list[Obj]:
    """The desired refs, each keeping what else someone set on the same Service's ref
    (its filters, say)."""
    by_name = {ref.get("name"): ref for ref in current}
    return [{**by_name.get(ref["name"], {}), **ref} for ref in desired]


def merged_rules(manifest: Manifest, route: Obj, weight: int, canary: bool) -> list[Obj]:
    """The route's rules with SwiftDeploy's set to this split: others' rules untouched
    and in place, ours changed only in their backendRefs, a missing one added at the
    end, one no longer wanted (`always` without a canary) taken out."""
    desired = wanted(manifest, weight, canary)
    rules: list[Obj] = []
    seen: set[Role] = set()
    for rule in route.get("spec", {}).get("rules") or []:
        role = role_of(manifest, rule)
        if role is None or role in seen:
            rules.append(rule)
            continue
        seen.add(role)
        if role in desired:
            refs = _merged_refs(rule.get("backendRefs") or [], desired[role])
            rules.append({**rule, "backendRefs": refs})
    template = objects.http_route(manifest, weight, canary)["spec"]["rules"]
    for rule in template:
        role = role_of(manifest, rule)
        if role is not None and role not in seen:
            rules.append(rule)
    return rules


def written_of(route: Obj) -> dict[Role, list[Ref]] | None:
    """What SwiftDeploy last wrote of its rules (the annotation), None if unknown."""
    text = route.get("metadata", {}).get("annotations", {}).get(WRITTEN)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {
        role: [(str(n), int(p), int(w)) for n, p, w in data[role]] for role in ROLES if role in data
    }


def _written_text(refs: dict[Role, list[Ref]]) -> str:
    return json.dumps({role: refs[role] for role in ROLES if role in refs}, separators=(",", ":"))


def split_words(manifest: Manifest, refs: list[Ref] | None) -> str:
    """A split as people say it: '90/10 (stable/canary)'; 'no split rule' without one."""
    if refs is None:
        return "no split rule"
    stable, canary = (objects.track_name(manifest, t) for t in ("stable", "canary"))
    total = sum(w for _, _, w in refs) or 1
    share = {name: round(100 * w / total) for name, _, w in refs}
    return f"{share.get(stable, 0)}/{share.get(canary, 0)} (stable/canary)"


def differences(
    manifest: Manifest, found: dict[Role, list[Ref]], want: dict[Role, list[Ref]]
) -> str:
    """What of SwiftDeploy's part differs, in words; '' when nothing does."""
    header = manifest.traffic.canary_header
    parts = []
    if found.get("split") != want.get("split"):
        parts.append(f"split {split_words(manifest, found.get('split'))}")
    for role in ("always", "never"):
        if found.get(role) == want.get(role):
            continue
        if role not in found:
            parts.append(f"no `{header}: {role}` rule")
        elif role not in want:
            parts.append(f"a `{header}: {role}` rule with no canary to route to")
        else:
            names = ", ".join(name for name, _, _ in found[role]) or "nothing"
            parts.append(f"`{header}: {role}` to {names}")
    return "; ".join(parts)


def changed_by(route: Obj) -> str:
    """The field manager that last wrote the route's rules, other than SwiftDeploy."""
    latest: tuple[str, str] | None = None
    for entry in route.get("metadata", {}).get("managedFields") or []:
        manager = str(entry.get("manager", "?"))
        fields = entry.get("fieldsV1", {}).get("f:spec", {})
        if manager == FIELD_MANAGER or "f:rules" not in fields:
            continue
        at = str(entry.get("time", ""))
        if latest is None or at >= latest[1]:
            latest = (manager, at)
    return f"field manager {latest[0]!r}" if latest else "another field manager"


# --- the calls --------------------------------------------------------------------------


class RouteKeeper:
    """Reads and writes SwiftDeploy's part of the route; `warn` says, in one line, what
    another manager changed of it."""

    def __init__(self, kube: Kube, manifest: Manifest, warn: Callable[[str], None]) -> None:
        self.kube = kube
        self.manifest = manifest
        self.warn = warn
        self.name = objects.route_name(manifest)
        self.where = f"HTTPRoute {kube.namespace}/{self.name}"

    def read(self) -> Obj | None:
        return self.kube.get("HTTPRoute", self.name)

    def canary_weight(self) -> int | None:
        """The canary's share in SwiftDeploy's split rule; None without a route."""
        route = self.read()
        if route is None:
            return None
        canary = objects.track_name(self.manifest, "canary")
        refs = ours(self.manifest, route).get("split") or []
        total = sum(w for _, _, w in refs)
        return next((round(100 * w / total) for n, _, w in refs if n == canary and total), 0)

    def apply(self, weight: int, canary: bool) -> None:
        """SwiftDeploy's rules to this split, leaving everything else as it is."""
        self._sync(weight, canary, self.read())

    def reconcile(self, weight: int, canary: bool) -> str | None:
        """Restore SwiftDeploy's rules if the route lost them or says another split;
        the drift in words, or None when the route was as the state says."""
        route = self.read()
        if route is None:
            drift = f"{self.where} was missing"
        else:
            found = ours(self.manifest, route)
            want = {
                role: _refs(refs) for role, refs in wanted(self.manifest, weight, canary).items()
            }
            drift = differences(self.manifest, found, want)
            if not drift:
                return None
            drift = f"{self.where} had {drift} (by {changed_by(route)})"
        self._sync(weight, canary, route, quiet=True)
        words = split_words(self.manifest, wanted_refs(self.manifest, weight, canary))
        return f"{drift}; restored to {words}"

    def _sync(self, weight: int, canary: bool, route: Obj | None, quiet: bool = False) -> None:
        for _ in range(ATTEMPTS):
            try:
                if route is None:
                    self._create(weight, canary)
                else:
                    self._patch(route, weight, canary, quiet)
                return
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
            route = self.read()  # someone wrote it in between: read again, change again
        raise self._kept_changing()

    def _kept_changing(self) -> OperationalError:
        return OperationalError(
            f"{self.where} changed under every one of {ATTEMPTS} writes",
            hint="another controller keeps rewriting the route: see its managedFields",
        )

    def _create(self, weight: int, canary: bool) -> None:
        """The whole route, as SwiftDeploy's field manager (409 if it exists by now)."""
        route = objects.http_route(self.manifest, weight, canary)
        refs = {role: _refs(r) for role, r in wanted(self.manifest, weight, canary).items()}
        route["metadata"]["annotations"] = {WRITTEN: _written_text(refs)}
        with calling(f"create {self.where}"):
            self.kube.request(
                "POST",
                self.kube._path("HTTPRoute"),
                query={"fieldManager": FIELD_MANAGER},
                body=route,
            )

    def _patch(self, route: Obj, weight: int, canary: bool, quiet: bool) -> None:
        found = ours(self.manifest, route)
        written = written_of(route)
        if not quiet and written is not None and written != found:
            theirs = differences(self.manifest, found, written)
            self.warn(
                f"{changed_by(route)} changed SwiftDeploy's part of {self.where} ({theirs}); "
                "SwiftDeploy sets it back to the rollout's split"
            )
        rules = merged_rules(self.manifest, route, weight, canary)
        after = ours(self.manifest, {"spec": {"rules": rules}})
        text = _written_text(after)
        if rules == route.get("spec", {}).get("rules") and written == after:
            return  # already so: no write
        self._write(route, {"metadata": {"annotations": {WRITTEN: text}}, "spec": {"rules": rules}})

    def _write(self, route: Obj, patch: Obj) -> None:
        """A merge patch that the API server refuses (409) if the route changed since
        `route` was read."""
        patch["metadata"]["resourceVersion"] = route["metadata"]["resourceVersion"]
        with calling(f"update {self.where}"):
            self.kube.request(
                "PATCH",
                self.kube._path("HTTPRoute", self.name),
                query={"fieldManager": FIELD_MANAGER},
                body=patch,
                content_type=MERGE_PATCH,
            )

    def teardown(self) -> None:
        """Take SwiftDeploy's rules out; delete the route only if nothing else is in it."""
        for _ in range(ATTEMPTS):
            route = self.read()
            if route is None:
                return
            rules = route.get("spec", {}).get("rules") or []
            others = [rule for rule in rules if role_of(self.manifest, rule) is None]
            try:
                if not others:
                    self.kube.delete("HTTPRoute", self.name, route["metadata"]["resourceVersion"])
                else:
                    self._write(
                        route,
                        {"metadata": {"annotations": {WRITTEN: None}}, "spec": {"rules": others}},
                    )
                return
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
        raise self._kept_changing()


def wanted_refs(manifest: Manifest, weight: int, canary: bool) -> list[Ref]:
    return _refs(wanted(manifest, weight, canary)["split"])
