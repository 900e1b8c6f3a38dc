"""Durations read in every written form (compounds such as 1m30s too), and shown for
people: seconds, then minutes, then hours, to the precision that matters."""

from __future__ import annotations

import math
import re

import pytest

from swiftdeploy.durations import DURATION_PATTERN, format_ago, format_duration, parse_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.4, "400 ms"),
        (0.0004, "1 ms"),
        (0.6, "1 s"),
        (0, "0 s"),
        (34, "34 s"),
        (59.6, "1 min"),
        (100, "1 min 40 s"),
        (599.4, "9 min 59 s"),
        (725, "12 min"),
        (3900, "1 h 5 min"),
        (7200, "2 h"),
        (72_000, "20 h"),
        (-3, "0 s"),
    ],
)
def test_a_duration_reads_as_a_person_would_say_it(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_an_endless_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        format_duration(math.inf)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("1m30s", 90.0),
        ("1h2m", 3720.0),
        ("1h2m3s500ms", 3723.5),
        ("1m 30s", 90.0),
        ("2m", 120.0),
        ("500ms", 0.5),
        ("10 s", 10.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_a_duration_is_read_in_every_form_people_write(written: object, seconds: float) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["", "ms", "1s1m", "1m1m", "5 m s", "1x", "-1s", "1h-2m", True])
def test_a_malformed_duration_is_refused_with_the_forms(written: object) -> None:
    with pytest.raises(ValueError, match="1m30s"):
        parse_duration(written)


@pytest.mark.parametrize("written", ["1m30s", "1h2m3s500ms", "10 s", "45", "500ms", "1.5h"])
def test_the_schema_pattern_accepts_what_the_parser_accepts(written: str) -> None:
    assert re.search(DURATION_PATTERN, written)


@pytest.mark.parametrize("written", ["", "ms", "1s1m", "soon", "-1s"])
def test_the_schema_pattern_refuses_what_the_parser_refuses(written: str) -> None:
    assert not re.search(DURATION_PATTERN, written)


def test_ago_reads_like_a_duration() -> None:
    assert format_ago(1000.0, now=1100.0) == "1 min 40 s ago"
    assert format_ago(1100.0, now=1000.0) == "0 s ago"
