"""The two policy gates outside the rollout loop.

- infrastructure: before `deploy`, `canary` and `rollout`, the host must pass
  `swiftdeploy.infrastructure`, or nothing is started;
- canary: before a person moves a canary up (`promote`, `weight N` upward), one look
  at the current step is put to `swiftdeploy.canary`, as the rollout does at every
  look. A rollback verdict, a policy engine that cannot decide, or metrics that cannot
  be read refuse the move (exit 3, nothing changed) unless it is forced with a reason;
  a hold (not enough evidence either way) lets the person decide, and says so.
"""

from __future__ import annotations

import getpass

from swiftdeploy.audit.recorder import Recorder, record_decision
from swiftdeploy.errors import PolicyDeniedError
from swiftdeploy.hostfacts import measure_host
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.policy.base import INFRASTRUCTURE, Decision, PolicyEngine
from swiftdeploy.rollout.engine import Look, RolloutEngine, summarize_reasons
from swiftdeploy.rollout.inputs import infrastructure_input
from swiftdeploy.state import State


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


def canary_gate(engine: RolloutEngine, state: State, action: str, force_reason: str | None) -> Look:
    """One look at the canary's step before a person moves it up; raises when refused.
    The decision is recorded either way, with who forced what when it was forced."""
    look = engine.look(state)
    blocked = _blocked(look)
    if blocked and force_reason is None:
        engine.record(look, "refused", requested=action)
        raise PolicyDeniedError(
            f"canary policy refused {action}: {blocked}",
            hint="nothing was changed; `swiftdeploy rollback` ends the canary,"
            " `--force --reason TEXT` overrides",
        )
    if blocked:
        forced = {
            "by": getpass.getuser(),
            "action": action,
            "reason": force_reason,
            "against": look.decision.verdict,
            "why": blocked,
        }
        engine.record(look, f"forced {action}", requested=action, forced=forced)
    else:
        engine.record(look, action, requested=action)
    return look


def _blocked(look: Look) -> str:
    """Why the gate refuses, or "" when the person may go on."""
    decision = look.decision
    if decision.failed:
        return f"the policy engine could not decide: {summarize_reasons(decision)}"
    broken = [m.track for m in (look.canary, look.stable) if m.status == "provider_error"]
    if broken:
        return f"{' and '.join(broken)} metrics could not be read"
    if decision.verdict == "rollback":
        return summarize_reasons(decision) or "the policy says roll back"
    return ""
