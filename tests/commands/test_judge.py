"""`swiftdeploy judge init` and `judge install`: the config file init writes loads (a
bad key is one line), and the install's objects carry no Role and no API token."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swiftdeploy.commands.judge import init, install_objects, install_yaml
from swiftdeploy.errors import ManifestError
from swiftdeploy.judge.config import load_judge


def test_init_writes_a_config_that_loads_and_a_bad_key_is_one_line(tmp_path: Path) -> None:
    written = init(tmp_path, force=False)
    config = tmp_path / "judge.yaml"
    assert config in written
    assert (tmp_path / "policies" / "canary.rego") in written
    loaded = load_judge(config)
    assert [c.name for c in loaded.config.callers] == ["argo-rollouts", "flagger"]
    config.write_text(config.read_text().replace("  beta: 0.1", "  beta: 0.9"))
    with pytest.raises(ManifestError) as error:
        load_judge(config)
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "beta" in text)
    assert error.value.message.startswith(f"{config}:{line}: policy.beta:")


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("latency: 'x'", "unknown query 'latency'"),
        ("p99: '{{ nope }}'", "query 'p99': "),
    ],
)
def test_a_query_override_is_checked_when_the_config_loads(
    tmp_path: Path, query: str, problem: str
) -> None:
    # Given init's config with an Argo query override that names no query, or renders
    # a variable a template does not get
    init(tmp_path, force=False)
    config = tmp_path / "judge.yaml"
    document = yaml.safe_load(config.read_text())
    document["prometheus"]["queries"] = {"argo": yaml.safe_load(query)}
    config.write_text(yaml.safe_dump(document))
    # Then loading it is refused with the one line saying which
    with pytest.raises(ManifestError) as error:
        load_judge(config)
    assert problem in error.value.message, error.value.message


def test_install_has_no_role_and_no_api_token(tmp_path: Path) -> None:
    init(tmp_path, force=False)
    loaded = load_judge(tmp_path / "judge.yaml")
    objects = install_objects(loaded, "swiftdeploy")
    kinds = [obj["kind"] for obj in objects]
    assert kinds == ["ServiceAccount", "ConfigMap", "Deployment", "Service"]
    assert objects[0]["automountServiceAccountToken"] is False
    pod = objects[2]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    # the {env:} caller's token from the tokens Secret, the {secret:} caller's mounted
    env = {item["name"]: item for item in container["env"]}
    assert env["JUDGE_TOKEN_ARGO"]["valueFrom"]["secretKeyRef"]["key"] == "JUDGE_TOKEN_ARGO"
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["swiftdeploy-judge-tokens"]
    assert "policies.canary.rego" in objects[1]["data"]
    assert "kind: Role" not in install_yaml(loaded, "swiftdeploy")
