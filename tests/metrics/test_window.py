"""Windows over scrapes: Prometheus's counter-reset rule, per replica, summed after."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftdeploy.metrics.exposition import (
    Sample,
    SeriesKey,
    TargetSample,
    is_error_code,
    parse_exposition,
    sample_of,
)
from swiftdeploy.metrics.window import History, WindowDelta, increase, step
from tests.metrics.conftest import render_exposition


def replica(
    target: str, ok: float = 0, errors: float = 0, fast: float = 0, slow: float = 0
) -> TargetSample:
    """A replica that served `ok` 200s and `errors` 500s; `fast` took 10 ms, `slow` 1 s."""
    requests = {}
    if ok:
        requests[("GET", "/", "200")] = ok
    if errors:
        requests[("GET", "/", "500")] = errors
    observations = {("GET", "/"): [0.01] * int(fast) + [1.0] * int(slow)}
    return parse_exposition(render_exposition(requests, observations), target)


def scrape(t: float, *targets: TargetSample) -> Sample:
    return sample_of(t, targets)


def reference_window(samples: list[Sample]) -> tuple[float, float, dict[str, float], int]:
    """The window as the module docstring states it, walked in full: every series of
    every replica through the window's scrapes, increase() each, then sum."""
    requests = errors = 0.0
    buckets: dict[str, float] = {}
    resets = 0
    names = list(dict.fromkeys(name for sample in samples for name in sample.targets))
    for name in names:
        points = [sample.targets[name] for sample in samples if name in sample.targets]
        for family in ("requests", "buckets"):
            maps = [getattr(point, family) for point in points]
            keys: dict[SeriesKey, None] = {}
            for values in maps:
                keys.update(dict.fromkeys(values))
            for key in keys:
                values = [series.get(key, 0.0) for series in maps]
                grown = increase(values)
                resets += sum(1 for a, b in pairwise(values) if b < a)
                if family == "buckets":
                    buckets[key[2]] = buckets.get(key[2], 0.0) + grown
                else:
                    requests += grown
                    errors += grown if is_error_code(key[2]) else 0.0
    return requests, errors, buckets, resets


def window_of(*samples: Sample) -> WindowDelta:
    history = History()
    for sample in samples:
        history.append(sample)
    delta = history.delta_since(samples[0].t)
    assert delta is not None
    return delta


# --- increase(): the rule from promql/functions.go ---


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], 0),
        ([5], 0),
        ([1, 2, 3], 2),
        ([1, 2, 3, 1, 2], 4),  # the reset example: (3 - 1) + (2 - 0)
        ([100, 150, 20, 40], 90),
        ([10, 0], 0),  # restarted and served nothing yet
        ([10, 0, 0, 5], 5),
        ([7, 7, 7], 0),
    ],
)
def test_increase(values: list[float], expected: float) -> None:
    assert increase(values) == expected


@settings(deadline=None)
@given(
    start=st.integers(0, 1000),
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 1000)),
        max_size=30,
    ),
)
def test_increase_counts_every_request_across_restarts(
    start: int, steps: list[tuple[bool, int]]
) -> None:
    """A counter scraped after every step: a step serves requests, or restarts the process
    and serves fewer than the counter had (so the scrape sees it go down, as it must)."""
    values = [float(start)]
    served = 0
    for restart, amount in steps:
        current = values[-1]
        if restart and current > 0:
            after = amount % int(current)  # 0 <= after < current
            served += after
            values.append(float(after))
        else:
            served += amount
            values.append(current + amount)
    assert increase(values) == served
    assert increase(values) >= 0


# --- window_delta over replicas ---


def test_a_restart_mid_window_neither_goes_negative_nor_loses_the_window() -> None:
    samples = [
        scrape(0, replica("a", ok=100, fast=100)),
        scrape(10, replica("a", ok=150, errors=5, fast=155)),
        scrape(20, replica("a", ok=20, fast=20)),  # restarted: counters from zero
        scrape(30, replica("a", ok=40, errors=1, fast=41)),
    ]
    delta = window_of(*samples)
    assert delta.requests == (155 - 100) + 20 + 21
    assert delta.errors == 5 + 1  # the 500s of before the restart still count
    assert delta.buckets["+Inf"] == 96
    assert delta.resets > 0
    assert (delta.start, delta.end, delta.elapsed) == (0, 30, 30)


def test_resets_are_per_replica_and_summed_after() -> None:
    # a restarts (100 -> 10); b grows (0 -> 200). Summing first sees 100 -> 210, i.e. 110.
    delta = window_of(
        scrape(0, replica("a", ok=100), replica("b")),
        scrape(5, replica("a", ok=10), replica("b", ok=200)),
    )
    assert delta.requests == 10 + 200
    assert delta.targets == ("a", "b")


def test_replicas_aggregate_by_le() -> None:
    delta = window_of(
        scrape(0, replica("a", ok=10, fast=10), replica("b", ok=5, slow=5)),
        scrape(5, replica("a", ok=30, fast=30), replica("b", ok=10, errors=2, slow=12)),
    )
    assert delta.requests == 20 + 7
    assert delta.errors == 2
    assert delta.buckets["0.01"] == 20
    assert delta.buckets["0.75"] == 20
    assert delta.buckets["1.0"] == 27
    assert delta.buckets["+Inf"] == 27


def test_a_series_first_seen_in_the_window_counts_from_zero() -> None:
    delta = window_of(scrape(0, replica("a", ok=50)), scrape(5, replica("a", ok=60, errors=3)))
    assert delta.errors == 3
    assert delta.requests == 13


def test_a_replica_seen_once_has_no_baseline() -> None:
    delta = window_of(
        scrape(0, replica("a", ok=50)),
        scrape(5, replica("a", ok=60), replica("new", ok=1000)),
    )
    assert delta.requests == 10
    assert delta.targets == ("a",)
    assert delta.unbased == ("new",)


def test_a_missed_scrape_of_one_replica_is_skipped_not_zero() -> None:
    delta = window_of(
        scrape(0, replica("a", ok=50), replica("b", ok=10)),
        scrape(5, replica("a", ok=60)),  # b did not answer this time
        scrape(10, replica("a", ok=70), replica("b", ok=30)),
    )
    assert delta.requests == 20 + 20
    assert delta.resets == 0


def test_a_window_needs_two_scrapes() -> None:
    history = History()
    history.append(scrape(0, replica("a", ok=1)))
    assert history.delta_since(0) is None


# --- History ---


def test_errors_before_the_window_no_longer_count() -> None:
    history = History()
    history.append(scrape(0, replica("a", ok=10)))
    history.append(scrape(10, replica("a", ok=20, errors=50)))  # an incident
    history.append(scrape(20, replica("a", ok=120, errors=50)))
    history.append(scrape(30, replica("a", ok=220, errors=50)))
    recent = history.delta(15)
    assert recent is not None
    assert (recent.start, recent.end) == (20, 30)
    assert (recent.requests, recent.errors) == (100, 0)
    wide = history.delta(30)
    assert wide is not None
    assert (wide.requests, wide.errors) == (260, 50)


def test_the_window_starts_at_the_oldest_scrape_within_it() -> None:
    history = History()
    for t in (0.0, 2.1, 4.2, 6.3):
        history.append(scrape(t, replica("a", ok=t * 10)))
    assert [s.t for s in history.window(4.5)] == [2.1, 4.2, 6.3]
    assert [s.t for s in history.window(4.2)] == [2.1, 4.2, 6.3]
    delta = history.delta(4.5)
    assert delta is not None
    assert delta.elapsed == pytest.approx(4.2)
    assert delta.scrapes == 3


def test_one_scrape_is_no_window() -> None:
    history = History()
    assert history.delta(30) is None
    history.append(scrape(0, replica("a", ok=1)))
    assert history.delta(30) is None
    history.append(scrape(100, replica("a", ok=2)))
    assert history.delta(30) is None  # the earlier one is outside the window


def test_old_scrapes_are_dropped_and_a_clock_step_back_starts_over() -> None:
    history = History(max_age_s=60)
    for t in (0, 30, 60, 90):
        history.append(scrape(t, replica("a")))
    assert [s.t for s in history.snapshots] == [30, 60, 90]
    history.append(scrape(45, replica("a", ok=1000)))
    assert [s.t for s in history.snapshots] == [45]
    history.append(scrape(50, replica("a", ok=1001)))
    delta = history.delta(60)
    assert delta is not None
    assert delta.requests == 1
    capped = History(max_len=3)
    for t in range(10):
        capped.append(scrape(t, replica("a")))
    assert len(capped) == 3


def test_a_replica_gone_longer_than_max_age_is_forgotten() -> None:
    history = History(max_age_s=60)
    history.append(scrape(0, replica("a", ok=5), replica("old", ok=5)))
    history.append(scrape(100, replica("a", ok=6)))
    history.append(scrape(110, replica("a", ok=7), replica("old", ok=50)))
    delta = history.delta(60)
    assert delta is not None
    assert delta.requests == 1
    assert delta.unbased == ("old",)


def test_history_round_trips_through_json() -> None:
    history = History()
    history.append(scrape(1.5, replica("a", ok=3, errors=1, fast=4), replica("b", slow=2)))
    history.append(scrape(3.0, replica("a", ok=5, errors=1, fast=6)))
    again = History.from_json(json.loads(json.dumps(history.to_json())))
    assert again.snapshots == history.snapshots
    later = scrape(4.0, replica("a", ok=6, errors=2, fast=8), replica("b", slow=5))
    history.append(later)
    again.append(later)
    assert again.delta(10) == history.delta(10)
    assert again.to_json() == history.to_json()


GOOD_LAST = {"t": 1, "requests": [["/", "GET", "200", "", 1]], "buckets": []}
GOOD_STEP = {"since": 0, "requests": 1, "errors": 0, "resets": 0, "buckets": {"+Inf": 1}}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"snapshots": []},
        {"snapshots": {}, "last": {}},
        {"snapshots": [{"t": "1", "targets": [], "steps": {}}], "last": {}},
        {"snapshots": [{"t": -1, "targets": [], "steps": {}}], "last": {}},
        {"snapshots": [{"t": float("inf"), "targets": [], "steps": {}}], "last": {}},
        {"snapshots": [{"t": 1, "targets": [1], "steps": {}}], "last": {}},
        {"snapshots": [{"t": 1, "targets": [], "steps": []}], "last": {}},
        {
            "snapshots": [{"t": 1, "targets": ["a"], "steps": {"a": {**GOOD_STEP, "errors": -1}}}],
            "last": {},
        },
        {
            "snapshots": [{"t": 1, "targets": [], "steps": {"a": {**GOOD_STEP, "buckets": []}}}],
            "last": {},
        },
        {
            "snapshots": [
                {"t": 2, "targets": [], "steps": {}},
                {"t": 1, "targets": [], "steps": {}},
            ],
            "last": {},
        },
        {"snapshots": [], "last": {"a": {**GOOD_LAST, "t": None}}},
        {"snapshots": [], "last": {"a": {**GOOD_LAST, "requests": [["/", "GET", "200", ""]]}}},
        {"snapshots": [], "last": {"a": {**GOOD_LAST, "requests": [["/", "GET", 2, "", 1]]}}},
        {"snapshots": [], "last": {"a": {**GOOD_LAST, "buckets": [[1, 2, 3, 4, True]]}}},
        {"snapshots": [], "last": {"a": {**GOOD_LAST, "buckets": None}}},
    ],
)
def test_bad_saved_histories_are_refused(data: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        History.from_json(data)


def test_a_good_saved_history_loads() -> None:
    data = {
        "snapshots": [{"t": 1, "targets": ["a"], "steps": {"a": GOOD_STEP}}],
        "last": {"a": GOOD_LAST},
    }
    assert len(History.from_json(data)) == 1


# --- the incremental History equals the full walk, whatever happens ---

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["serve", "serve", "serve", "restart", "miss"]),
        st.integers(0, 50),
        st.sampled_from(["200", "500", "503"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(deadline=None)
@given(events=EVENTS, gaps=st.lists(st.sampled_from([0.0, 1.0, 2.5]), min_size=40, max_size=40))
def test_history_equals_the_reference_walk(
    events: list[tuple[str, str, int, str]], gaps: list[float]
) -> None:
    counters: dict[str, dict[tuple[str, str, str], float]] = {}
    latencies: dict[str, list[float]] = {}
    samples: list[Sample] = []
    history = History()
    t = 0.0
    for (name, action, amount, code), gap in zip(events, gaps, strict=False):
        t += gap
        series = counters.setdefault(name, {})
        if action == "restart":
            series.clear()
            latencies[name] = []
        if action in ("serve", "restart"):
            key = ("GET", "/", code)
            series[key] = series.get(key, 0) + amount
            latencies.setdefault(name, []).extend([0.02 * (amount % 7)] * amount)
        missing = {name} if action == "miss" else set()
        sample = sample_of(
            t,
            [
                parse_exposition(
                    render_exposition(dict(counters[n]), {("GET", "/"): latencies.get(n, [])}),
                    n,
                )
                for n in counters
                if n not in missing
            ],
        )
        samples.append(sample)
        history.append(sample)
    for window_s in (0.0, 1.0, 3.0, 10.0, 1000.0):
        delta = history.delta(window_s)
        inside = [s for s in samples if s.t >= samples[-1].t - window_s]
        if len(inside) < 2:
            assert delta is None
            continue
        assert delta is not None
        requests, errors, buckets, resets = reference_window(inside)
        assert (delta.requests, delta.errors, delta.resets) == (requests, errors, resets)
        assert delta.buckets == {le: v for le, v in buckets.items() if le in delta.buckets}
        assert all(v == 0 for le, v in buckets.items() if le not in delta.buckets)
        assert (delta.start, delta.end, delta.scrapes) == (inside[0].t, inside[-1].t, len(inside))


def test_step_counts_a_series_gone_with_a_restart_as_a_reset() -> None:
    before = replica("a", ok=10, errors=2)
    after = replica("a", ok=3)
    part = step(before, after, since=0)
    # the 200s went 10 -> 3 and the 503s 2 -> gone: two resets, 3 requests since
    assert (part.requests, part.errors, part.resets) == (3, 0, 2)
