"""Durations written as `500ms`, `10s`, `2m`, `1h` (or plain seconds), and read back
for people as `34 s`, `1 min 40 s`, `12 min`, `2 h 5 min`."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 10s, 2m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; use forms like 500ms, 10s, 2m or 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration to the precision a person needs: seconds under 10 minutes, minutes
    under 10 hours, hours beyond (`34 s`, `1 min 40 s`, `12 min`, `2 h 5 min`, `20 h`)."""
    if not math.isfinite(seconds):
        raise ValueError("a duration to show must be finite")
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
