"""The audit trail's writer for the commands: actions, transitions and gate decisions,
each recorded before it is acted on. `explain` and `why` read what this writes."""

from __future__ import annotations

from typing import Any, Protocol

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.policy.base import Decision


class Recorder(Protocol):
    """Where actions, transitions and decisions are written before they are acted on."""

    def record(self, kind: str, **fields: Any) -> None: ...


def record_decision(
    recorder: Recorder,
    decision: Decision,
    package: str,
    policy_input: dict[str, Any],
    measurements: dict[str, Any],
    statistics: dict[str, Any],
    **fields: Any,
) -> None:
    """A gate decision with everything needed to explain or replay it later."""
    recorder.record(
        "decision",
        decision={
            "engine": decision.engine,
            "package": package,
            "decision_id": decision.decision_id,
            "input": policy_input,
            "output": decision.model_dump(mode="json"),
            "measurements": measurements,
            "statistics": statistics,
            "thresholds": policy_input["thresholds"],
            "step": policy_input.get("step"),
        },
        **fields,
    )


class AuditRecorder:
    """The fleet's recorder: every record goes to the audit trail before the action."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, kind: str, **fields: Any) -> None:
        self.log.append(kind, **fields)
