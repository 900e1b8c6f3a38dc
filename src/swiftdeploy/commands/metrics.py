"""`swiftdeploy metrics`: each track's last window, measured by the manifest's provider."""

from __future__ import annotations

from swiftdeploy.commands.context import metrics_provider
from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics.base import Measurement


def measure(fleet: Fleet, tracks: list[str], window_s: float) -> dict[str, Measurement]:
    """The traffic of the last `window_s` seconds, including what came before the
    command ran: nginx and Prometheus keep that history; the scrape provider has what
    earlier runs saved, and says when the window reaches back before it."""
    provider = metrics_provider(fleet)
    return {track: provider.measure(track, window_s) for track in tracks}
