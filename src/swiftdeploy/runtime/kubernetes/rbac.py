"""The two Roles a service needs in its namespace, and nothing more (pure: no calls).

- `driver_role`: the driver's ServiceAccount `<svc>-swiftdeploy-driver`; it alone writes
  the tracks, the route, the state, the trail and the Lease, and reads the audit key.
- `operator_role`: people's CLIs; they read where the rollout stands and its record,
  and file requests to the driver. No Secret at all.

Every get, update, patch and delete names its objects (`resourceNames`), so neither
Role reaches another app's objects in the same namespace. Two kinds of verb cannot be
limited by name, and are rules of their own, so they are easy to see:
- create: RBAC sees no name on a create (the name is in the body). A create cannot
  change or read an object that exists (409).
- list: a list returns every object of its kind in the namespace. The Roles list
  pods (their names are made by the cluster) and ConfigMaps (the trail's segments and
  the requests, found by label), so they can read every Pod and ConfigMap of the
  namespace, though change none: keep a service (or a team) in a namespace of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes import control, objects, outbox, trail

RBAC_GROUP = "rbac.authorization.k8s.io"
GATEWAY_GROUP = "gateway.networking.k8s.io"
Obj = dict[str, Any]
SERVICE_LABEL = "swiftdeploy.dev/service"


@dataclass(frozen=True)
class Rule:
    group: str
    resource: str
    verbs: tuple[str, ...]
    names: tuple[str, ...]  # () only for create and list, which names cannot limit
    why: str

    def as_policy_rule(self) -> Obj:
        rule: Obj = {"apiGroups": [self.group], "resources": [self.resource]}
        if self.names:
            rule["resourceNames"] = list(self.names)
        rule["verbs"] = list(self.verbs)
        return rule


def driver_name(manifest: Manifest) -> str:
    """The driver's ServiceAccount, Role and RoleBinding."""
    return control.driver_name(manifest)


def operator_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-operator"


def _tracks(manifest: Manifest) -> tuple[str, ...]:
    return (objects.track_name(manifest, "stable"), objects.track_name(manifest, "canary"))


def driver_rules(manifest: Manifest) -> tuple[Rule, ...]:
    tracks = _tracks(manifest)
    state = objects.state_name(manifest)
    requests = tuple(control.request_names(manifest))
    return (
        Rule("apps", "deployments", ("get", "patch", "delete"), tracks,
             "the tracks: applied (a PATCH), read for readiness and as orphans, deleted"),
        Rule("apps", "deployments", ("create",), (),
             "a track's first apply creates it"),
        Rule("", "services", ("patch", "delete"), tracks, "one Service per track"),
        Rule("", "services", ("create",), (), "a track's first apply creates its Service"),
        Rule("", "pods", ("list",), (),
             "readiness and `status`: pods' names are the cluster's, so by label (a list "
             "shows every Pod of the namespace)"),
        Rule("", "secrets", ("patch", "delete"), (objects.env_secret_name(manifest),),
             "the secret env values (written, never read back)"),
        Rule("", "secrets", ("get",), (trail.key_secret_name(manifest),),
             "the audit trail's MAC and signing keys: the driver alone reads them"),
        *_notification_secrets(manifest),
        Rule("", "secrets", ("create",), (), "the env values' and the audit key's first write"),
        Rule("", "configmaps", ("get", "update", "patch"),
             (state, driver_name(manifest), trail.public_name(manifest)),
             "the rollout state, the driver's heartbeat, the trail's public key"),
        Rule("", "configmaps", ("get", "update"), (trail.tail_name(manifest),),
             "the trail's open tail, replaced with its resourceVersion"),
        Rule("", "configmaps", ("get", "patch"), (outbox.outbox_name(manifest),),
             "the notifications outbox: each sink's cursor and dead letters"),
        Rule("", "configmaps", ("get", "update", "delete"), requests,
             "people's requests: taken and answered in place, abandoned ones deleted"),
        Rule("", "configmaps", ("create",), (),
             "the first state, the trail's sealed (immutable) segments and its tail"),
        Rule("", "configmaps", ("list",), (),
             "the trail's segments and the requests, by label (a list shows every "
             "ConfigMap of the namespace)"),
        Rule(GATEWAY_GROUP, "httproutes", ("get", "update", "patch", "delete"),
             (objects.route_name(manifest),), "the split between the tracks"),
        Rule(GATEWAY_GROUP, "httproutes", ("create",), (), "the route's first write"),
        Rule("coordination.k8s.io", "leases", ("get", "update", "delete"),
             (objects.lease_name(manifest),), "one driver at a time"),
        Rule("coordination.k8s.io", "leases", ("create",), (), "the Lease's first holder"),
    )  # fmt: skip


def _notification_secrets(manifest: Manifest) -> tuple[Rule, ...]:
    """The Secrets the manifest's notifications and hooks name (URLs, tokens, the
    signing key): read once when the driver starts, each by name."""
    from swiftdeploy.manifest import KubeSecret

    names = sorted({ref.secret for ref in manifest.secret_refs() if isinstance(ref, KubeSecret)})
    if not names:
        return ()
    why = "notifications' and hooks' secrets (manifest), read when the driver starts"
    return (Rule("", "secrets", ("get",), tuple(names), why),)


def operator_rules(manifest: Manifest) -> tuple[Rule, ...]:
    return (
        Rule("", "configmaps", ("get",),
             (objects.state_name(manifest), driver_name(manifest), trail.public_name(manifest)),
             "`status`: the rollout state and the driver's heartbeat; the trail's public "
             "key for `audit verify`"),
        Rule("", "configmaps", ("get",), (outbox.outbox_name(manifest),),
             "`status`: notifications pending and dead letters"),
        Rule("", "configmaps", ("get", "delete"), tuple(control.request_names(manifest)),
             "a request's answer, read and then removed by the CLI that filed it"),
        Rule("", "configmaps", ("create",), (),
             "requests to the driver (promote, pause, resume, abort, weight, rollback)"),
        Rule("", "configmaps", ("list",), (),
             "the audit trail's segments, by label (a list shows every ConfigMap of the "
             "namespace)"),
        Rule("", "pods", ("list",), (),
             "`status`: pods' names are the cluster's, so by label (a list shows every Pod "
             "of the namespace)"),
        Rule("apps", "deployments", ("get",), _tracks(manifest),
             "`status`: the versions the tracks run"),
        Rule(GATEWAY_GROUP, "httproutes", ("get",), (objects.route_name(manifest),),
             "`status`: the split the route has"),
        Rule("coordination.k8s.io", "leases", ("get",), (objects.lease_name(manifest),),
             "`status`: which driver holds the service"),
    )  # fmt: skip


def _labels(manifest: Manifest) -> dict[str, str]:
    """Not the `app` label teardown deletes by: who may do what outlives the service."""
    return {objects.MANAGED_BY: "swiftdeploy", SERVICE_LABEL: manifest.service.name}


def _role(manifest: Manifest, name: str, rules: tuple[Rule, ...]) -> Obj:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": {
            "name": name,
            "namespace": manifest.kubernetes.namespace,
            "labels": _labels(manifest),
        },
        "rules": [rule.as_policy_rule() for rule in rules],
    }


def driver_role(manifest: Manifest) -> Obj:
    return _role(manifest, driver_name(manifest), driver_rules(manifest))


def operator_role(manifest: Manifest) -> Obj:
    return _role(manifest, operator_name(manifest), operator_rules(manifest))


def driver_service_account(manifest: Manifest) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": driver_name(manifest),
            "namespace": manifest.kubernetes.namespace,
            "labels": _labels(manifest),
        },
    }


def subject(manifest: Manifest, kind: str, name: str) -> Obj:
    """A RoleBinding's subject: a ServiceAccount of the namespace, a User or a Group."""
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": manifest.kubernetes.namespace}
    return {"kind": kind, "name": name, "apiGroup": RBAC_GROUP}


def role_binding(manifest: Manifest, role: Obj, subjects: list[Obj]) -> Obj:
    name = role["metadata"]["name"]
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": name,
            "namespace": manifest.kubernetes.namespace,
            "labels": _labels(manifest),
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
        "subjects": subjects,
    }
