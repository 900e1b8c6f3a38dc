"""The `nginx` provider: per-track counts and latency measured in nginx itself.

nginx's lua counters are exposed per track on the loopback admin port in the same
series as the demo service (`http_requests_total`, `http_request_duration_seconds`),
so this is the scrape provider pointed at nginx: one target per track, with the same
window and counter-reset handling (an nginx restart resets its counters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swiftdeploy.metrics.scrape import ScrapeProvider


class NginxProvider(ScrapeProvider):
    name = "nginx"

    def __init__(self, metrics_url: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(lambda track: [metrics_url(track)], **kwargs)
