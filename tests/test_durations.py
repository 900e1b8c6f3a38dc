"""Durations for people: seconds, then minutes, then hours, to the precision that matters."""

from __future__ import annotations

import math

import pytest

from swiftdeploy.durations import format_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.4, "0 s"),
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
