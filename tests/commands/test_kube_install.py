"""`swiftdeploy kube install` (`install_objects`): the driver's account, Role and
binding, the project as a ConfigMap (manifest, in-cluster kubeconfig, policies without
their tests) and the driver's Deployment mounting exactly those files."""

from __future__ import annotations

from pathlib import Path

import yaml

from swiftdeploy.commands.init import init_project
from swiftdeploy.commands.kube_install import (
    IN_CLUSTER_CONTEXT,
    TOKEN_DIR,
    install_objects,
    install_yaml,
)
from swiftdeploy.manifest import load_manifest


def test_the_project_and_the_driver_that_runs_it(tmp_path: Path) -> None:
    init_project(tmp_path, "127.0.0.1:18080", force=False, runtime="kubernetes")
    loaded = load_manifest(tmp_path / "swiftdeploy.yaml")
    objects = install_objects(loaded, "registry.example/driver:1")
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment"]
    config_map, deployment = objects[3], objects[4]
    data = config_map["data"]
    assert data["swiftdeploy.yaml"] == loaded.path.read_text()
    shipped = {p.name for p in (tmp_path / "policies").glob("*.rego")}
    policies = {key.removeprefix("policies.") for key in data if key.startswith("policies.")}
    assert policies == {name for name in shipped if not name.endswith("_test.rego")}
    assert policies  # the policies are there, their tests stay behind
    kubeconfig = yaml.safe_load(data["kubeconfig"])
    assert kubeconfig["current-context"] == IN_CLUSTER_CONTEXT
    assert kubeconfig["users"][0]["user"] == {"tokenFile": f"{TOKEN_DIR}/token"}
    context = kubeconfig["contexts"][0]["context"]
    assert context["namespace"] == loaded.manifest.kubernetes.namespace
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == objects[0]["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/driver:1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (project,) = [v for v in pod["volumes"] if "configMap" in v]
    assert project["configMap"]["name"] == config_map["metadata"]["name"]
    assert {item["key"] for item in project["configMap"]["items"]} == set(data)
    assert list(yaml.safe_load_all(install_yaml(loaded, "registry.example/driver:1"))) == objects
