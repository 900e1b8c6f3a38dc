"""The judge: one look per call at a named analysis, recorded, then answered.

For each call: under the analysis's lock, its run is read back (or opened: the
stable's recent traffic fixes the latency bound, its last minutes seed its spread),
each track is measured since the previous call (the team's Prometheus, read-only,
`metrics.prometheus` with the controller's templates), the look is judged
(`judge.judgement`), the canary policy decides, the decision is appended to the
judge's audit trail, and only then is the run saved and the answer given: a call
whose record could not be written answers an error and counts nothing.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.recorder import record_decision
from swiftdeploy.errors import BadInputError
from swiftdeploy.judge.config import LoadedJudge
from swiftdeploy.judge.judgement import (
    Call,
    Judged,
    Run,
    answer_track,
    judge_look,
    marked,
    opened,
    with_step,
)
from swiftdeploy.judge.store import AnalysisStore
from swiftdeploy.manifest import EnvSecret, KubeSecret
from swiftdeploy.metrics.base import BlockHistory, MetricsProvider
from swiftdeploy.metrics.prometheus import PrometheusProvider
from swiftdeploy.notify.secrets import describe
from swiftdeploy.policy.base import CANARY, Decision, PolicyEngine
from swiftdeploy.rollout.looking import TRACKS, Track, opened_evidence
from swiftdeploy.stats.dispersion import BLOCK_S, HISTORY_BLOCKS

PRUNE_EVERY_S = 60.0
CALLER_TOKEN_KEY = "token"  # noqa: S105 - the metadata key Flagger callers put theirs in


def resolve_tokens(loaded: LoadedJudge, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each caller's token, read now: from the environment, or from the Secret mounted
    at secrets_dir/<secret>/<key> (the judge has no access to the Kubernetes API). A
    missing or empty one is one clear error: the judge starts with every caller or not."""
    env = os.environ if environ is None else environ
    tokens: dict[str, str] = {}
    for caller in loaded.config.callers:
        value = _read_token(loaded, caller.token, env)
        if not value:
            raise BadInputError(
                f"callers.{caller.name}: {describe(caller.token)} is not set or empty",
                hint="give each caller a token (docs/judge.md, Security)",
            )
        tokens[caller.name] = value
    return tokens


def _read_token(loaded: LoadedJudge, ref: EnvSecret | KubeSecret, env: Mapping[str, str]) -> str:
    if isinstance(ref, EnvSecret):
        return env.get(ref.env, "").strip()
    path = Path(loaded.config.secrets_dir) / ref.secret / ref.key
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def caller_of(tokens: Mapping[str, str], presented: str | None) -> str | None:
    """The caller whose token was presented, compared in constant time; None if none."""
    if not presented:
        return None
    found = None
    for name, token in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = name
    return found


@dataclass(frozen=True)
class Answer:
    """What a caller gets: the verdict, why, and where the analysis stands."""

    verdict: str
    reasons: tuple[dict[str, Any], ...]
    key: str
    look: int
    step: int
    canary: dict[str, Any]
    stable: dict[str, Any]
    evidence_of_harm: float | None
    decision_id: str | None

    @property
    def inconclusive(self) -> bool:
        """Not enough evidence either way yet (Argo: neither condition holds)."""
        return self.verdict == "hold"

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "inconclusive": self.inconclusive,
            "reasons": list(self.reasons),
            "analysis": self.key,
            "look": self.look,
            "step": self.step,
            "canary": self.canary,
            "stable": self.stable,
            "evidence_of_harm": self.evidence_of_harm,
            "decision_id": self.decision_id,
        }


ProviderFactory = Callable[[Call], MetricsProvider]


def prometheus_for(loaded: LoadedJudge, client: httpx.Client) -> ProviderFactory:
    """Each call's provider: the team's Prometheus with the controller's templates and
    the call's namespace, name and each track's hash (Argo) or workload (Flagger)."""
    settings = loaded.config.prometheus

    def provider(call: Call) -> MetricsProvider:
        return PrometheusProvider(
            settings.url,
            client,
            queries=settings.queries.templates(call.controller),
            scrape_interval_s=settings.scrape_interval,
            timeout_s=settings.timeout,
            labels={"namespace": call.namespace, "name": call.name},
            track_labels={
                "stable": {"hash": call.stable, "workload": call.stable},
                "canary": {"hash": call.canary, "workload": call.canary},
            },
        )

    return provider


class Judge:
    def __init__(
        self,
        loaded: LoadedJudge,
        metrics_for: ProviderFactory,
        policy: PolicyEngine,
        log: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.metrics_for = metrics_for
        self.policy = policy
        self.log = log
        self.clock = clock
        retention = self.config.retention
        self.store = AnalysisStore(
            loaded.data_dir, retention.max_analyses, retention.max_age, clock=clock
        )
        self._policy_lock = threading.Lock()  # one decision at a time through the engine
        self._pruned_at = float("-inf")

    def look(self, call: Call) -> Answer:
        """One look at the call's analysis, recorded in the trail before it is answered."""
        with self.store.locked(call.key):
            now = self.clock()
            provider = self.metrics_for(call)
            run = self.store.load(call.key)
            run = self._open(call, provider, now) if run is None else with_step(run, call, now)
            judged = self._judge(run, provider, now)
            with self._policy_lock:
                decision = self.policy.decide(CANARY, judged.policy_input)
            verdict = decision.verdict
            run = judged.run.model_copy(
                update={
                    "last_verdict": verdict,
                    # Flagger raises the weight after a 200 from confirm-traffic-increase
                    "next_step": call.hook == "confirm-traffic-increase" and verdict == "promote",
                }
            )
            self._record(call, judged, decision, run)
            self.store.save(run)
        self._prune(call.key, now)
        return _answer(judged, decision, run)

    def _open(self, call: Call, provider: MetricsProvider, now: float) -> Run:
        history = (
            provider.blocks("stable", HISTORY_BLOCKS * BLOCK_S, BLOCK_S)
            if isinstance(provider, BlockHistory)
            else []
        )
        reference = provider.measure("stable", self.config.prometheus.window)
        evidence = opened_evidence(reference, history, self.config.policy)
        return opened(call, evidence, self.config.analysis, now)

    def _judge(self, run: Run, provider: MetricsProvider, now: float) -> Judged:
        marks: dict[Track, float | None] = {
            track: provider.mark(track) for track in TRACKS if track not in run.evidence.marks
        }
        run = marked(run, marks)
        latest = {
            track: provider.measure_since(track, run.evidence.marks[track])
            if track in run.evidence.marks
            else None
            for track in TRACKS
        }
        return judge_look(run, latest, now, self.config.policy, self.config.analysis, provider.name)

    def _record(self, call: Call, judged: Judged, decision: Decision, run: Run) -> None:
        record_decision(
            _Appender(self.log),
            decision,
            CANARY,
            judged.policy_input,
            {
                "canary": judged.canary.model_dump(mode="json"),
                "stable": judged.stable.model_dump(mode="json"),
            },
            dict(judged.statistics),
            rollout_id=run.key,
            step_index=run.evidence.current.index if run.evidence.current else 0,
            action=decision.verdict,
            analysis=run.key,
            caller=call.caller,
            controller=call.controller,
            hook=call.hook,
            look=run.looks,
            stable_version=run.stable,
            canary_version=run.canary,
            # the ledger after this look: what `judge replay` assesses again
            evidence=run.evidence.model_dump(mode="json"),
        )

    def _prune(self, keep: str, now: float) -> None:
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        self.store.prune(keep)

    def ready(self) -> tuple[bool, str]:
        """Whether calls can be answered: Prometheus reachable, the trail's folder there."""
        probe = self.metrics_for(Call("argo", "default", "readyz", "0", "s", "c", "readyz"))
        if not probe.is_online():
            return False, f"Prometheus at {self.config.prometheus.url} is not ready"
        if not self.loaded.audit_path.parent.is_dir():
            return False, f"the audit trail's directory {self.loaded.audit_path.parent} is missing"
        return True, "ready"


class _Appender:
    """The audit log as a recorder that writes each answer at once (no held looks):
    an answer is given only once its record is durable."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, kind: str, **fields: Any) -> None:
        self.log.append(kind, **fields)

    def flush(self) -> None:
        return None


def _answer(judged: Judged, decision: Decision, run: Run) -> Answer:
    harm = judged.statistics["harm"]["e_value"]
    step = run.evidence.current
    return Answer(
        verdict=decision.verdict,
        reasons=tuple(
            {"rule": r.rule, "message": r.message, "observed": r.observed, "threshold": r.threshold}
            for r in decision.reasons
        ),
        key=run.key,
        look=run.looks,
        step=step.index if step is not None else 0,
        canary=answer_track(judged.canary),
        stable=answer_track(judged.stable),
        evidence_of_harm=harm if isinstance(harm, int | float) else None,
        decision_id=decision.decision_id,
    )
