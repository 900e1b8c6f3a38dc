"""The judge's HTTP contract against a real Prometheus on loopback, which scrapes a tiny
exporter whose series carry Argo's and Flagger's pod labels; called as Argo's `web`
metric provider calls (GET, a Bearer header, JSON) and as Flagger's webhooks do (POST
of their payload). The answers are in the judge's trail, which `audit verify` and
`audit why` read, and `judge replay` puts to a stricter setting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from swiftdeploy.cli.app import run
from swiftdeploy.commands.init import copy_policies
from swiftdeploy.commands.judge import Running, replay_trail, start
from swiftdeploy.judge.config import load_judge
from tests.support.prometheus import running_prometheus, serving_exposition

pytestmark = pytest.mark.e2e

TOKEN = "argo-token-0123456789abcdef"
FLAGGER_TOKEN = "flagger-token-0123456789abcdef"
TICK_S = 0.25


@dataclass
class Workload:
    """One track's pods as Prometheus sees them: a rate of requests, a share failing."""

    labels: dict[str, str]
    rps: float
    error_share: float
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("http_requests_total", "requests", ["code"], registry=self.registry)
        self.latency = Histogram(
            "http_request_duration_seconds",
            "latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.requests.labels("200").inc(0)
        self.owed = 0.0

    def tick(self) -> None:
        self.owed += self.rps * TICK_S
        whole = int(self.owed)
        self.owed -= whole
        failed = round(whole * self.error_share)
        self.requests.labels("200").inc(whole - failed)
        if failed:
            self.requests.labels("500").inc(failed)
        for _ in range(whole):
            self.latency.observe(0.02)


WORKLOADS = {
    # Argo: the stable and two canaries of the rollout `cart` (pod-template hashes)
    "argo-stable": Workload({"rollouts_pod_template_hash": "5d8f7c6b9"}, 200, 0.0),
    "argo-good": Workload({"rollouts_pod_template_hash": "7b9c4d5e6"}, 100, 0.0),
    "argo-bad": Workload({"rollouts_pod_template_hash": "8c1d2e3f4"}, 50, 0.2),
    # Flagger: podinfo-primary's pods and the canary podinfo's
    "flagger-primary": Workload({"pod": "podinfo-primary-6f7d8c9b5-x2k9p"}, 200, 0.0),
    "flagger-canary": Workload({"pod": "podinfo-7c8d9e6f5-q4w7z"}, 50, 0.2),
}


@pytest.fixture(scope="module")
def exporter() -> Iterator[int]:
    """Serves each workload at /<name>, its counters moving every TICK_S."""

    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(TICK_S):
            for workload in WORKLOADS.values():
                workload.tick()

    def render(path: str) -> bytes | None:
        workload = WORKLOADS.get(path.strip("/"))
        return generate_latest(workload.registry) if workload else None

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    with serving_exposition(render) as port:
        yield port
    stop.set()


@pytest.fixture(scope="module")
def prometheus(exporter: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the exporter every second, read-only to the judge."""
    jobs = [
        {
            "job_name": name,
            "metrics_path": f"/{name}",
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{exporter}"],
                    "labels": {"namespace": "shop", **workload.labels},
                }
            ],
        }
        for name, workload in WORKLOADS.items()
    ]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), jobs) as url:
        time.sleep(4)  # a few scrapes: the stable's reference window has samples
        yield url


def write_config(directory: Path, prometheus: str) -> Path:
    copy_policies(directory / "policies", force=False)
    path = directory / "judge.yaml"
    path.write_text(
        f"""\
apiVersion: swiftdeploy/v1
kind: Judge
listen: 127.0.0.1:0
prometheus:
  url: {prometheus}
  scrape_interval: 1s
  window: 20s
analysis:
  min_duration: 3s
  warmup: {{time: 0s, requests: 0}}
callers:
  - name: argo-rollouts
    token: {{env: JUDGE_TEST_ARGO}}
  - name: flagger
    token: {{secret: judge-tokens, key: flagger}}
secrets_dir: {directory / "secrets"}
"""
    )
    (directory / "secrets" / "judge-tokens").mkdir(parents=True)
    (directory / "secrets" / "judge-tokens" / "flagger").write_text(FLAGGER_TOKEN + "\n")
    return path


@pytest.fixture
def judge(prometheus: str, tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    config = write_config(tmp_path, prometheus)
    lines: list[str] = []
    running = start(load_judge(config), lines.append, environ={"JUDGE_TEST_ARGO": TOKEN}, port=0)
    try:
        yield running, config
    finally:
        running.stop()
    assert all(" 500 " not in line for line in lines), lines  # no call failed inside


def argo(running: Running, canary: str, **extra: str) -> httpx.Response:
    """What Argo's web provider sends: GET, the Authorization header from a Secret."""
    query = {"revision": extra.pop("revision", "2"), "stable": "5d8f7c6b9", "canary": canary}
    return httpx.get(
        f"{running.url}/v1/argo/shop/cart",
        params={**query, **extra},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


def until(running: Running, call: Any, want: str, limit_s: float = 60) -> list[dict[str, Any]]:
    """Call every 2.5 s (looks need two scrapes between them) until `want`; the answers."""
    answers = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        answer = call().json()
        answers.append(answer)
        if answer["verdict"] == want:
            return answers
        time.sleep(2.5)
    pytest.fail(f"no {want} in {limit_s} s: {[a['verdict'] for a in answers]}")


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_argo_web_provider_contract(
    judge: tuple[Running, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    running, config = judge
    # Given no token, or a wrong one: 401, and no analysis is opened
    bare = httpx.get(f"{running.url}/v1/argo/shop/cart?stable=5d8f7c6b9&canary=8c1d2e3f4")
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = httpx.get(
        f"{running.url}/v1/argo/shop/cart?stable=5d8f7c6b9&canary=8c1d2e3f4",
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong.status_code == 401
    assert not list((config.parent / ".swiftdeploy-judge").glob("*.json"))
    # When Argo asks about a canary failing 20% of its requests, look after look
    answers = until(running, lambda: argo(running, "8c1d2e3f4", step="1", weight="20"), "rollback")
    # Then the first answers hold (inconclusive: Argo pauses, never fails) and the
    # evidence adds up until the answer is rollback
    first, last = answers[0], answers[-1]
    assert first["verdict"] == "hold"
    assert first["inconclusive"] is True
    assert last["inconclusive"] is False
    assert last["analysis"] == "argo/shop/cart/2"
    assert last["look"] == len(answers)
    assert last["canary"]["requests"] > 0
    assert last["canary"]["errors"] > 0
    assert any(reason["rule"] in ("max_error_rate", "errors_harm") for reason in last["reasons"])
    # And a healthy canary of another revision is promoted at its own analysis
    good = until(running, lambda: argo(running, "7b9c4d5e6", revision="3", step="1"), "promote")
    assert good[-1]["analysis"] == "argo/shop/cart/3"
    assert all(answer["verdict"] != "rollback" for answer in good)
    # And every answer is in the trail, which verifies, and `audit why` names the evidence
    trail = str(config.parent / ".swiftdeploy-judge" / "history.jsonl")
    code, text = cli("audit", "verify", "--trail", trail, capsys=capsys)
    assert code == 0, text
    code, text = cli("audit", "why", "argo/shop/cart/2", "--trail", trail, capsys=capsys)
    assert code == 0, text
    assert "argo/shop/cart/2" in text
    assert "rollback" in text
    # (a judge never learns what Argo did: it says what it answered, not "in progress")
    assert "still in progress" not in text
    assert "answers, the last rollback" in text
    assert "max_error_rate" in text or "errors_harm" in text
    # And replay under a stricter p99 limit (1 ms) flips the healthy canary's answers
    report = replay_trail(load_judge(config), overrides={"thresholds": {"max_p99_ms": 1}})
    assert len(report.rows) == len(answers) + len(good)
    flipped = [row for row in report.flips if row.analysis == "argo/shop/cart/3"]
    assert flipped
    assert {row.after for row in flipped} == {"rollback"}
    code, text = cli(
        "judge", "replay", "-c", str(config), "--max-p99-ms", "1", "--json", capsys=capsys
    )
    assert code == 0, text
    assert json.loads(text)["flips"] == len(report.flips)


def test_a_quiet_canary_holds_and_flagger_webhooks(judge: tuple[Running, Path]) -> None:
    running, _ = judge
    # Given a canary pod-template hash that serves nothing: hold, never rollback
    quiet = [argo(running, "0000000aa", revision="4").json() for _ in range(3)]
    assert {answer["verdict"] for answer in quiet} == {"hold"}
    assert all(answer["inconclusive"] for answer in quiet)

    # Flagger's payload (fluxcd/flagger CanaryWebhookPayload); its token in metadata
    def hook(kind: str, token: str = FLAGGER_TOKEN) -> httpx.Response:
        payload = {
            "name": "podinfo",
            "namespace": "shop",
            "phase": "Progressing",
            "checksum": "6b8d9c7f5",
            "metadata": {"token": token},
        }
        return httpx.post(f"{running.url}/v1/flagger/{kind}", json=payload, timeout=30)

    assert hook("rollout", token="wrong").status_code == 401
    # While the evidence is short: the rollout hook goes on (200), the gates wait (403)
    assert hook("rollout").status_code == 200
    gate = hook("confirm-traffic-increase")
    assert gate.status_code == 403
    assert gate.json()["verdict"] == "hold"
    # Once the canary's 20% errors are evidence: the rollout hook fails its check (403)
    answers = until(running, lambda: hook("rollout"), "rollback")
    assert answers[-1]["analysis"] == "flagger/shop/podinfo/6b8d9c7f5"
    assert hook("rollout").status_code == 403
    assert hook("confirm-promotion").status_code == 403
    # And the routes and bodies a caller can get wrong are one-line errors
    assert httpx.get(f"{running.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{running.url}/readyz").status_code == 200
    assert httpx.get(f"{running.url}/v1/nope").status_code == 404
    big = httpx.post(f"{running.url}/v1/flagger/rollout", content=b"x" * 100_000, timeout=30)
    assert big.status_code == 413
    assert "error" in big.json()
