"""`swiftdeploy kube rbac` (`rbac_yaml`): the driver's ServiceAccount, Role and binding,
then the operators' Role bound to the subject given, as YAML kubectl applies, each rule
under a comment saying why; a subject that is not KIND/NAME is bad input; a project of
another runtime is refused in one line, before the kubernetes client is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swiftdeploy.commands.init import init_project
from swiftdeploy.commands.kube import rbac_yaml
from swiftdeploy.errors import BadInputError, ExitCode
from swiftdeploy.manifest import Manifest, load_manifest
from swiftdeploy.runtime.kubernetes import rbac
from tests.test_registry import _without_extras


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    init_project(tmp_path, "127.0.0.1:18080", force=False, runtime="kubernetes")
    return load_manifest(tmp_path / "swiftdeploy.yaml").manifest


def test_two_roles_each_bound_and_every_rule_says_why(manifest: Manifest) -> None:
    text = rbac_yaml(manifest, "Group/team-a")
    documents = list(yaml.safe_load_all(text))
    kinds = [d["kind"] for d in documents]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "Role", "RoleBinding"]
    account, driver_role, driver_binding, operator_role, operator_binding = documents
    assert driver_role == rbac.driver_role(manifest)
    assert operator_role == rbac.operator_role(manifest)
    assert driver_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"],
         "namespace": manifest.kubernetes.namespace}
    ]  # fmt: skip
    (operators,) = operator_binding["subjects"]
    assert (operators["kind"], operators["name"]) == ("Group", "team-a")
    rules = rbac.driver_rules(manifest) + rbac.operator_rules(manifest)
    comments = [line for line in text.splitlines() if line.startswith("# ")]
    for rule in rules:  # each why, whole, in the comments
        assert " ".join(rule.why.split()) in " ".join(c[2:] for c in comments)


def test_the_driver_may_be_bound_to_another_subject(manifest: Manifest) -> None:
    documents = list(yaml.safe_load_all(rbac_yaml(manifest, "User/alice", "User/ci-bot")))
    assert documents[2]["subjects"][0]["name"] == "ci-bot"
    assert documents[4]["subjects"][0]["name"] == "alice"


@pytest.mark.parametrize("subject", ["alice", "Robot/alice", "User/"])
def test_a_subject_that_is_not_kind_name_is_bad_input(manifest: Manifest, subject: str) -> None:
    with pytest.raises(BadInputError, match=f"--subject {subject!r} is not KIND/NAME"):
        rbac_yaml(manifest, subject)


def test_rbac_for_a_project_of_another_runtime_is_refused(tmp_path: Path) -> None:
    init_project(tmp_path, "127.0.0.1:18080", force=False, runtime="docker")
    docker = load_manifest(tmp_path / "swiftdeploy.yaml").manifest
    with pytest.raises(BadInputError) as refused:
        rbac_yaml(docker, "Group/team-a")
    assert refused.value.message == (
        "kube rbac: this project is runtime: docker, not runtime: kubernetes"
    )


@pytest.mark.parametrize("command", [["rbac"], ["install", "--print"]])
def test_kube_in_a_local_project_without_the_client_says_it_is_not_kubernetes(
    command: list[str], short_tmp: Path
) -> None:
    init_project(short_tmp, "127.0.0.1:18080", force=False, runtime="local")
    done = _without_extras(short_tmp, "kube", *command)
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stdout == ""
    assert done.stderr == (
        f"swiftdeploy: error: kube {command[0]}: this project is runtime: local, not runtime:"
        " kubernetes (kube commands are for runtime: kubernetes projects; `swiftdeploy init"
        " --runtime kubernetes` writes one)\n"
    )
