"""Synthetic audit trails: one rollout promoted through three steps, one rolled back
after chaos, written through the real AuditLog (real hashes) with a fake clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.log import AuditLog

START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)
THRESHOLDS = {
    "max_error_rate": 0.01,
    "max_p99_ms": 500,
    "min_requests": 50,
    "min_disk_free_gb": 1.0,
    "max_load_per_core": 4.0,
    "min_mem_available_pct": 5.0,
}
ALPHA = 0.01
PROMOTED = "r-20250314-0900-v2"
ROLLED_BACK = "r-20250314-0930-v3"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def track(requests: int, errors: int, p99: float) -> dict[str, Any]:
    return {
        "status": "ok",
        "detail": "",
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "p50_ms": p99 / 6,
        "p90_ms": p99 / 2,
        "p99_ms": p99,
        "healthy": True,
    }


def stat(e: float, verdict: str, c_n: int, c_ev: int, s_n: int, s_ev: int) -> dict[str, Any]:
    return {
        "e_value": e,
        "p_value": min(1.0, 1 / e) if e > 0 else 1.0,
        "verdict": verdict,
        "effect": c_ev / c_n - s_ev / s_n if c_n and s_n else 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
        "canary_n": c_n,
        "canary_events": c_ev,
        "stable_n": s_n,
        "stable_events": s_ev,
    }


def decision(
    *,
    index: int,
    weight: int,
    elapsed: float,
    canary: dict[str, Any],
    stable: dict[str, Any],
    errors: dict[str, Any],
    latency: dict[str, Any],
    verdict: str,
    reasons: list[dict[str, Any]],
    decision_id: str,
) -> dict[str, Any]:
    step = {
        "index": index,
        "weight": weight,
        "elapsed_s": elapsed,
        "min_duration_s": 10,
        "max_duration_s": 60,
        "on_timeout": "rollback",
    }
    statistics = {"errors": errors, "latency": latency}
    policy_input = {
        "thresholds": THRESHOLDS,
        "alpha": ALPHA,
        "step": step,
        "canary": canary,
        "stable": stable,
        "statistics": statistics,
    }
    return {
        "engine": "embedded",
        "package": "swiftdeploy.canary",
        "decision_id": decision_id,
        "input": policy_input,
        "output": {"allow": verdict == "promote", "verdict": verdict, "reasons": reasons},
        "measurements": {"canary": canary, "stable": stable, "window_s": 30},
        "statistics": statistics,
        "thresholds": THRESHOLDS,
        "step": step,
        "elapsed_ms": 3.2,
    }


def _promoted_rollout(log: AuditLog, clock: Clock) -> None:
    rid = PROMOTED
    log.append("command", rollout_id=rid, command=["swiftdeploy", "canary", "v2"])
    log.append(
        "transition", rollout_id=rid, phase_before="idle", phase_after="progressing",
        step={"index": 0, "weight": 10}, stable_version="v1", canary_version="v2",
    )  # fmt: skip
    n = 0
    for index, weight in enumerate((10, 50, 100)):
        if index:
            log.append(
                "transition", rollout_id=rid, phase_before="progressing",
                phase_after="progressing", step={"index": index, "weight": weight},
                reason="policy promoted the previous step",
            )  # fmt: skip
        for tick in range(6):
            clock.tick(2.0)
            n += 1
            elapsed = 2.0 * (tick + 1)
            c_req = 20 * weight // 10 * (tick + 1)
            s_req = 200 * (tick + 1)
            canary = track(c_req, c_req // 400, 110 + 5 * tick)
            stable = track(s_req, s_req // 300, 100 + 3 * tick)
            done = tick == 5
            errors = stat(
                0.4 if done else 1.3, "no_harm" if done else "continue", c_req, 0, s_req, 1
            )
            latency = stat(
                0.6 if done else 1.1, "no_harm" if done else "continue", c_req, 1, s_req, 2
            )
            if done:
                reasons = [{
                    "rule": "no_harm",
                    "message": f"no harm found after {elapsed:.1f} s (minimum 10.0 s)",
                    "observed": elapsed, "threshold": 10,
                }]  # fmt: skip
                verdict = "promote"
            else:
                reasons = [{
                    "rule": "min_duration",
                    "message": f"step {index + 1} has run {elapsed:.1f} s of its minimum 10.0 s",
                    "observed": elapsed, "threshold": 10,
                }]  # fmt: skip
                verdict = "hold"
            log.append(
                "decision",
                rollout_id=rid,
                decision=decision(
                    index=index, weight=weight, elapsed=elapsed, canary=canary, stable=stable,
                    errors=errors, latency=latency, verdict=verdict, reasons=reasons,
                    decision_id=f"d-promote-{n}",
                ),
            )  # fmt: skip
    clock.tick(1.0)
    log.append(
        "transition", rollout_id=rid, phase_before="progressing", phase_after="promoted",
        stable_version="v2", canary_version=None,
    )  # fmt: skip


def _rolled_back_rollout(log: AuditLog, clock: Clock) -> None:
    rid = ROLLED_BACK
    clock.tick(600)
    log.append("command", rollout_id=rid, command=["swiftdeploy", "canary", "v3"])
    log.append(
        "transition", rollout_id=rid, phase_before="promoted", phase_after="progressing",
        step={"index": 0, "weight": 10}, stable_version="v2", canary_version="v3",
    )  # fmt: skip
    for tick in range(4):
        clock.tick(2.0)
        c_req, s_req = 10 * (tick + 1), 400 * (tick + 1)
        log.append(
            "decision",
            rollout_id=rid,
            decision=decision(
                index=0, weight=10, elapsed=2.0 * (tick + 1),
                canary=track(c_req, 0, 120), stable=track(s_req, 1, 100),
                errors=stat(1.1, "continue", c_req, 0, s_req, 1),
                latency=stat(1.0, "continue", c_req, 1, s_req, 2),
                verdict="hold",
                reasons=[{"rule": "min_requests",
                          "message": f"not enough data: {c_req} canary requests, needs 50",
                          "observed": c_req, "threshold": 50}],
                decision_id=f"d-hold-{tick}",
            ),
        )  # fmt: skip
    clock.tick(1.0)
    log.append(
        "chaos", rollout_id=rid, command=["swiftdeploy", "chaos", "--error-rate", "0.3"],
        track="canary", error_rate=0.3, latency_ms=None, duration_s=60, recover=False,
    )  # fmt: skip
    clock.tick(2.0)
    canary = track(412, 21, 130)
    canary["error_rate"] = 0.052
    stable = track(1650, 5, 101)
    stable["error_rate"] = 0.003
    log.append(
        "decision",
        rollout_id=rid,
        decision=decision(
            index=0, weight=10, elapsed=11.0, canary=canary, stable=stable,
            errors=stat(812.0, "harm", 412, 21, 1650, 5),
            latency=stat(1.2, "continue", 412, 3, 1650, 9),
            verdict="rollback",
            reasons=[
                {"rule": "errors_harm",
                 "message": "canary errors worse than stable: e-value 812 >= 100 = 1/alpha "
                            "(alpha 0.01); canary 21 errors in 412 requests, stable 5 in 1650",
                 "observed": 812.0, "threshold": 100.0},
                {"rule": "max_error_rate",
                 "message": "canary error rate 5.2% > 1.0% (stable 0.3%; 412 requests)",
                 "observed": 0.052, "threshold": 0.01},
            ],
            decision_id="d-rollback-1",
        ),
    )  # fmt: skip
    log.append(
        "transition", rollout_id=rid, phase_before="progressing", phase_after="rolling-back",
        reason="policy verdict rollback",
    )  # fmt: skip
    clock.tick(1.5)
    log.append(
        "transition", rollout_id=rid, phase_before="rolling-back", phase_after="rolled-back",
        stable_version="v2", canary_version=None,
    )  # fmt: skip
    log.append(
        "chaos", rollout_id=None, command=["swiftdeploy", "chaos", "--recover"],
        track="canary", recover=True,
    )  # fmt: skip


def write_synthetic_trail(path: Path) -> list[dict[str, Any]]:
    clock = Clock(START)
    log = AuditLog(path, 10_000_000, [], command=["swiftdeploy"], clock=clock)
    _promoted_rollout(log, clock)
    _rolled_back_rollout(log, clock)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def trail_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.jsonl"


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "state" / "history.jsonl"
    return path, write_synthetic_trail(path)
