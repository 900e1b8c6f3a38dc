"""The judge behind the real Argo Rollouts controller (v1.10.2, built from the Go module
proxy), on the test control plane with kwok pods and a real Prometheus.

Given a Rollout from examples/judge/argo-rollout.yaml whose two analysis steps use the
documented AnalysisTemplate (examples/judge/argo-analysistemplate.yaml, as it is but for
the judge's URL and a 5 s interval: Argo's `web` provider calls the judge on loopback
with the token from the Secret the template names), when a new revision rolls out, then
the Rollout ends as the judge's evidence says: Healthy on the new revision, aborted on
a canary failing 5% (and `audit why` names the evidence), paused when the service is
quiet, and never promoted while the judge is down.

kwok pods serve nothing, so `PodTraffic` (tests/support/pod_traffic.py) stands in for
them: every Ready pod serves `rps-per-pod` requests a second failing `error-share` of
them (the pod template's annotations, so the behaviour comes with the revision),
exported with the labels a pod scrape has: `namespace`, `pod` and
`rollouts_pod_template_hash` = the real hash of the ReplicaSet the controller made.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.support.kube import REPO
from kubernetes import client

from swiftdeploy.commands.judge import Running
from tests.judge.test_server import TOKEN
from tests.support.controllers import Controller, rollout_done
from tests.support.judge import answers, cli, trail
from tests.support.pod_traffic import ERRORS, RPS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = REPO / "examples" / "judge"
DOCS = REPO / "docs" / "judge.md"
# Argo's analysis interval in the test: the judge counts a look only 2 scrapes (2 s)
# after the previous one, so 5 s leaves room on a busy machine.
INTERVAL = "5s"


@pytest.fixture
def canary(argo_controller: Controller) -> Iterator[Canary]:
    """The Rollout `cart` in a namespace of its own, deleted after the test."""
    namespace = f"shop-{secrets.token_hex(3)}"
    argo_controller.cluster.create_namespace(namespace)
    try:
        yield Canary(argo_controller, namespace)
    finally:
        argo_controller.cluster.delete_namespace(namespace)


def analysis_template(judge_url: str, **limits: int) -> dict[str, Any]:
    """The documented AnalysisTemplate with the judge's URL and a 5 s interval (and,
    where a test says so, other limits)."""
    template: dict[str, Any] = yaml.safe_load((EXAMPLES / "argo-analysistemplate.yaml").read_text())
    for arg in template["spec"]["args"]:
        if arg["name"] == "judge-url":
            arg["value"] = judge_url
    metric = template["spec"]["metrics"][0]
    metric["interval"] = INTERVAL
    metric.update(limits)
    return template


def rollout(namespace: str, rps: float, error_share: float) -> dict[str, Any]:
    """The documented Rollout, its pods behaving as the annotations say."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / "argo-rollout.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    pod = body["spec"]["template"]
    pod["metadata"]["annotations"] = {RPS: str(rps), ERRORS: str(error_share)}
    pod["spec"]["containers"][0]["image"] = "cart:v1"
    return body


@dataclass
class Canary:
    argo: Controller
    namespace: str
    stable: str = ""

    @property
    def rollout(self) -> dict[str, Any]:
        return self.argo.get("rollouts", self.namespace, "cart")

    def deploy(self, judge_url: str, rps: float, **limits: int) -> None:
        """The Secret, the template and revision 1, which Argo makes stable at once."""
        core = client.CoreV1Api(self.argo.cluster.api)
        core.create_namespaced_secret(
            self.namespace,
            {"metadata": {"name": "swiftdeploy-judge-token"}, "stringData": {"token": TOKEN}},
        )
        self.argo.create(
            "analysistemplates", self.namespace, analysis_template(judge_url, **limits)
        )
        self.argo.create("rollouts", self.namespace, rollout(self.namespace, rps, 0.0))
        done = self.argo.wait("revision 1 to be Healthy", self._done, 60)
        self.stable = done["status"]["stableRS"]

    def roll(self, rps: float, error_share: float) -> str:
        """Revision 2: a new image whose pods behave as given; its pod-template hash."""
        patch = {
            "spec": {
                "template": {
                    "metadata": {"annotations": {RPS: str(rps), ERRORS: str(error_share)}},
                    "spec": {"containers": [{"name": "cart", "image": "cart:v2"}]},
                }
            }
        }
        self.argo.patch("rollouts", self.namespace, "cart", patch)
        return str(self.argo.wait("the canary's ReplicaSet", self._canary_hash, 30))

    def _done(self) -> dict[str, Any] | None:
        found = self.rollout
        return found if rollout_done(found) else None

    def _canary_hash(self) -> str | None:
        status = self.rollout.get("status") or {}
        current = status.get("currentPodHash")
        return current if current and current != self.stable else None

    def runs(self) -> list[dict[str, Any]]:
        return sorted(
            self.argo.list("analysisruns", self.namespace),
            key=lambda run: run["metadata"]["creationTimestamp"],
        )

    def paused(self) -> dict[str, Any] | None:
        found = self.rollout
        status = found.get("status") or {}
        return found if status.get("pauseConditions") and status.get("phase") == "Paused" else None

    def aborted(self) -> dict[str, Any] | None:
        found = self.rollout
        status = found.get("status") or {}
        return found if status.get("abort") and status.get("phase") == "Degraded" else None


@pytest.mark.timeout(420)
def test_a_healthy_canary_is_promoted_by_the_judge(
    argo_controller: Controller, judge: tuple[Running, Path], canary: Canary
) -> None:
    running, config = judge
    canary.deploy(running.url, rps=100)
    # When revision 2 serves as well as revision 1
    new_hash = canary.roll(rps=100, error_share=0.0)
    # Then both analysis steps succeed on the judge's promote and the Rollout is Healthy
    # on the new revision
    done = argo_controller.wait("the Rollout to be Healthy on revision 2", canary._done, 360)
    assert done["status"]["stableRS"] == new_hash != canary.stable
    runs = canary.runs()
    assert [run["status"]["phase"] for run in runs] == ["Successful", "Successful"]
    # And the documented args reached the judge: the revision annotation, the step index
    # (each step's run reads its own), the two hashes
    args = [{a["name"]: a.get("value") for a in run["spec"]["args"]} for run in runs]
    assert [(a["revision"], a["step"]) for a in args] == [("2", "1"), ("2", "3")]
    assert {(a["stable-hash"], a["canary-hash"]) for a in args} == {(canary.stable, new_hash)}
    # And the judge was asked about the real ReplicaSets' hashes, step by step
    analysis = f"argo/{canary.namespace}/cart/2"
    decided = answers(config, analysis)
    assert decided
    assert {(r["stable_version"], r["canary_version"]) for r in decided} == {
        (canary.stable, new_hash)
    }
    verdicts = [r["decision"]["output"]["verdict"] for r in decided]
    assert "rollback" not in verdicts
    assert verdicts.count("promote") == 2
    promoted = [r["decision"]["measurements"] for r in decided if r["action"] == "promote"]
    assert all(m["canary"]["requests"] > 0 and m["stable"]["requests"] > 0 for m in promoted)


@pytest.mark.timeout(300)
def test_a_canary_failing_5_percent_is_aborted_on_the_evidence(
    argo_controller: Controller,
    judge: tuple[Running, Path],
    canary: Canary,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, config = judge
    canary.deploy(running.url, rps=100)
    # When revision 2 fails 5% of its requests (revision 1: none)
    new_hash = canary.roll(rps=100, error_share=0.05)
    # Then the first step's analysis fails on the judge's rollback and the Rollout aborts
    aborted = argo_controller.wait("the Rollout to abort", canary.aborted, 240)
    assert aborted["status"]["stableRS"] == canary.stable
    runs = canary.runs()
    assert [run["status"]["phase"] for run in runs] == ["Failed"]
    # And `audit why` on the judge's trail names the evidence
    analysis = f"argo/{canary.namespace}/cart/2"
    decided = answers(config, analysis)
    assert decided[-1]["action"] == "rollback"
    assert decided[-1]["canary_version"] == new_hash
    code, text = cli("audit", "verify", "--trail", str(trail(config)), capsys=capsys)
    assert code == 0, text
    code, text = cli("audit", "why", analysis, "--trail", str(trail(config)), capsys=capsys)
    assert code == 0, text
    assert "rollback" in text
    assert "max_error_rate" in text or "errors_harm" in text, text


@pytest.mark.timeout(300)
def test_a_quiet_service_pauses_the_rollout_never_aborts(
    argo_controller: Controller, judge: tuple[Running, Path], canary: Canary
) -> None:
    running, config = judge
    # Given a service nobody calls, and the template's count cut to 6 looks (30 s) so the
    # run reaches it soon (inconclusiveLimit with it: count must be >= it)
    canary.deploy(running.url, rps=0, count=6, inconclusiveLimit=6)
    # When revision 2 rolls out, as quiet
    canary.roll(rps=0, error_share=0.0)
    # Then the step's analysis ends Inconclusive and the Rollout pauses for a person
    paused = argo_controller.wait("the Rollout to pause", canary.paused, 150)
    reasons = [c["reason"] for c in paused["status"]["pauseConditions"]]
    assert "InconclusiveAnalysisRun" in reasons
    assert [run["status"]["phase"] for run in canary.runs()] == ["Inconclusive"]
    # And it stays paused, not aborted, while nobody decides
    time.sleep(12)
    status = canary.rollout["status"]
    assert not status.get("abort")
    assert status["phase"] == "Paused"
    verdicts = {r["action"] for r in answers(config, f"argo/{canary.namespace}/cart/2")}
    assert verdicts == {"hold"}


@pytest.mark.timeout(300)
def test_an_unreachable_judge_aborts_the_rollout(
    argo_controller: Controller, judge: tuple[Running, Path], canary: Canary
) -> None:
    running, _ = judge
    canary.deploy(running.url, rps=100)
    # Given the judge stopped: its port refuses connections
    running.stop()
    # When revision 2 rolls out, as healthy as revision 1
    canary.roll(rps=100, error_share=0.0)
    # Then the documented template fails closed: the first refused call ends the step's
    # analysis in Error (consecutiveErrorLimit 0) and the Rollout aborts, as the
    # template's comment and docs/judge.md say; it is never promoted
    aborted = argo_controller.wait("the Rollout to abort", canary.aborted, 120)
    assert aborted["status"]["stableRS"] == canary.stable
    [run] = canary.runs()
    assert run["status"]["phase"] == "Error"
    assert "connection refused" in json.dumps(run["status"]).lower()
    said = "ends the run in Error and the Rollout aborts"
    for text in ((EXAMPLES / "argo-analysistemplate.yaml").read_text(), DOCS.read_text()):
        assert said in " ".join(text.replace("#", " ").split())
