"""`rollout --plan`'s numbers: pure, from the manifest and a reference measurement."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bench.support.sim import LABELS, TrackModel, init_manifest

from swiftdeploy.durations import format_duration
from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.rollout.plan import early_warnings, later_steps_s, plan
from swiftdeploy.rollout.statistics import (
    Settings,
    latency_bound,
    needed_for_errors,
    needed_for_latency,
)
from swiftdeploy.state.evidence import Counts


def _reference(rps: float, error_rate: float, seconds: float = 30.0) -> Measurement:
    requests = int(rps * seconds)
    shares = TrackModel().bucket_probabilities().cumsum()
    buckets = {le: round(requests * share) for le, share in zip(LABELS, shares, strict=True)}
    buckets["+Inf"] = requests
    return summarize(
        track="stable", provider="nginx", window_start=0, window_end=seconds,
        requests=requests, errors=round(requests * error_rate), buckets=buckets,
    )  # fmt: skip


@pytest.mark.parametrize("error_rate", [0.0, 0.005])
def test_the_first_step_adds_the_warmup_before_latency_only(
    tmp_path: Path, error_rate: float
) -> None:
    # 50 req/s: 5 canary req/s at 10%, so 300 warm-up requests take 60 s, as the time does
    manifest = init_manifest(tmp_path).manifest
    reference = _reference(50.0, error_rate)
    stable = Counts.of(reference)
    settings = Settings.of(manifest.policy)
    bound, _ = latency_bound(reference, 100)
    latency, _ = needed_for_latency(stable, bound, 10, 0.0, settings)
    errors = needed_for_errors(stable, 10, 0.0, settings)
    assert latency is not None
    assert errors is not None
    first = plan(manifest, reference).steps[0].seconds
    # errors count from the first request; latency after the warm-up
    assert first == pytest.approx(max(30.0, errors / 5, 60 + latency / 5))
    notes = plan(manifest, reference).notes
    assert any("warm-up (1 min and 300 canary requests: about 1 min" in note for note in notes)
    off = init_manifest(tmp_path, **{"strategy.canary.analysis.warmup": "off"}).manifest
    assert plan(off, reference).steps[0].seconds == pytest.approx(
        max(30.0, errors / 5, latency / 5)
    )


def test_no_traffic_warns_that_step_one_holds_and_when(tmp_path: Path) -> None:
    # Given a service that served no request in the last 30 s
    manifest = init_manifest(tmp_path).manifest
    found = plan(manifest, _reference(0.0, 0.0))
    # When a rollout starts at 12:00 (local time)
    noon = time.mktime((2025, 1, 6, 12, 0, 0, 0, 0, -1))
    warnings = early_warnings(found, noon)
    # Then one line says there is no traffic, that step 1 cannot pass, and when it holds
    assert len(warnings) == 1
    assert warnings[0].startswith("no requests to the service in the last 30 s:")
    assert "step 1 cannot pass; it holds at max_duration (in 10 min, at 12:10)" in warnings[0]
    # and --plan says the same, with a step-1 row that does not point at an earlier step
    assert found.notes[0] == early_warnings(found)[0]
    assert [step.needed_text for step in found.steps] == [
        "- (no traffic)",
        "- (earlier step's)",
        "- (earlier step's)",
    ]


def test_too_little_traffic_warns_with_the_rate_and_step_ones_time(tmp_path: Path) -> None:
    manifest = init_manifest(tmp_path).manifest
    found = plan(manifest, _reference(5.0, 0.005))
    first = found.steps[0]
    assert first.needed_requests is not None
    assert first.seconds is not None
    assert not first.within_limit
    [warning] = early_warnings(found)
    assert warning.startswith(
        "only 5 req/s to the service in the last 30 s (0.5 canary req/s at 10%):"
    )
    assert f"needs up to about {first.needed_requests:,} canary requests" in warning
    assert f"about {format_duration(first.seconds)}" in warning
    assert "it holds at max_duration (in 10 min) with the canary at 10% if still undecided" in (
        warning
    )
    assert first.needed_text == str(first.needed_requests)


def test_enough_traffic_starts_without_a_warning(tmp_path: Path) -> None:
    manifest = init_manifest(tmp_path).manifest
    found = plan(manifest, _reference(500.0, 0.005))
    assert found.steps[0].within_limit
    assert early_warnings(found) == []
    assert not any("max_duration" in note for note in found.notes)


def test_traffic_that_cannot_be_planned_still_says_when_it_holds(tmp_path: Path) -> None:
    # 15 requests in 30 s: too few to plan step 1 with
    manifest = init_manifest(tmp_path).manifest
    found = plan(manifest, _reference(0.5, 0.0))
    assert found.steps[0].needed_requests is None
    assert found.steps[0].needed_text == "cannot plan"
    [warning] = early_warnings(found)
    assert "step 1 cannot be planned at this traffic; it holds at max_duration (in 10 min)" in (
        warning
    )


def test_later_steps_take_their_minimum_and_timed_pauses(tmp_path: Path) -> None:
    steps = [{"weight": 10}, {"weight": 25, "pause": "20s"}, {"weight": 50, "pause": "manual"}]
    manifest = init_manifest(tmp_path, **{"strategy.canary.steps": steps}).manifest
    assert later_steps_s(manifest, 0) == (30.0 + 20.0 + 30.0, True)
    assert later_steps_s(manifest, 1) == (30.0, True)
    assert later_steps_s(manifest, 2) == (0.0, False)


def test_the_steps_own_load_counts_as_traffic(tmp_path: Path) -> None:
    # Given no service traffic, but a step that generates 300 req/s of its own
    changes = {"strategy.canary.analysis.load": {"rps": 300, "concurrency": 10}}
    manifest = init_manifest(tmp_path, **changes).manifest
    found = plan(manifest, _reference(0.0, 0.0))
    # Then the plan counts the load's share at each weight and does not say "no traffic"
    assert found.steps[0].canary_rps == pytest.approx(300 * found.steps[0].weight / 100)
    assert early_warnings(found) == []  # the load decides it; nothing to warn of
    assert found.steps[0].needed_text != "- (no traffic)"
