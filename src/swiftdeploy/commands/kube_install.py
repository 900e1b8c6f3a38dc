"""`swiftdeploy kube install`: the service's driver in the cluster, so that operators'
CLIs on any machine start and steer rollouts through the API server.

What it applies (server-side apply, so a re-run updates in place), or prints for GitOps:
- the driver's ServiceAccount, Role and RoleBinding (runtime/kubernetes/rbac.py: the
  Role names its objects);
- `<svc>-swiftdeploy-driver-project`: a ConfigMap with the manifest, the policies and
  a kubeconfig that uses the pod's ServiceAccount token (the same client code path as
  on a laptop, with `tokenFile`);
- the Deployment `<svc>-swiftdeploy-driver` (one replica, Recreate: the Lease keeps one
  driver anyway) running `swiftdeploy drive --controller` from the driver image
  (`swiftdeploy driver-image`, no registry needed).

Its objects are labelled `swiftdeploy.dev/part=driver`, not with the tracks' `app=<svc>`
label, so no track selector (and no teardown of the tracks) ever matches them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from swiftdeploy import __version__
from swiftdeploy.manifest import LoadedManifest, Manifest
from swiftdeploy.runtime.kubernetes import rbac
from swiftdeploy.runtime.kubernetes.api import APPLY, FIELD_MANAGER, Kube, calling
from swiftdeploy.runtime.kubernetes.control import PART_LABEL, SERVICE_LABEL, driver_name

DRIVER_REPOSITORY = "swiftdeploy-driver"
DEFAULT_IMAGE = f"{DRIVER_REPOSITORY}:{__version__}"
PROJECT_MOUNT = "/etc/swiftdeploy"  # the ConfigMap, read-only
WORK_DIR = "/var/lib/swiftdeploy"  # an emptyDir: the project as the driver runs it
# where Kubernetes mounts the pod's ServiceAccount token and CA (a path, no secret)
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105
IN_CLUSTER_CONTEXT = "in-cluster"
Obj = dict[str, Any]

# The API paths of the kinds only `install` writes (runtime/kubernetes/api.py has the
# service's own).
_PATHS = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Deployment": ("/apis/apps/v1", "deployments"),
}


def project_name(manifest: Manifest) -> str:
    return f"{driver_name(manifest)}-project"


def driver_labels(manifest: Manifest) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "swiftdeploy-driver",
        "app.kubernetes.io/managed-by": "swiftdeploy",
        SERVICE_LABEL: manifest.service.name,
        PART_LABEL: "driver",
    }


def in_cluster_kubeconfig(namespace: str) -> str:
    """A kubeconfig for the pod: the API server's Service, the ServiceAccount's CA and
    its token file (re-read by the client, so a rotated token keeps working)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": IN_CLUSTER_CONTEXT,
                    "cluster": {
                        "server": "https://kubernetes.default.svc",
                        "certificate-authority": f"{TOKEN_DIR}/ca.crt",
                    },
                }
            ],
            "users": [{"name": "driver", "user": {"tokenFile": f"{TOKEN_DIR}/token"}}],
            "contexts": [
                {
                    "name": IN_CLUSTER_CONTEXT,
                    "context": {
                        "cluster": IN_CLUSTER_CONTEXT,
                        "user": "driver",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": IN_CLUSTER_CONTEXT,
        },
        sort_keys=False,
    )


def project_files(loaded: LoadedManifest) -> dict[str, tuple[str, str]]:
    """ConfigMap key -> (path in the project, text): the manifest, the kubeconfig and
    the policies (tests of the policies stay behind)."""
    manifest = loaded.manifest
    files = {
        "swiftdeploy.yaml": ("swiftdeploy.yaml", loaded.path.read_text(encoding="utf-8")),
        "kubeconfig": ("kubeconfig", in_cluster_kubeconfig(manifest.kubernetes.namespace)),
    }
    policies = loaded.project_dir / manifest.policy.directory
    for path in sorted(policies.glob("*")) if policies.is_dir() else []:
        if path.is_file() and not path.name.endswith("_test.rego"):
            relative = Path(manifest.policy.directory) / path.name
            files[f"policies.{path.name}"] = (relative.as_posix(), path.read_text("utf-8"))
    return files


def project_config_map(loaded: LoadedManifest) -> Obj:
    manifest = loaded.manifest
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(manifest, project_name(manifest)),
        "data": {key: text for key, (_, text) in project_files(loaded).items()},
    }


def driver_deployment(loaded: LoadedManifest, image: str) -> Obj:
    manifest = loaded.manifest
    selector = {SERVICE_LABEL: manifest.service.name, PART_LABEL: "driver"}
    items = [{"key": key, "path": path} for key, (path, _) in project_files(loaded).items()]
    # the ConfigMap is read-only: the driver runs a copy, with its state directory
    start = (
        f"cp -rL {PROJECT_MOUNT}/. {WORK_DIR}/ && exec swiftdeploy drive --controller"
        f" -f {WORK_DIR}/swiftdeploy.yaml"
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(manifest, driver_name(manifest)),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": driver_labels(manifest)},
                "spec": {
                    "serviceAccountName": driver_name(manifest),
                    # it finishes its look and records its exit on SIGTERM
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "driver",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", start],
                            "env": [
                                # who the trail names as the actor: the uid has no
                                # account in the image, so no name to look up
                                {"name": "USER", "value": driver_name(manifest)},
                                {"name": "HOME", "value": WORK_DIR},
                                {"name": "KUBECONFIG", "value": f"{WORK_DIR}/kubeconfig"},
                                {"name": "SWIFTDEPLOY_KUBE_CONTEXT", "value": IN_CLUSTER_CONTEXT},
                                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "project", "mountPath": PROJECT_MOUNT, "readOnly": True},
                                {"name": "work", "mountPath": WORK_DIR},
                                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
                            ],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "project",
                            "configMap": {"name": project_name(manifest), "items": items},
                        },
                        {"name": "work", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def install_objects(loaded: LoadedManifest, image: str = DEFAULT_IMAGE) -> list[Obj]:
    manifest = loaded.manifest
    role = rbac.driver_role(manifest)
    account = rbac.subject(manifest, "ServiceAccount", driver_name(manifest))
    return [
        rbac.driver_service_account(manifest),
        role,
        rbac.role_binding(manifest, role, [account]),
        project_config_map(loaded),
        driver_deployment(loaded, image),
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line text (the manifest, the policies) as literal blocks people can read."""


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _text)


def install_yaml(loaded: LoadedManifest, image: str = DEFAULT_IMAGE) -> str:
    manifest = loaded.manifest
    return (
        f"# The driver of {manifest.service.name} in namespace "
        f"{manifest.kubernetes.namespace}: `kubectl apply -f` this (or commit it for\n"
        "# Argo CD / Flux). Operators need the Role `swiftdeploy kube rbac` prints.\n"
        + yaml_documents(install_objects(loaded, image))
    )


def yaml_documents(objects: list[Obj]) -> str:
    """Objects as YAML documents, for `kubectl apply -f` (and GitOps repositories)."""
    return "---\n".join(yaml.dump(obj, Dumper=_Dumper, sort_keys=False) for obj in objects)


def install(kube: Kube, loaded: LoadedManifest, image: str = DEFAULT_IMAGE) -> list[str]:
    """Apply every object; returns what was applied, as `Kind namespace/name`."""
    applied = []
    for obj in install_objects(loaded, image):
        kind, name = obj["kind"], obj["metadata"]["name"]
        api, plural = _PATHS[kind]
        path = f"{api}/namespaces/{kube.namespace}/{plural}/{name}"
        with calling(f"apply {kind} {name}"):
            kube.request(
                "PATCH",
                path,
                query={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=obj,
                content_type=APPLY,
            )
        applied.append(f"{kind} {kube.namespace}/{name}")
    return applied


def _meta(manifest: Manifest, name: str) -> Obj:
    return {
        "name": name,
        "namespace": manifest.kubernetes.namespace,
        "labels": driver_labels(manifest),
    }
