"""The nginx provider's blocks: the router's per-second history cut into blocks of
time, for how bursty the stable already was before a rollout (stats.dispersion)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from swiftdeploy.errors import TrafficError
from swiftdeploy.metrics.base import BlockHistory
from swiftdeploy.metrics.nginx import NginxProvider


class History:
    """Per-second counts of one track since `since`: 10 requests a second, and a
    burst of 8 errors in one second."""

    def __init__(self, since: int, burst_at: int) -> None:
        self.since = since
        self.burst_at = burst_at
        self.asked: list[tuple[int, int]] = []

    def __call__(self, track: str, start: int, end: int) -> Mapping[str, Any]:
        self.asked.append((start, end))
        seconds = range(max(start, self.since), end)
        errors = sum(8 for second in seconds if second == self.burst_at)
        requests = 10 * len(seconds)
        return {
            "since": self.since,
            "requests": requests,
            "errors": errors,
            "buckets": {"0.1": requests, "+Inf": requests},
        }


def _provider(history: Any) -> NginxProvider:
    return NginxProvider(lambda track: "", history, client=httpx.Client())


def test_blocks_cut_the_history_into_whole_blocks_oldest_first() -> None:
    now = int(time.time())
    history = History(since=now - 3600, burst_at=now - 7)
    provider = _provider(history)
    assert isinstance(provider, BlockHistory)
    blocks = provider.blocks("stable", 30, 5)
    assert len(blocks) == 6
    starts = [block.window_start for block in blocks]
    assert starts == sorted(starts)
    assert all(b.window_end - b.window_start == 5 for b in blocks)
    assert [b.requests for b in blocks] == [50] * 6
    assert sum(b.errors for b in blocks) == 8  # the burst, in the one block that had it
    assert sorted(b.errors for b in blocks)[-1] == 8


def test_blocks_from_before_nginx_started_are_left_out() -> None:
    now = int(time.time())
    history = History(since=now - 12, burst_at=-1)
    blocks = _provider(history).blocks("stable", 300, 5)
    assert 1 <= len(blocks) <= 2
    assert all(block.window_start >= now - 12 for block in blocks)


def test_no_blocks_when_the_history_cannot_be_read() -> None:
    def broken(track: str, start: int, end: int) -> Mapping[str, Any]:
        raise TrafficError("admin socket refused")

    assert _provider(broken).blocks("stable", 60, 5) == []
