"""`judge replay`: the judge's recorded answers put again to another policy or other
settings, for tuning without risk. Each decision record holds the analysis's ledger
after that look (`evidence`) and what the policy read; replay assesses the ledger
under the new settings (`rollout.statistics.assess`), builds the policy input the
same way, asks the other policy, and reports the answers that would flip.

Passes are sticky within a step (Ville's inequality covers the running maximum), so
an analysis's looks are replayed in their order, each step keeping the passes the
replay itself found, never the recorded ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from swiftdeploy.audit.log import Record
from swiftdeploy.manifest import Analysis, Policy
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.policy.base import CANARY, PolicyEngine
from swiftdeploy.rollout.inputs import canary_input
from swiftdeploy.rollout.statistics import Settings, assess, passed_dimensions
from swiftdeploy.state.evidence import Dimension, Evidence, PassedBy


@dataclass(frozen=True)
class Replayed:
    """One recorded answer and what the other policy or settings answer instead."""

    analysis: str
    look: int
    ts: str
    step: int
    caller: str
    before: str
    after: str
    reasons: tuple[str, ...]

    @property
    def flipped(self) -> bool:
        return self.before != self.after

    def as_json(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis,
            "look": self.look,
            "ts": self.ts,
            "step": self.step,
            "caller": self.caller,
            "before": self.before,
            "after": self.after,
            "flipped": self.flipped,
            "reasons": list(self.reasons),
        }


def judge_records(records: Iterable[Record]) -> list[Record]:
    """The judge's decision records (they name their analysis and hold its ledger)."""
    return [
        record
        for record in records
        if record.get("kind") == "decision"
        and isinstance(record.get("analysis"), str)
        and isinstance(record.get("evidence"), dict)
    ]


def replay(records: Iterable[Record], engine: PolicyEngine, policy: Policy) -> list[Replayed]:
    """Every judge answer in `records`, in order, under `engine` and `policy`."""
    settings = Settings.of(policy)
    passes: dict[tuple[str, int], dict[Dimension, PassedBy]] = {}
    out: list[Replayed] = []
    for record in judge_records(records):
        key = str(record["analysis"])
        decision = record.get("decision") or {}
        recorded_input = decision.get("input") or {}
        try:
            evidence = Evidence.model_validate(record["evidence"])
            canary = Measurement.model_validate(decision["measurements"]["canary"])
            stable = Measurement.model_validate(decision["measurements"]["stable"])
        except (KeyError, TypeError, ValidationError):
            continue  # not a record this version of the judge wrote
        step = evidence.current
        if step is None:
            continue
        evidence = _with_passes(evidence, passes, key)
        statistics = assess(evidence, settings)
        passes[key, step.index] = passed_dimensions(statistics)
        given_step = recorded_input.get("step") or {}
        policy_input = canary_input(
            policy=policy,
            analysis=Analysis(
                min_duration=given_step.get("min_duration_s", 30.0),
                max_duration=given_step.get("max_duration_s", 600.0),
            ),
            step_index=step.index,
            weight=step.weight,
            elapsed_s=float(given_step.get("elapsed_s", 0.0)),
            canary=canary,
            stable=stable,
            canary_healthy=bool((recorded_input.get("canary") or {}).get("healthy", True)),
            statistics=statistics,
        )
        after = engine.decide(CANARY, policy_input)
        before = (decision.get("output") or {}).get("verdict")
        out.append(
            Replayed(
                analysis=key,
                look=int(record.get("look") or 0),
                ts=str(record.get("ts", "")),
                step=step.index,
                caller=str(record.get("caller", "")),
                before=str(before),
                after=after.verdict,
                reasons=tuple(reason.message for reason in after.reasons),
            )
        )
    return out


def _with_passes(
    evidence: Evidence, passes: dict[tuple[str, int], dict[Dimension, PassedBy]], key: str
) -> Evidence:
    """The ledger with each step's passes as the replay found them (none yet: none)."""
    steps = tuple(
        step.model_copy(update={"passed": passes.get((key, step.index), {})})
        for step in evidence.steps
    )
    return evidence.model_copy(update={"steps": steps})
