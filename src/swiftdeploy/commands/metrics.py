"""`swiftdeploy metrics`: each track's current window, measured by the manifest's provider."""

from __future__ import annotations

import time

from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.wiring import BOOTSTRAP_S, metrics_provider


def measure(fleet: Fleet, tracks: list[str], window_s: float) -> dict[str, Measurement]:
    """Both tracks over the same window: a first look at each, a pause, then the measure
    (a saved scrape history or Prometheus may give a longer window than the pause)."""
    provider = metrics_provider(fleet)
    for track in tracks:
        provider.mark(track)
    time.sleep(BOOTSTRAP_S)
    return {track: provider.measure(track, window_s) for track in tracks}
