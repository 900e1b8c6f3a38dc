"""`swiftdeploy metrics`: each track's current window, measured by the manifest's provider."""

from __future__ import annotations

import time

from swiftdeploy.commands.rollout import metrics_provider
from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics.base import Measurement


def measure(fleet: Fleet, tracks: list[str], window_s: float) -> dict[str, Measurement]:
    """Both tracks over the same window: a first look at each, a pause, then the measure
    (a saved scrape history or Prometheus may give a longer window than the pause)."""
    provider = metrics_provider(fleet)
    for track in tracks:
        provider.prime(track)
    time.sleep(max(1.0, fleet.loaded.manifest.strategy.canary.analysis.interval))
    return {track: provider.measure(track, window_s) for track in tracks}
