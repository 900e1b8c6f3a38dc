"""`rollout --plan`'s numbers: pure, from the manifest and a reference measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.rollout.plan import plan
from swiftdeploy.rollout.statistics import (
    Settings,
    latency_bound,
    needed_for_errors,
    needed_for_latency,
)
from swiftdeploy.state.evidence import Counts
from tests.support.sim import LABELS, TrackModel, init_manifest


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
    assert any("warm-up (60s and 300 canary requests: about 60s" in note for note in notes)
    off = init_manifest(tmp_path, **{"strategy.canary.analysis.warmup": "off"}).manifest
    assert plan(off, reference).steps[0].seconds == pytest.approx(
        max(30.0, errors / 5, latency / 5)
    )
