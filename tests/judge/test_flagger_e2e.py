"""The judge behind the real Flagger (v1.36.1, built from the Go module proxy), on the test
control plane with kwok pods and a real Prometheus.

Flagger runs with the `kubernetes` provider: with no mesh or ingress here, it does
blue/green (a number of iterations with the canary beside the primary, then the
promotion), not weight steps, so `confirm-traffic-increase` is never called. Given the
Canary of examples/judge/flagger-canary.yaml with its webhooks as documented (the
judge's URL on loopback and the caller's token in their metadata; `iterations: 3` in
place of the weights, which the kubernetes provider cannot shift), when a new revision
rolls out, then Flagger ends as the judge's evidence says: a healthy canary is promoted
once `confirm-promotion` gets its 200, a canary failing 5% is rolled back on the
`rollout` hook's 403s, and a judge that is down never lets it be promoted.

Each Ready pod's traffic comes from tests/support/pod_traffic.py, labelled `namespace`
and `pod`: the judge's Flagger queries select `<name>-primary-...` and `<name>-...` pods.
"""

from __future__ import annotations

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
from tests.judge.test_server import FLAGGER_TOKEN
from tests.support.controllers import Controller
from tests.support.judge import answers, cli, decisions, trail
from tests.support.pod_traffic import ERRORS, RPS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CANARY = REPO / "examples" / "judge" / "flagger-canary.yaml"
# Flagger's shortest analysis interval (shorter ones are raised to it).
INTERVAL = "10s"


def canary_spec(namespace: str, judge_url: str) -> dict[str, Any]:
    """The documented Canary: the judge's URL and token, blue/green iterations."""
    body: dict[str, Any] = yaml.safe_load(CANARY.read_text())
    body["metadata"]["namespace"] = namespace
    analysis = body["spec"]["analysis"]
    for weights in ("maxWeight", "stepWeight"):
        del analysis[weights]
    analysis.update(interval=INTERVAL, iterations=3)
    for hook in analysis["webhooks"]:
        hook["url"] = hook["url"].replace("http://swiftdeploy-judge.swiftdeploy.svc", judge_url)
        hook["metadata"]["token"] = FLAGGER_TOKEN
    return body


def deployment(namespace: str, image: str, rps: float, error_share: float) -> dict[str, Any]:
    labels = {"app": "podinfo"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "podinfo", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {RPS: str(rps), ERRORS: str(error_share)},
                },
                "spec": {
                    "containers": [
                        {"name": "podinfo", "image": image, "ports": [{"containerPort": 9898}]}
                    ]
                },
            },
        },
    }


@dataclass
class Podinfo:
    flagger: Controller
    namespace: str

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.flagger.cluster.api)

    def status(self) -> dict[str, Any]:
        found = self.flagger.get("canaries", self.namespace, "podinfo")
        status: dict[str, Any] = found.get("status") or {}
        return status

    def phase(self, *wanted: str) -> dict[str, Any] | None:
        status = self.status()
        return status if status.get("phase") in wanted else None

    def deploy(self, judge_url: str, rps: float) -> None:
        """podinfo v1 and its Canary; Flagger makes podinfo-primary from it."""
        self.apps.create_namespaced_deployment(
            self.namespace, deployment(self.namespace, "podinfo:v1", rps, 0.0)
        )
        self.flagger.create("canaries", self.namespace, canary_spec(self.namespace, judge_url))
        self.flagger.wait("the Canary to be Initialized", lambda: self.phase("Initialized"), 90)

    def roll(self, rps: float, error_share: float) -> None:
        """podinfo v2, whose pods behave as given."""
        self.apps.replace_namespaced_deployment(
            "podinfo", self.namespace, deployment(self.namespace, "podinfo:v2", rps, error_share)
        )

    def primary_image(self) -> str:
        primary = self.apps.read_namespaced_deployment("podinfo-primary", self.namespace)
        return str(primary.spec.template.spec.containers[0].image)

    def analysis(self, config: Path) -> str:
        """The judge's analysis of this rollout (Flagger's revision is its checksum)."""
        mine = f"flagger/{self.namespace}/podinfo/"
        keys = {r["rollout_id"] for r in decisions(config) if r["rollout_id"].startswith(mine)}
        assert len(keys) == 1, keys
        return keys.pop()


@pytest.fixture
def podinfo(flagger_controller: Controller) -> Iterator[Podinfo]:
    namespace = f"shop-{secrets.token_hex(3)}"
    flagger_controller.cluster.create_namespace(namespace)
    try:
        yield Podinfo(flagger_controller, namespace)
    finally:
        flagger_controller.cluster.delete_namespace(namespace)


@pytest.mark.timeout(400)
def test_a_healthy_canary_is_promoted_through_confirm_promotion(
    flagger_controller: Controller, judge: tuple[Running, Path], podinfo: Podinfo
) -> None:
    running, config = judge
    podinfo.deploy(running.url, rps=100)
    # When podinfo v2 serves as well as v1
    podinfo.roll(rps=100, error_share=0.0)
    # Then Flagger runs its iterations, the judge answers confirm-promotion with 200 once
    # the evidence says promote, and v2 is promoted
    done = flagger_controller.wait(
        "the Canary to succeed", lambda: podinfo.phase("Succeeded", "Failed"), 300
    )
    assert done["phase"] == "Succeeded", done
    assert podinfo.primary_image() == "podinfo:v2"
    decided = answers(config, podinfo.analysis(config))
    hooks = [(r["hook"], r["action"]) for r in decided]
    assert ("rollout", "rollback") not in hooks
    assert hooks[-1] == ("confirm-promotion", "promote"), hooks
    promoted = decided[-1]["decision"]["measurements"]
    assert promoted["canary"]["requests"] > 0
    assert promoted["stable"]["requests"] > 0


@pytest.mark.timeout(300)
def test_a_canary_failing_5_percent_is_rolled_back_on_the_evidence(
    flagger_controller: Controller,
    judge: tuple[Running, Path],
    podinfo: Podinfo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, config = judge
    podinfo.deploy(running.url, rps=100)
    # When podinfo v2 fails 5% of its requests
    podinfo.roll(rps=100, error_share=0.05)
    # Then the rollout hook answers 403 on the judge's rollback until Flagger's failed
    # checks reach the threshold, and Flagger rolls back: the primary stays v1
    done = flagger_controller.wait(
        "the Canary to fail", lambda: podinfo.phase("Succeeded", "Failed"), 240
    )
    assert done["phase"] == "Failed", done
    assert podinfo.primary_image() == "podinfo:v1"
    analysis = podinfo.analysis(config)
    decided = answers(config, analysis)
    assert ("rollout", "rollback") in [(r["hook"], r["action"]) for r in decided]
    # And `audit why` on the judge's trail names the evidence
    code, text = cli("audit", "why", analysis, "--trail", str(trail(config)), capsys=capsys)
    assert code == 0, text
    assert "max_error_rate" in text or "errors_harm" in text, text


@pytest.mark.timeout(300)
def test_a_judge_that_is_down_never_lets_it_be_promoted(
    flagger_controller: Controller, judge: tuple[Running, Path], podinfo: Podinfo
) -> None:
    running, _ = judge
    podinfo.deploy(running.url, rps=100)
    # Given the judge stopped: its port refuses connections
    running.stop()
    # When podinfo v2 rolls out, as healthy as v1
    podinfo.roll(rps=100, error_share=0.0)
    # Then the rollout hook's errors count as failed checks up to the threshold and
    # Flagger rolls back, as docs/judge.md says: the primary stays v1
    done = flagger_controller.wait(
        "the Canary to fail", lambda: podinfo.phase("Succeeded", "Failed"), 240
    )
    assert done["phase"] == "Failed", done
    assert podinfo.primary_image() == "podinfo:v1"


@pytest.mark.timeout(300)
def test_a_quiet_service_waits_at_confirm_promotion_never_rolls_back(
    flagger_controller: Controller, judge: tuple[Running, Path], podinfo: Podinfo
) -> None:
    running, config = judge
    # Given a service nobody calls
    podinfo.deploy(running.url, rps=0)
    # When podinfo v2 rolls out, as quiet
    podinfo.roll(rps=0, error_share=0.0)
    # Then the rollout hook goes on (200 on hold) and confirm-promotion answers 403:
    # Flagger waits for the promotion's approval, neither promoted nor rolled back
    waiting = flagger_controller.wait(
        "the Canary to wait for promotion", lambda: podinfo.phase("WaitingPromotion"), 200
    )
    assert waiting["failedChecks"] == 0
    time.sleep(15)  # a tick more: still waiting
    assert podinfo.status()["phase"] == "WaitingPromotion"
    assert podinfo.primary_image() == "podinfo:v1"
    decided = answers(config, podinfo.analysis(config))
    assert {r["action"] for r in decided} == {"hold"}
    assert "confirm-promotion" in {r["hook"] for r in decided}
