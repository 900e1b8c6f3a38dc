"""The infrastructure gate before `deploy`, `canary` and `rollout`: the host must pass
`swiftdeploy.infrastructure`, or nothing is started."""

from __future__ import annotations

from swiftdeploy.errors import PolicyDeniedError
from swiftdeploy.fleet import Recorder, record_decision
from swiftdeploy.hostfacts import measure_host
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.policy.base import INFRASTRUCTURE, Decision, PolicyEngine
from swiftdeploy.rollout.inputs import infrastructure_input


def infrastructure_gate(
    loaded: LoadedManifest, engine: PolicyEngine, recorder: Recorder, action: str
) -> Decision:
    host = measure_host(loaded.state_dir)
    policy_input = infrastructure_input(action, loaded.manifest.policy.thresholds, host)
    decision = engine.decide(INFRASTRUCTURE, policy_input)
    record_decision(
        recorder,
        decision,
        INFRASTRUCTURE,
        policy_input,
        {"host": host.model_dump()},
        {},
        action=action if decision.allow else "denied",
    )
    if not decision.allow:
        reasons = "; ".join(r.message for r in decision.reasons) or "no reason given"
        hint = (
            "nothing was started; the policy engine could not decide (fails closed)"
            if decision.failed
            else "nothing was started; fix the host or the thresholds in policy.thresholds"
        )
        raise PolicyDeniedError(f"infrastructure policy denied {action}: {reasons}", hint=hint)
    return decision
