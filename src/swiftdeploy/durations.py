"""Durations written as `500ms`, `10s`, `2m`, `1h`, compounds such as `1m30s` or
`1h2m3s500ms` (or plain seconds), and read back for people as `34 s`, `1 min 40 s`,
`12 min`, `2 h 5 min`: the one parser and the one formatter every part uses."""

from __future__ import annotations

import math
import re

_NUMBER = r"\d+(?:\.\d+)?"
# Units largest first, each at most once (Go's time.ParseDuration, without negatives).
# ECMA-262 and Python read this pattern alike, so the JSON Schema carries it as is.
DURATION_PATTERN = (
    rf"^\s*(?=\d)(?:{_NUMBER}|(?:{_NUMBER}\s*h\s*)?(?:{_NUMBER}\s*m\s*)?"
    rf"(?:{_NUMBER}\s*s\s*)?(?:{_NUMBER}\s*ms)?)\s*$"
)
_DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(rf"({_NUMBER})\s*(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
FORMS = "500ms, 10s, 2m, 1h or 1m30s"


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as {FORMS}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value):
        parts = _PART.findall(value)
        seconds = (
            sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts) if parts else float(value)
        )
    else:
        raise ValueError(f"{value!r} is not a duration; use forms like {FORMS}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration to the precision a person needs: milliseconds under half a second (a
    `200ms` timeout must not read `0 s`), seconds under 10 minutes, minutes under 10
    hours, hours beyond (`200 ms`, `34 s`, `1 min 40 s`, `12 min`, `2 h 5 min`, `20 h`)."""
    if not math.isfinite(seconds):
        raise ValueError("a duration to show must be finite")
    if 0 < seconds < 0.5:
        return f"{max(round(seconds * 1000), 1)} ms"
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole} s"
    if whole < 600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 600:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{round(seconds / 3600)} h"


def format_ago(at: float, now: float) -> str:
    """How long ago `at` was, for people (`1 min 40 s ago`); never negative."""
    return f"{format_duration(max(now - at, 0.0))} ago"
