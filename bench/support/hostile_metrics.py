"""Hostile /metrics bodies at the scrape's size limit (issue 22): what a canary could
serve to make every scrape cost the controller seconds of CPU and hundreds of MiB.
Shared by tests/metrics, tests/security/test_fuzz.py and bench/fuzz.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swiftdeploy.metrics.exposition import MAX_LINE_CHARS, MAX_LINES, MAX_SERIES
from swiftdeploy.metrics.scrape import MAX_BYTES

TYPE_LINE = "# TYPE http_requests_total counter\n"


def fill(line: Callable[[int], str], limit: int = MAX_BYTES, lines: int | None = None) -> str:
    """A TYPE line, then line(0), line(1), ... while the body stays within `limit`
    characters (and `lines` lines)."""
    parts, size, i = [TYPE_LINE], len(TYPE_LINE), 0
    while size + len(text := line(i)) <= limit and (lines is None or i + 1 < lines):
        parts.append(text)
        size += len(text)
        i += 1
    return "".join(parts)


def distinct_requests(i: int) -> str:
    return f'http_requests_total{{method="GET",route="/r{i}",code="200"}} 1\n'


def distinct_buckets(i: int) -> str:
    return f'http_request_duration_seconds_bucket{{method="GET",route="/r{i}",le="0.1"}} 1\n'


def long_label(i: int, pad: str = "x") -> str:
    """A line of our family just under the line cap, its route mostly `pad`."""
    head = f'http_requests_total{{method="GET",code="200",route="/{i}'
    return head + pad * ((MAX_LINE_CHARS - len(head) - 5) // len(pad)) + '"} 1\n'


def largest_accepted() -> str:
    """The most work a body can be and still be read: MAX_SERIES distinct series, then
    lines of another family up to the line cap and the size limit."""
    ours = "".join(distinct_requests(i) for i in range(MAX_SERIES))
    others = MAX_LINES - MAX_SERIES - 1  # and the TYPE line
    room = (MAX_BYTES - len(TYPE_LINE) - len(ours)) // others
    pad = f'other_metric{{label="{"y" * (room - 25)}"}} 1\n'
    return TYPE_LINE + ours + pad * others


@dataclass(frozen=True)
class Shape:
    name: str
    body: Callable[[], str]
    accepted: bool  # read (a TargetSample) or refused (one MetricsProviderError)


SHAPES = (
    Shape("240k distinct request series (the review's)", lambda: fill(distinct_requests), False),
    Shape(
        "200k distinct bucket series (under the line cap)",
        lambda: fill(distinct_buckets, lines=MAX_LINES),
        False,
    ),
    Shape(
        "one series repeated (under the line cap)",
        lambda: fill(lambda i: distinct_requests(0), lines=MAX_LINES),
        False,
    ),
    Shape("4,000 lines of our family of 4 KiB", lambda: fill(long_label), True),
    Shape(
        '4 KiB lines of escapes (\\")',
        lambda: fill(lambda i: long_label(i, '\\"')),
        True,
    ),
    Shape(
        "one line of 16 MiB",
        lambda: TYPE_LINE + 'http_requests_total{route="' + "x" * (MAX_BYTES - 100) + '"} 1\n',
        False,
    ),
    Shape("4M short lines of another family", lambda: fill(lambda i: "a 1\n"), False),
    Shape(
        "\\x1c and \\u2028 separators, no newline",
        lambda: TYPE_LINE + "a 1\x1c\u2028" * ((MAX_BYTES - 64) // 7),  # 7 bytes each
        True,  # one line of another family: skipped on its first characters
    ),
    Shape("20,000 series + 180k other lines (largest read)", largest_accepted, True),
)
