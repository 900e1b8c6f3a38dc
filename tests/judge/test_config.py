"""The shipped examples of the judge's callers (Argo Rollouts' analysis templates)."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judge"


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
