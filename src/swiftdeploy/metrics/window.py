"""Windowed increases between scrapes, with counter resets handled as Prometheus does.

`increase` is the counter-reset loop of `extrapolatedRate` in prometheus/prometheus
`promql/functions.go` (read at commit 003b9e9d2c4174917eb62e5f47d6a900d09723be; the loop
is the same in 2.x): the result is last - first, plus, for every sample lower than the
one before it, that previous value. A counter that went down was reset to zero, so its
post-reset value is all the increase since the reset: a restart mid-window neither goes
negative nor loses the window.

That total is also the sum, over consecutive samples, of `after - before`, or of
`after` alone where it went down; so each append to a `History` computes every
replica's `Step` from its previous scrape once, and a window is a sum of steps.

As Prometheus does, resets are handled per series of one target (a replica's restart
resets its own counters only), and the increases are summed after that, the way
`sum(increase(x[w]))` works; summing replicas first would hide one replica's reset
behind another's growth.

Where this differs from `increase()`, on purpose:
- No extrapolation to the window's edges. We know when each scrape happened, so the
  window is the span from its first to its last scrape (`WindowDelta.elapsed`), and
  the counts stay whole requests, which is what the statistics downstream need.
- A series missing from a scrape of a target that did answer counts as 0 there:
  prometheus_client creates a labelled series at its first increment and a restarted
  process starts without it, so 0 is its true value. A series that first appears in
  the window (say, the first 500 of a canary) therefore counts in full, where
  Prometheus would drop its first value.
- A target missing from a scrape (that scrape of it failed) has no point there. A
  target seen in only one scrape of the window has no baseline, contributes nothing,
  and is listed in `WindowDelta.unbased` (a replica that just started, usually).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeGuard

from swiftdeploy.metrics.exposition import (
    Sample,
    SeriesKey,
    TargetSample,
    is_error_code,
)


def increase(values: Sequence[float]) -> float:
    """How much a counter grew over its samples, in order, counting resets."""
    if len(values) < 2:
        return 0.0
    result = values[-1] - values[0]
    for previous, current in pairwise(values):
        if current < previous:
            result += previous
    return result


@dataclass(frozen=True, slots=True)
class Step:
    """What one replica served between two of its scrapes; `since` is the earlier one's time."""

    since: float
    requests: float
    errors: float
    buckets: dict[str, float]  # cumulative by le, as the histogram exposes it
    resets: int  # series seen going down: counter resets


def step(previous: TargetSample, current: TargetSample, since: float) -> Step:
    """The increases from `previous` to `current` of one replica, series by series."""
    requests = errors = 0.0
    resets = 0
    for key, grown, reset in _increases(previous.requests, current.requests):
        requests += grown
        resets += reset
        if is_error_code(key[2]):
            errors += grown
    buckets: dict[str, float] = {}
    for key, grown, reset in _increases(previous.buckets, current.buckets):
        buckets[key[2]] = buckets.get(key[2], 0.0) + grown
        resets += reset
    return Step(since=since, requests=requests, errors=errors, buckets=buckets, resets=resets)


def _increases(
    before: Mapping[SeriesKey, float], after: Mapping[SeriesKey, float]
) -> Iterator[tuple[SeriesKey, float, bool]]:
    """increase() of each series over two scrapes: `after`, if it went down (a reset)."""
    for key, value in after.items():
        previous = before.get(key, 0.0)
        if value < previous:
            yield key, value, True
        else:
            yield key, value - previous, False
    for key, previous in before.items():
        if previous > 0 and key not in after:  # gone with a restart: 0 now, a reset
            yield key, 0.0, True


@dataclass(frozen=True, slots=True)
class WindowDelta:
    """What one track served between the first and the last scrape of a window."""

    start: float
    end: float
    requests: float
    errors: float
    buckets: dict[str, float]
    resets: int
    targets: tuple[str, ...]  # replicas counted: at least two scrapes in the window
    unbased: tuple[str, ...]  # replicas seen in one scrape of the window only: not counted
    scrapes: int

    @property
    def elapsed(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape of a track, kept as what each replica served since its previous one."""

    t: float
    targets: tuple[str, ...]  # the replicas that answered
    steps: Mapping[str, Step]  # replica -> its step up to this scrape (none for a first)


class History:
    """One track's scrapes in time order, for `max_age_s` at most (a ring by time).

    Each append computes every replica's step from its previous scrape once, so a
    window is a sum of steps, not a walk over all its series again; only each
    replica's latest scrape is kept in full. A window runs from its oldest scrape
    (at most `window_s` older than the newest) to the newest, and a step counts when
    it starts inside the window; so the result equals the increases over the window's
    scrapes, and whatever happened before the window's first scrape is out of it.
    """

    def __init__(self, *, max_age_s: float = 3600.0, max_len: int = 4096) -> None:
        self.max_age_s = max_age_s
        self._snapshots: deque[Snapshot] = deque(maxlen=max_len)
        self._last: dict[str, tuple[float, TargetSample]] = {}

    def __len__(self) -> int:
        return len(self._snapshots)

    @property
    def snapshots(self) -> tuple[Snapshot, ...]:
        return tuple(self._snapshots)

    def append(self, sample: Sample) -> None:
        """Add the newest scrape. A clock that went back starts the history over."""
        if self._snapshots and sample.t < self._snapshots[-1].t:
            self._snapshots.clear()
            self._last.clear()
        steps: dict[str, Step] = {}
        for name, target in sample.targets.items():
            last = self._last.get(name)
            if last is not None:
                steps[name] = step(last[1], target, since=last[0])
            self._last[name] = (sample.t, target)
        self._snapshots.append(Snapshot(t=sample.t, targets=tuple(sample.targets), steps=steps))
        oldest = sample.t - self.max_age_s
        while self._snapshots[0].t < oldest:
            self._snapshots.popleft()
        for name in [name for name, (t, _) in self._last.items() if t < oldest]:
            del self._last[name]

    def window(self, window_s: float) -> list[Snapshot]:
        """The scrapes at most `window_s` older than the newest, oldest first."""
        if not self._snapshots:
            return []
        return self._since(self._snapshots[-1].t - window_s)

    def delta(self, window_s: float) -> WindowDelta | None:
        """From the oldest scrape within the window to the newest; None with fewer than 2."""
        if not self._snapshots:
            return None
        return self.delta_since(self._snapshots[-1].t - window_s)

    def delta_since(self, since: float) -> WindowDelta | None:
        """From the oldest scrape at or after `since` to the newest; None with fewer than 2."""
        inside = self._since(since)
        if len(inside) < 2:
            return None
        start = inside[0].t
        requests = errors = 0.0
        buckets: dict[str, float] = {}
        resets = 0
        seen: dict[str, bool] = {}  # replica -> counted (in order of appearance)
        for snapshot in inside:
            for name in snapshot.targets:
                seen.setdefault(name, False)
            for name, part in snapshot.steps.items():
                if part.since < start:
                    continue  # begins before the window
                seen[name] = True
                requests += part.requests
                errors += part.errors
                resets += part.resets
                for le, grown in part.buckets.items():
                    buckets[le] = buckets.get(le, 0.0) + grown
        return WindowDelta(
            start=start,
            end=inside[-1].t,
            requests=requests,
            errors=errors,
            buckets=buckets,
            resets=resets,
            targets=tuple(name for name, counted in seen.items() if counted),
            unbased=tuple(name for name, counted in seen.items() if not counted),
            scrapes=len(inside),
        )

    def _since(self, since: float) -> list[Snapshot]:
        return [snapshot for snapshot in self._snapshots if snapshot.t >= since]

    # --- saved as JSON, so a later run can measure against earlier scrapes ---

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshots": [
                {
                    "t": snapshot.t,
                    "targets": list(snapshot.targets),
                    "steps": {
                        name: {
                            "since": part.since,
                            "requests": part.requests,
                            "errors": part.errors,
                            "resets": part.resets,
                            "buckets": part.buckets,
                        }
                        for name, part in snapshot.steps.items()
                    },
                }
                for snapshot in self._snapshots
            ],
            "last": {
                name: {
                    "t": t,
                    "requests": [[*key, value] for key, value in target.requests.items()],
                    "buckets": [[*key, value] for key, value in target.buckets.items()],
                }
                for name, (t, target) in self._last.items()
            },
        }

    @classmethod
    def from_json(cls, data: object, *, max_age_s: float = 3600.0, max_len: int = 4096) -> History:
        """What to_json saved; raises ValueError if `data` is anything else."""
        if not isinstance(data, dict):
            raise ValueError("a history is an object with 'snapshots' and 'last'")
        snapshots, last = data.get("snapshots"), data.get("last")
        if not isinstance(snapshots, list) or not isinstance(last, dict):
            raise ValueError("a history is an object with 'snapshots' and 'last'")
        history = cls(max_age_s=max_age_s, max_len=max_len)
        loaded = [_snapshot_from_json(item) for item in snapshots]
        if any(b.t < a.t for a, b in pairwise(loaded)):
            raise ValueError("saved scrapes are out of order")
        history._snapshots.extend(loaded)
        for name, saved in last.items():
            if not isinstance(saved, dict) or not _is_count(saved.get("t")):
                raise ValueError(f"bad last scrape of {name!r}")
            history._last[name] = (
                float(saved["t"]),
                TargetSample(
                    target=name,
                    requests=_series_from_json(saved.get("requests")),
                    buckets=_series_from_json(saved.get("buckets")),
                ),
            )
        return history


def _snapshot_from_json(data: object) -> Snapshot:
    if not isinstance(data, dict) or not _is_count(data.get("t")):
        raise ValueError("a scrape is an object with a time 't'")
    targets, steps = data.get("targets"), data.get("steps")
    if not isinstance(targets, list) or not all(isinstance(name, str) for name in targets):
        raise ValueError("a scrape's 'targets' must be a list of names")
    if not isinstance(steps, dict):
        raise ValueError("a scrape's 'steps' must be an object")
    return Snapshot(
        t=float(data["t"]),
        targets=tuple(targets),
        steps={str(name): _step_from_json(part) for name, part in steps.items()},
    )


def _step_from_json(data: object) -> Step:
    if not isinstance(data, dict):
        raise ValueError("a step must be an object")
    fields = [data.get(name) for name in ("since", "requests", "errors", "resets")]
    numbers = [float(value) for value in fields if _is_count(value)]
    buckets = data.get("buckets")
    if len(numbers) != len(fields) or not isinstance(buckets, dict):
        raise ValueError(f"bad step {data!r}")
    if not all(isinstance(le, str) and _is_count(v) for le, v in buckets.items()):
        raise ValueError(f"bad step buckets {buckets!r}")
    since, requests, errors, resets = numbers
    return Step(
        since=since,
        requests=requests,
        errors=errors,
        buckets={le: float(v) for le, v in buckets.items()},
        resets=int(resets),
    )


def _series_from_json(rows: object) -> dict[SeriesKey, float]:
    if not isinstance(rows, list):
        raise ValueError("series must be a list of [route, method, code|le, extra, value]")
    out: dict[SeriesKey, float] = {}
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 5
            or not all(isinstance(part, str) for part in row[:4])
            or not _is_count(row[4])
        ):
            raise ValueError(f"bad series row {row!r}")
        out[(row[0], row[1], row[2], row[3])] = float(row[4])
    return out


def _is_count(value: object) -> TypeGuard[float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
