"""The charts' time axis: round durations, labelled as format_duration writes them."""

from __future__ import annotations

import pytest

from swiftdeploy.review.charts import Chart, Series, render, time_ticks


@pytest.mark.parametrize(
    ("high", "ticks"),
    [
        (13.0, [0, 5, 10, 15]),  # not 2.5 s steps, which would read 2 s, 5 s, 8 s
        (100.0, [0, 30, 60, 90, 120]),
        (1000.0, [0, 300, 600, 900, 1200]),
        (0.0, [0, 1]),
    ],
)
def test_time_ticks_are_round_durations_up_to_the_highest(high: float, ticks: list[int]) -> None:
    assert time_ticks(high) == [float(t) for t in ticks]


def test_a_chart_labels_its_time_axis_and_points_in_durations() -> None:
    # Given a series over 100 s
    chart = Chart("c", "canary", "ms", "{:g} ms".format, [Series("canary", "#000", [(100.0, 5)])])
    # When it is drawn
    svg = render(chart)
    # Then its axis reads 1 min 30 s, its point "at 1 min 40 s"
    assert ">1 min 30 s</text>" in svg
    assert "canary: 5 ms at 1 min 40 s</title>" in svg
