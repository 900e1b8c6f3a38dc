"""Each replica's load at each step: the numbers `rollout --plan` prints and warns on."""

from __future__ import annotations

import pytest

from swiftdeploy.manifest import Manifest
from swiftdeploy.rollout.capacity import manifest_loads, step_loads, warning, warnings


def test_init_defaults_put_the_last_step_at_the_limit_not_over_it() -> None:
    # 2 stable replicas carry 50% each before; 1 canary replica at 10/25/50%
    loads = step_loads([10, 25, 50], canary_replicas=1, stable_replicas=2)
    assert [load.canary_share for load in loads] == [0.1, 0.25, 0.5]
    assert [load.stable_share for load in loads] == [0.45, 0.375, 0.25]
    assert {load.before_share for load in loads} == {0.5}
    assert [load.ratio for load in loads] == [0.2, 0.5, 1.0]
    # at 50% the canary replica carries exactly what a stable replica did: equal, not more
    assert not any(load.overloaded for load in loads)
    assert warnings(loads) == []


def test_four_stable_replicas_overload_one_canary_replica_at_50_percent() -> None:
    loads = step_loads([10, 25, 50], canary_replicas=1, stable_replicas=4, service_rps=200.0)
    assert [load.overloaded for load in loads] == [False, False, True]
    last = loads[2]
    assert (last.canary_share, last.before_share, last.ratio) == (0.5, 0.25, 2.0)
    assert (last.rps(last.canary_share), last.rps(last.before_share)) == (100.0, 50.0)
    assert last.replicas_needed == 2
    [line] = warnings(loads)
    assert line == (
        "step 3 (weight 50%): a canary replica would carry 50% of the traffic (100.0 req/s),"
        " 2x a stable replica's 25% (50.0 req/s) before the rollout (1 canary vs 4 stable"
        " replicas); raise strategy.canary.replicas to 2"
    )


def test_25_percent_next_to_4_stable_replicas_is_at_the_limit() -> None:
    # 25% on one canary replica = 25% per stable replica before: no warning
    [load] = step_loads([25], canary_replicas=1, stable_replicas=4)
    assert load.ratio == 1.0
    assert warning(load) is None


def test_more_canary_replicas_share_the_step() -> None:
    [load] = step_loads([50], canary_replicas=2, stable_replicas=4)
    assert load.canary_share == 0.25
    assert warning(load) is None


def test_without_a_rate_the_warning_gives_shares_only() -> None:
    loads = step_loads([10, 50, 90], canary_replicas=1, stable_replicas=3)
    assert [load.rps(load.canary_share) for load in loads] == [None, None, None]
    lines = warnings(loads)
    assert [line.split(":")[0] for line in lines] == ["step 2 (weight 50%)", "step 3 (weight 90%)"]
    assert "req/s" not in "".join(lines)
    assert "carry 50% of the traffic, 1.5x a stable replica's 33.3% before" in lines[0]
    assert lines[0].endswith("raise strategy.canary.replicas to 2")
    assert "2.7x" in lines[1]
    assert lines[1].endswith("raise strategy.canary.replicas to 3")


@pytest.mark.parametrize(
    ("weight", "stable", "needed"),
    [(1, 1, 1), (50, 2, 1), (51, 2, 2), (50, 4, 2), (99, 32, 32), (34, 3, 2), (33, 3, 1)],
)
def test_replicas_needed_is_the_fewest_that_carry_no_more(
    weight: int, stable: int, needed: int
) -> None:
    [load] = step_loads([weight], canary_replicas=1, stable_replicas=stable)
    assert load.replicas_needed == needed
    [enough] = step_loads([weight], canary_replicas=needed, stable_replicas=stable)
    assert not enough.overloaded
    if needed > 1:
        [fewer] = step_loads([weight], canary_replicas=needed - 1, stable_replicas=stable)
        assert fewer.overloaded


def test_the_comparison_is_exact_where_floats_are_not() -> None:
    # 3 stable replicas carry a third each; a canary replica at 33% carries less, at 34% more
    below, above = step_loads([33, 34], canary_replicas=1, stable_replicas=3)
    assert (below.overloaded, above.overloaded) == (False, True)


def test_a_manifest_gives_its_steps_and_replica_counts() -> None:
    manifest = Manifest.model_validate(
        {
            "apiVersion": "swiftdeploy/v1",
            "service": {"name": "demo", "command": ["x", "{port}"], "version": "v1", "replicas": 4},
            "strategy": {"canary": {"replicas": 1, "steps": [{"weight": 20}, {"weight": 60}]}},
        }
    )
    loads = manifest_loads(manifest, service_rps=10.0)
    assert [(load.weight, load.canary_replicas, load.stable_replicas) for load in loads] == [
        (20, 1, 4),
        (60, 1, 4),
    ]
    assert [load.overloaded for load in loads] == [False, True]
    assert loads[1].as_json()["canary_rps_per_replica"] == 6.0


def test_replica_counts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        step_loads([10], canary_replicas=0, stable_replicas=2)
