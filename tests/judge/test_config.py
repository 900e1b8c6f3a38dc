"""The judge's config file, its install objects and the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swiftdeploy.commands.judge import init, install_objects, install_yaml
from swiftdeploy.errors import ManifestError
from swiftdeploy.judge.config import load_judge

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judge"


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


def test_the_argo_examples_fail_closed_and_read_the_answer() -> None:
    (template,) = yaml.safe_load_all((EXAMPLES / "argo-analysistemplate.yaml").read_text())
    (cluster,) = yaml.safe_load_all((EXAMPLES / "argo-clusteranalysistemplate.yaml").read_text())
    assert cluster["kind"] == "ClusterAnalysisTemplate"
    assert cluster["spec"] == template["spec"]
    (metric,) = template["spec"]["metrics"]
    assert metric["consecutiveErrorLimit"] == 0  # an unreachable judge: Error, abort
    assert metric["failureLimit"] == 0
    assert metric["consecutiveSuccessLimit"] == 1
    assert metric["inconclusiveLimit"] >= metric["count"] - 1  # holds are waited through
    assert metric["successCondition"] == 'result.verdict == "promote"'
    assert metric["failureCondition"] == 'result.verdict == "rollback"'
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$}"
    assert "/v1/argo/{{args.namespace}}/{{args.rollout}}?" in web["url"]
    assert web["headers"] == [{"key": "Authorization", "value": "Bearer {{args.judge-token}}"}]
    (rollout,) = yaml.safe_load_all((EXAMPLES / "argo-rollout.yaml").read_text())
    analyses = [
        step for step in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in step
    ]
    assert len(analyses) == 2
    names = {arg["name"] for arg in analyses[0]["analysis"]["args"]}
    declared = {arg["name"] for arg in template["spec"]["args"] if "value" not in arg}
    declared.discard("judge-token")
    assert declared <= names
