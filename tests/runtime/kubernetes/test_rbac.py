"""The Roles `swiftdeploy kube rbac` prints: every get, update, patch and delete names
its objects, and on a real control plane neither the driver's nor the operators' Role
reaches another app's Secret, Deployment, Service, ConfigMap or Lease in the same
namespace, while each can do its own part."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import yaml
from bench.support.kube import KubeCluster
from bench.support.kubeproject import MANIFEST, apply_rbac
from bench.support.project import SWIFTDEPLOY

from swiftdeploy.manifest import load_manifest
from swiftdeploy.runtime.kubernetes import api, objects, rbac, trail
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError

NAMED_VERBS = {"get", "update", "patch", "delete"}
OTHER = "billing"  # another team's app in the same namespace


def write_manifest(root: Path, namespace: str, service: str = "demo") -> Path:
    subprocess.run([SWIFTDEPLOY, "init", str(root)], check=True, capture_output=True)
    path = root / "swiftdeploy.yaml"
    path.write_text(
        MANIFEST.format(
            service=service,
            namespace=namespace,
            prometheus="http://127.0.0.1:9",
            start_timeout="30s",
            min_duration="1s",
            max_duration="4s",
            steps="[{weight: 10}]",
        )
    )
    return path


def printed(manifest: Path, *options: str) -> str:
    done = subprocess.run(
        [SWIFTDEPLOY, "kube", "rbac", "-f", str(manifest), *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_every_rule_that_can_name_its_objects_does(short_tmp: Path) -> None:
    manifest = load_manifest(write_manifest(short_tmp, "team-a")).manifest
    for role in (rbac.driver_role(manifest), rbac.operator_role(manifest)):
        for rule in role["rules"]:
            verbs = set(rule["verbs"])
            if verbs & NAMED_VERBS:
                # Then get, update, patch and delete name the service's own objects
                assert rule["resourceNames"], rule
                assert verbs <= NAMED_VERBS, rule
                assert all(
                    name.startswith("demo-") or name == "demo" for name in rule["resourceNames"]
                )
            else:
                # And create and list, which names cannot limit, are rules of their own
                assert "resourceNames" not in rule, rule
                assert len(verbs) == 1, rule
                assert verbs <= {"create", "list"}, rule
    # And the operators have no Secret at all, nor any write but requests
    operator = rbac.operator_role(manifest)["rules"]
    assert not [r for r in operator if "secrets" in r["resources"]]
    writes = [r for r in operator if set(r["verbs"]) - {"get", "list"}]
    assert {r["resources"][0] for r in writes} == {"configmaps"}
    # while the driver alone reads the audit key
    driver = rbac.driver_role(manifest)["rules"]
    key = [r for r in driver if r.get("resourceNames") == [trail.key_secret_name(manifest)]]
    assert [r["verbs"] for r in key] == [["get"]]


def test_the_printed_roles_say_why_and_bind_the_driver_to_its_service_account(
    short_tmp: Path,
) -> None:
    text = printed(write_manifest(short_tmp, "team-a"), "--subject", "User/alice")
    documents = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in documents] == [
        "ServiceAccount", "Role", "RoleBinding", "Role", "RoleBinding",
    ]  # fmt: skip
    account, driver, driver_binding, operator, operator_binding = documents
    assert account["metadata"] == {
        "name": "demo-swiftdeploy-driver",
        "namespace": "team-a",
        "labels": {
            "app.kubernetes.io/managed-by": "swiftdeploy",
            "swiftdeploy.dev/service": "demo",
        },
    }
    assert driver_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-swiftdeploy-driver", "namespace": "team-a"}
    ]
    assert driver_binding["roleRef"]["name"] == driver["metadata"]["name"]
    assert operator["metadata"]["name"] == "demo-swiftdeploy-operator"
    assert operator_binding["subjects"] == [
        {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    # And every rule is preceded by a comment saying why; the lists say what they show
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("- apiGroups:")]
    assert len(rules) == len(driver["rules"]) + len(operator["rules"])
    assert all(lines[i - 1].startswith("# ") for i in rules)
    assert "a list shows every Pod of the namespace" in text.replace("\n# ", " ")


def test_a_subject_that_is_not_kind_slash_name_is_one_line(short_tmp: Path) -> None:
    done = subprocess.run(
        [SWIFTDEPLOY, "kube", "rbac", "-f", str(write_manifest(short_tmp, "team-a")),
         "--subject", "alice"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--subject 'alice' is not KIND/NAME" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- on the real control plane -----------------------------------------------------------


def kube_as(kubeconfig: Path, namespace: str) -> Kube:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return Kube(api.client_for(configuration), namespace)


def others_objects(namespace: str) -> list[dict[str, Any]]:
    """Another app's objects, as its own team (or SwiftDeploy for it) made them."""
    meta = {"namespace": namespace, "labels": {"app": OTHER}}
    labels = {"app": OTHER, "track": "stable"}
    return [
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": f"{OTHER}-swiftdeploy-audit-key", **meta},
         "stringData": {"key": "billing's"}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": f"{OTHER}-db", **meta}, "stringData": {"password": "x"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": f"{OTHER}-stable", **meta},
         "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"containers": [{"name": "app", "image": "b:1"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{OTHER}-stable", **meta},
         "spec": {"selector": labels, "ports": [{"port": 80}]}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"{OTHER}-swiftdeploy-state", **meta}, "data": {"a": "b"}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": {"name": f"{OTHER}-swiftdeploy", **meta},
         "spec": {"holderIdentity": "billing-driver"}},
    ]  # fmt: skip


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except KubeApiError as exc:
        return exc.status == 403
    return False


def wait_allowed(call: Callable[[], object], timeout: float = 15) -> None:
    """A RoleBinding takes effect within moments of its creation."""
    deadline = time.monotonic() + timeout
    while refused(call):
        assert time.monotonic() < deadline, "the RoleBinding never took effect"
        time.sleep(0.2)


def test_neither_role_reaches_another_apps_objects_in_the_same_namespace(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given another app's Secrets, Deployment, Service, ConfigMap and Lease
    admin = kube_as(kube_cluster.admin_kubeconfig, kube_namespace)
    theirs = others_objects(kube_namespace)
    for obj in theirs:
        admin.create(obj)
    # and demo's Roles as printed, the driver's bound to `drv`, the operators' to `ops`
    path = write_manifest(short_tmp, kube_namespace)
    manifest = load_manifest(path).manifest
    apply_rbac(
        kube_cluster,
        kube_namespace,
        printed(path, "--subject", "User/ops", "--driver-subject", "User/drv"),
    )
    driver, operator = (
        kube_as(kube_cluster.user_kubeconfig(user, kube_namespace), kube_namespace)
        for user in ("drv", "ops")
    )
    state = objects.state_config_map(manifest, "{}")
    wait_allowed(lambda: driver.apply(state))
    wait_allowed(lambda: operator.get("ConfigMap", objects.state_name(manifest)))

    for kube in (driver, operator):
        for obj in theirs:
            kind, name = obj["kind"], obj["metadata"]["name"]
            current = admin.get(kind, name)
            assert current is not None
            label = {"apiVersion": obj["apiVersion"], "kind": kind,
                     "metadata": {"name": name, "labels": {"hijacked": "yes"}}}  # fmt: skip
            # When either user reads, labels (the PATCH that returned a Secret's data),
            # replaces or deletes it
            # Then the API server refuses every one
            assert refused(lambda: kube.get(kind, name)), (kube, kind, name)  # noqa: B023
            assert refused(lambda: kube.apply(label)), (kube, kind, name)  # noqa: B023
            assert refused(lambda: kube.replace(current)), (kube, kind, name)  # noqa: B023
            assert refused(lambda: kube.delete(kind, name)), (kube, kind, name)  # noqa: B023
    # And the other app's objects are as they were
    for obj in theirs:
        found = admin.get(obj["kind"], obj["metadata"]["name"])
        assert found is not None
        assert "hijacked" not in found["metadata"].get("labels", {})

    # While each does its own part: the driver reads demo's audit key, the operators
    # cannot, nor delete the Lease that keeps one driver (they read who holds it)
    key = trail.key_secret_name(manifest)
    admin.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": key}})
    assert driver.get("Secret", key) is not None
    assert refused(lambda: operator.get("Secret", key))
    lease = objects.lease_name(manifest)
    admin.create(
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": lease}}
    )
    assert operator.get("Lease", lease) is not None
    assert refused(lambda: operator.delete("Lease", lease))
    assert refused(lambda: operator.apply(state))
    driver.delete("Lease", lease)


def test_the_driver_reads_the_secrets_notifications_name_and_keeps_its_outbox(
    short_tmp: Path,
) -> None:
    path = write_manifest(short_tmp, "team-a")
    manifest = yaml.safe_load(path.read_text())
    manifest["notifications"] = {
        "signing_key": {"secret": "demo-notify", "key": "signing"},
        "sinks": [{"name": "oncall", "kind": "slack",
                   "url": {"secret": "demo-slack", "key": "url"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(manifest))
    loaded = load_manifest(path).manifest
    driver = rbac.driver_role(loaded)["rules"]
    secrets = [r for r in driver if r["resources"] == ["secrets"] and r["verbs"] == ["get"]]
    assert [r["resourceNames"] for r in secrets] == [
        [trail.key_secret_name(loaded)], ["demo-notify", "demo-slack"]
    ]  # fmt: skip
    outbox = [r for r in driver if r.get("resourceNames") == ["demo-swiftdeploy-outbox"]]
    assert [r["verbs"] for r in outbox] == [["get", "patch"]]
    operator = rbac.operator_role(loaded)["rules"]
    assert [r["verbs"] for r in operator if r.get("resourceNames") == ["demo-swiftdeploy-outbox"]
            ] == [["get"]]  # fmt: skip
