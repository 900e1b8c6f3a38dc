"""The judgement as pure functions, with the shipped canary policy: counts in, verdict out.

Each look is what a controller's call would count: the tracks' requests since the
previous call, ten seconds apart, the canary at 10% of the traffic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swiftdeploy.judge.judgement import Call, Run, judge_look, opened, with_step
from swiftdeploy.judge.store import AnalysisStore
from swiftdeploy.manifest import Analysis, Policy, Warmup
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.policy.base import CANARY
from swiftdeploy.policy.embedded import EmbeddedEngine
from swiftdeploy.rollout.looking import opened_evidence

POLICIES = Path(__file__).resolve().parents[2] / "policies"
POLICY = Policy()
ANALYSIS = Analysis(warmup=Warmup(time=0, requests=0))
LOOK_S = 10.0


@pytest.fixture(scope="module")
def engine() -> Iterator[EmbeddedEngine]:
    policy = EmbeddedEngine(POLICIES)
    yield policy
    policy.close()


def served(track: str, start: float, end: float, requests: int, errors: int) -> Measurement:
    """What a track served in (start, end]: every request fast (under 50 ms)."""
    return Measurement(
        track=track,
        provider="test",
        status="ok" if requests else "no_data",
        window_start=start,
        window_end=end,
        elapsed_s=end - start,
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        buckets={"0.05": requests, "0.1": requests, "0.25": requests, "+Inf": requests},
    )


def call(step: str | None = "1", weight: int | None = 10) -> Call:
    return Call("argo", "shop", "cart", "7", "aaa111", "bbb222", "argo", step=step, weight=weight)


def new_run(now: float = 1000.0) -> Run:
    """An analysis whose stable's last five minutes (60 blocks of 5 s, 0.5% errors)
    are known, as Prometheus would tell them."""
    history = [served("stable", now - 300 + 5 * i, now - 295 + 5 * i, 400, 2) for i in range(60)]
    reference = served("stable", now - 300, now, 24_000, 120)
    run = opened(call(), opened_evidence(reference, history, POLICY), ANALYSIS, now)
    evidence = run.evidence.marked("canary", now).marked("stable", now)
    return run.model_copy(update={"evidence": evidence})


def looks(
    engine: EmbeddedEngine, run: Run, canary: tuple[int, int], stable: tuple[int, int], n: int
) -> tuple[Run, list[str]]:
    """n looks at these per-look counts; the run after them and each verdict."""
    verdicts = []
    for _ in range(n):
        now = run.evidence.marks["canary"] + LOOK_S
        start = run.evidence.marks["canary"]
        latest = {
            "canary": served("canary", start, now, *canary),
            "stable": served("stable", start, now, *stable),
        }
        judged = judge_look(run, latest, now, POLICY, ANALYSIS, "test")  # type: ignore[arg-type]
        verdicts.append(engine.decide(CANARY, judged.policy_input).verdict)
        run = judged.run
    return run, verdicts


def test_a_healthy_canary_is_promoted_once_the_evidence_is_enough(engine: EmbeddedEngine) -> None:
    # Given a canary as good as its stable (0.5% errors both), 100 canary requests a look
    _, verdicts = looks(engine, new_run(), (100, 0), (900, 5), 40)
    # Then it holds while the evidence is short, and then is promoted, never rolled back
    assert "rollback" not in verdicts
    assert verdicts[0] == "hold"
    assert "promote" in verdicts
    first = verdicts.index("promote")
    assert 3 <= first < 40  # after min_duration (30 s) and enough requests


def test_a_canary_failing_five_points_more_is_rolled_back(engine: EmbeddedEngine) -> None:
    # Given a canary failing 5.5% against a stable's 0.5%
    _, verdicts = looks(engine, new_run(), (100, 6), (900, 5), 10)
    # Then it is rolled back within a few looks
    assert "rollback" in verdicts
    assert "promote" not in verdicts[: verdicts.index("rollback")]


def test_no_canary_traffic_holds_and_never_rolls_back(engine: EmbeddedEngine) -> None:
    # Given a canary nobody calls
    _, verdicts = looks(engine, new_run(), (0, 0), (900, 5), 30)
    # Then every answer is a hold: no evidence is never a reason to roll back
    assert set(verdicts) == {"hold"}


def test_evidence_adds_up_across_steps_and_a_judge_restart(
    engine: EmbeddedEngine, tmp_path: Path
) -> None:
    store = AnalysisStore(tmp_path, max_analyses=10, max_age_s=3600)
    # Given two looks at step 1, saved as the judge saves after each answer
    run, _ = looks(engine, new_run(), (100, 6), (900, 5), 2)
    store.save(run)
    # When a new judge (another store on the same directory) reads it back
    again = AnalysisStore(tmp_path, max_analyses=10, max_age_s=3600).load(run.key)
    assert again == run
    # And the caller moves to step 2 at 20%, and looks twice more
    now = again.evidence.marks["canary"]
    moved = with_step(again, call(step="2", weight=20), now)
    moved = moved.model_copy(
        update={"evidence": moved.evidence.marked("canary", now).marked("stable", now)}
    )
    after, _ = looks(engine, moved, (200, 12), (800, 4), 2)
    # Then step 1's counts are kept and step 2 counts its own: evidence adds up
    first, second = after.evidence.steps
    assert (first.index, first.canary.requests, first.canary.errors) == (0, 200, 12)
    assert (second.index, second.weight, second.canary.requests) == (1, 20, 400)
    assert after.looks == 4
    # And the same step again is the same step
    assert with_step(after, call(step="2", weight=20), now + 100) == after


def test_without_a_weight_the_step_takes_its_observed_share(engine: EmbeddedEngine) -> None:
    run = new_run()
    run = run.model_copy(update={"weight_known": False})
    run, _ = looks(engine, run, (100, 0), (300, 1), 1)
    assert run.evidence.current is not None
    assert run.evidence.current.weight == 25


def test_old_analyses_are_pruned(tmp_path: Path) -> None:
    clock = [10_000.0]
    store = AnalysisStore(tmp_path, max_analyses=2, max_age_s=100, clock=lambda: clock[0])
    base = new_run()
    for i, updated in enumerate((9_000.0, 9_950.0, 9_960.0, 9_970.0)):
        store.save(base.model_copy(update={"key": f"argo/shop/cart/{i}", "updated_at": updated}))
    # the oldest is too old, and of the rest only the newest two (with the one kept) stay
    pruned = store.prune(keep="argo/shop/cart/3")
    assert sorted(pruned) == ["argo/shop/cart/0", "argo/shop/cart/1"]
    assert [run.key for run in store.runs()] == ["argo/shop/cart/2", "argo/shop/cart/3"]
