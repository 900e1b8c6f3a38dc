"""`swiftdeploy kube rbac`: the two Roles of a service (runtime/kubernetes/rbac.py) as
YAML to `kubectl apply -f -`, each rule commented with why it is there, with the
driver's ServiceAccount and a RoleBinding per Role."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import yaml

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Manifest

if TYPE_CHECKING:  # imported when used: the kubernetes client is an extra
    from swiftdeploy.runtime.kubernetes import rbac

SUBJECT_KINDS = ("User", "Group", "ServiceAccount")


def require_kubernetes(manifest: Manifest, command: str) -> None:
    """`kube` commands serve runtime: kubernetes only: any other project is refused before
    the kubernetes client is asked for (it may not be installed, and it is not needed)."""
    if manifest.runtime != "kubernetes":
        raise BadInputError(
            f"{command}: this project is runtime: {manifest.runtime}, not runtime: kubernetes",
            hint="kube commands are for runtime: kubernetes projects;"
            " `swiftdeploy init --runtime kubernetes` writes one",
        )


def parse_subject(manifest: Manifest, text: str, option: str) -> dict[str, object]:
    from swiftdeploy.runtime.kubernetes import rbac

    kind, _, name = text.partition("/")
    if kind not in SUBJECT_KINDS or not name:
        raise BadInputError(
            f"{option} {text!r} is not KIND/NAME",
            hint="e.g. ServiceAccount/swiftdeploy, User/alice or Group/team-a",
        )
    return rbac.subject(manifest, kind, name)


def _dump(obj: object) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None)


def _commented_role(role: dict[str, object], rules: tuple[rbac.Rule, ...]) -> str:
    """The Role with each rule preceded by a comment saying why."""
    head = {key: value for key, value in role.items() if key != "rules"}
    lines = [_dump(head), "rules:\n"]
    for rule in rules:
        lines.append(textwrap.fill(rule.why, 88, initial_indent="# ", subsequent_indent="# "))
        lines.append("\n" + _dump([rule.as_policy_rule()]))
    return "".join(lines)


def rbac_yaml(manifest: Manifest, subject: str, driver_subject: str | None = None) -> str:
    """The driver's ServiceAccount, Role and RoleBinding (to `driver_subject`, its
    ServiceAccount by default), then the operators' Role bound to `subject`."""
    require_kubernetes(manifest, "kube rbac")
    from swiftdeploy.runtime.kubernetes import rbac

    service, namespace = manifest.service.name, manifest.kubernetes.namespace
    driver_role, operator_role = rbac.driver_role(manifest), rbac.operator_role(manifest)
    driver_who = (
        parse_subject(manifest, driver_subject, "--driver-subject")
        if driver_subject
        else rbac.subject(manifest, "ServiceAccount", rbac.driver_name(manifest))
    )
    operators = parse_subject(manifest, subject, "--subject")
    return (
        f"# {service} in namespace {namespace}: two Roles, and nothing more. Every get,\n"
        "# update, patch and delete names its objects; create and list cannot be limited\n"
        "# by name (a list shows every object of its kind in the namespace): keep a service\n"
        "# or a team in a namespace of its own.\n"
        "#\n# The driver: it alone changes the service and writes its record.\n"
        + _dump(rbac.driver_service_account(manifest))
        + "---\n"
        + _commented_role(driver_role, rbac.driver_rules(manifest))
        + "---\n"
        + _dump(rbac.role_binding(manifest, driver_role, [driver_who]))
        + "---\n# The operators: read the rollout and its record, file requests; no Secret.\n"
        + _commented_role(operator_role, rbac.operator_rules(manifest))
        + "---\n# An example binding: adapt the subject.\n"
        + _dump(rbac.role_binding(manifest, operator_role, [operators]))
    )
