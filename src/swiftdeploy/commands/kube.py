"""The Role the kubernetes runtime needs, and nothing more: each rule says which
command's call needs it. The tests run the whole lifecycle under this Role."""

from __future__ import annotations

import yaml

from swiftdeploy.errors import BadInputError

ROLE_NAME = "swiftdeploy"

# (apiGroup, resource, verbs, why). Writes are server-side applies: a PATCH, which
# the API server also authorizes as `create` when the object does not exist yet.
RULES = (
    ("apps", "deployments", ["get", "list", "create", "patch", "delete"], "the tracks"),
    ("", "services", ["create", "patch", "delete"], "one Service per track"),
    ("", "pods", ["list"], "readiness and `status`"),
    ("", "configmaps", ["get", "create", "patch"], "the rollout state"),
    ("", "secrets", ["create", "patch", "delete"], "the secret env values (never read back)"),
    (
        "gateway.networking.k8s.io",
        "httproutes",
        ["get", "create", "patch", "delete"],
        "the split",
    ),
    ("coordination.k8s.io", "leases", ["get", "create", "update", "delete"], "one driver"),
)


def role(namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": ROLE_NAME, "namespace": namespace},
        "rules": [
            {"apiGroups": [group], "resources": [resource], "verbs": verbs}
            for group, resource, verbs, _ in RULES
        ],
    }


def role_binding(namespace: str, subject: str) -> dict[str, object]:
    kind, _, name = subject.partition("/")
    if kind not in {"User", "ServiceAccount", "Group"} or not name:
        raise BadInputError(
            f"--subject {subject!r} is not KIND/NAME",
            hint="e.g. ServiceAccount/swiftdeploy or User/alice",
        )
    who: dict[str, str] = {"kind": kind, "name": name}
    if kind == "ServiceAccount":
        who["namespace"] = namespace
    else:
        who["apiGroup"] = "rbac.authorization.k8s.io"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": ROLE_NAME, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
        "subjects": [who],
    }


def rbac_yaml(namespace: str, subject: str) -> str:
    why = "".join(f"#   {resource}: {reason}\n" for _, resource, _, reason in RULES)
    return (
        "# The Role swiftdeploy's kubernetes runtime needs in its namespace:\n"
        + why
        + yaml.safe_dump(role(namespace), sort_keys=False)
        + "---\n# An example binding: adapt the subject.\n"
        + yaml.safe_dump(role_binding(namespace, subject), sort_keys=False)
    )
