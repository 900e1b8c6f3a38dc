"""Line charts as hand-written SVG text, for the audit report.

Why not matplotlib: the report needs two kinds of simple line chart, and an SVG
written here is a few kilobytes, byte-for-byte reproducible (matplotlib's SVG
carries generated ids and a timestamp), needs no new dependency (matplotlib and its
font and image stack weigh far more than the rest of SwiftDeploy), stays sharp at any
zoom, and keeps its labels as text, so the rendered page can be searched and tested.
Every string that reaches the SVG is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from swiftdeploy.audit.vocabulary import HELD, HOLD, PROMOTE, ROLLBACK
from swiftdeploy.durations import format_duration

STABLE_COLOR = "#1f6fb4"
CANARY_COLOR = "#e8710a"
# A decision marker's colour by what was done: the engine's verdicts, a step held at
# max_duration, and a person's command through the canary gate (allowed or refused).
VERDICT_COLORS = {
    PROMOTE: "#2a9d3c",
    HOLD: "#8a8a8a",
    ROLLBACK: "#d62828",
    HELD: "#b27b00",
    "by hand": "#0b7a75",
    "refused": "#7a1020",
}
THRESHOLD_COLOR = "#b00020"
STEP_COLOR = "#6a4c93"
CHAOS_COLOR = "#c2185b"

WIDTH = 760
HEIGHT = 290
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 40, 48
# Boundary labels (10 px) are stacked in rows this far apart when they would collide.
# A character of DejaVu Sans at 10 px is about 5.5 px wide (measured in Chromium);
# reserving more keeps labels apart in any sans-serif fallback font too.
LABEL_ROW = 12
LABEL_CHAR = 6.5
LABEL_GAP = 4


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Marker:
    """A decision: a point on the chart with a tooltip, coloured by its verdict."""

    x: float
    y: float
    verdict: str
    label: str
    final: bool = False

    @property
    def color(self) -> str:
        return VERDICT_COLORS.get(self.verdict, "#444444")


@dataclass(frozen=True)
class Boundary:
    """Where a step starts (or a chaos event happens): a dashed vertical line with a label."""

    x: float
    label: str
    kind: str = "step"  # step | chaos
    detail: str = ""  # the tooltip; the label when empty

    @property
    def color(self) -> str:
        return CHAOS_COLOR if self.kind == "chaos" else STEP_COLOR


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    y_label: str
    y_format: Callable[[float], str]
    series: Sequence[Series]
    boundaries: Sequence[Boundary] = ()
    markers: Sequence[Marker] = ()
    threshold: tuple[float, str] | None = None
    x_label: str = "time since the rollout started"
    notes: list[str] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return any(series.points for series in self.series)


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) up to at least `high`."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-12 * high:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


# Steps of a time axis, in seconds: whole seconds and minutes, which format_duration
# writes exactly (a 2.5 s step would be labelled 2 s, 5 s, 8 s).
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


def time_ticks(high: float, count: int = 6) -> list[float]:
    """0 and round durations (1 s, 2 s, 5 s, ..., 1 min, 2 min, ..., 6 h) up to at least
    `high` seconds."""
    if high <= 0 or not math.isfinite(high):
        return [0.0, 1.0]
    step = next((s for s in _TIME_STEPS if s * count >= high), None)
    if step is None:  # beyond a day and a half: whole hours
        step = math.ceil(high / count / 3600) * 3600
    return [float(step * i) for i in range(math.ceil(high / step) + 1)]


def render(chart: Chart) -> str:
    """The chart as one <svg> element (no XML prolog), ready to inline in HTML."""
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    xs = [x for s in chart.series for x, _ in s.points] + [b.x for b in chart.boundaries]
    ys = [y for s in chart.series for _, y in s.points]
    if chart.threshold:
        ys.append(chart.threshold[0])
    x_ticks = time_ticks(max(xs, default=1.0) or 1.0)
    y_ticks = nice_ticks(max(ys, default=1.0) * 1.05 or 1.0, 5)
    x_max, y_max = x_ticks[-1], y_ticks[-1]

    def px(x: float) -> float:
        return round(LEFT + plot_w * x / x_max, 2)

    def py(y: float) -> float:
        return round(TOP + plot_h * (1 - min(y, y_max) / y_max), 2)

    title = escape(chart.title)
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart"'
        f' data-chart="{escape(chart.chart_id)}"'
        f' width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="{title}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"'
        ' font-size="11">',
        f"<title>{title}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{title}</text>',
    ]
    for y in y_ticks:
        out.append(
            f'<line x1="{LEFT}" y1="{py(y)}" x2="{LEFT + plot_w}" y2="{py(y)}" stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{py(y) + 4}" text-anchor="end">'
            f"{escape(chart.y_format(y))}</text>"
        )
    for x in x_ticks:
        out.append(
            f'<text x="{px(x)}" y="{TOP + plot_h + 16}" text-anchor="middle">'
            f"{escape(format_duration(x))}</text>"
        )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle" fill="#555">'
        f"{escape(chart.x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(14 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle"'
        f' fill="#555">{escape(chart.y_label)}</text>'
    )
    # The threshold's label sits at the right end of its line; boundary labels keep
    # clear of it and of each other.
    reserved = []
    if chart.threshold:
        value, label = chart.threshold
        reserved.append(_box(LEFT + plot_w - 4, py(value) - 4, "end", label))
    placed = place_labels(chart.boundaries, px, plot_w, plot_h, reserved)
    for boundary, (label_x, label_y, anchor) in zip(chart.boundaries, placed, strict=True):
        x = px(boundary.x)
        out.append(
            f'<line class="{boundary.kind}-boundary" x1="{x}" y1="{TOP}" x2="{x}"'
            f' y2="{TOP + plot_h}" stroke="{boundary.color}" stroke-dasharray="4 3">'
            f"<title>{escape(boundary.detail or boundary.label)}</title></line>"
        )
        out.append(
            f'<text class="boundary-label" data-label="{boundary.kind}" x="{label_x}"'
            f' y="{label_y}" text-anchor="{anchor}" fill="{boundary.color}" font-size="10">'
            f"{escape(boundary.label)}</text>"
        )
    if chart.threshold:
        value, label = chart.threshold
        y = py(value)
        out.append(
            f'<line class="threshold" x1="{LEFT}" y1="{y}" x2="{LEFT + plot_w}" y2="{y}"'
            f' stroke="{THRESHOLD_COLOR}" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text data-label="threshold" x="{LEFT + plot_w - 4}" y="{y - 4}"'
            f' text-anchor="end" fill="{THRESHOLD_COLOR}" font-size="10">{escape(label)}</text>'
        )
    for series in chart.series:
        if not series.points:
            continue
        points = " ".join(f"{px(x)},{py(y)}" for x, y in series.points)
        name = escape(series.name)
        out.append(
            f'<polyline class="series" data-series="{name}" points="{points}" fill="none"'
            f' stroke="{series.color}" stroke-width="2"/>'
        )
        out.extend(
            f'<circle cx="{px(x)}" cy="{py(y)}" r="2.5" fill="{series.color}">'
            f"<title>{name}: {escape(chart.y_format(y))} at {escape(format_duration(x))}"
            "</title></circle>"
            for x, y in series.points
        )
    for marker in chart.markers:
        x, y = px(marker.x), py(marker.y)
        size = 7 if marker.final else 4.5
        out.append(
            f'<path class="decision-marker" d="M{x} {y - size} L{x + size} {y} L{x} {y + size}'
            f' L{x - size} {y} Z" fill="{marker.color}" stroke="#222" stroke-width="0.8">'
            f"<title>{escape(marker.label)}</title></path>"
        )
        if marker.final:
            out.append(
                f'<text x="{x - 8}" y="{y - size - 4}" text-anchor="end" font-weight="bold"'
                f' fill="{marker.color}">{escape(marker.verdict)}</text>'
            )
    out.extend(_legend(chart, LEFT + plot_w))
    out.append("</svg>")
    return "".join(out)


# A label's extent: (left, top, right, bottom) in SVG pixels.
Box = tuple[float, float, float, float]


def label_width(label: str) -> float:
    """A generous estimate of a 10 px label's width, to keep labels apart."""
    return LABEL_CHAR * len(label)


def _box(x: float, baseline: float, anchor: str, label: str) -> Box:
    width = label_width(label)
    left = x - width if anchor == "end" else x
    # 10 px text reaches about 8 px above its baseline and 2 px below it.
    return (left, baseline - 9, left + width, baseline + 3)


def _clear(box: Box, taken: Sequence[Box]) -> bool:
    return all(
        box[2] + LABEL_GAP <= other[0]
        or other[2] + LABEL_GAP <= box[0]
        or box[3] <= other[1]
        or other[3] <= box[1]
        for other in taken
    )


def place_labels(
    boundaries: Sequence[Boundary],
    px: Callable[[float], float],
    plot_w: float,
    plot_h: float,
    reserved: Sequence[Box] = (),
) -> list[tuple[float, float, str]]:
    """(x, y, text-anchor) of each boundary's label. A label sits beside its line (on
    the left of lines right of 60% of the plot, to stay inside); step labels stack
    down from the top, chaos labels up from the bottom, each in the first row where
    it clears every label already placed and the `reserved` boxes, so that steps
    moments apart (a promotion by hand runs several in a second) stay readable."""
    rows = max(1, int((plot_h / 2 - LABEL_ROW) // LABEL_ROW) + 1)  # half the plot each
    taken: list[Box] = list(reserved)
    placed: list[tuple[float, float, str]] = [(0.0, 0.0, "start")] * len(boundaries)
    for i in sorted(range(len(boundaries)), key=lambda i: px(boundaries[i].x)):
        boundary = boundaries[i]
        x = px(boundary.x)
        label_x, anchor = (x - 3, "end") if x > LEFT + plot_w * 0.6 else (x + 3, "start")
        first, spacing = (
            (TOP + 11, LABEL_ROW) if boundary.kind == "step" else (TOP + plot_h - 6, -LABEL_ROW)
        )
        baselines = [first + row * spacing for row in range(rows)]
        boxes = [_box(label_x, y, anchor, boundary.label) for y in baselines]
        # More labels at one spot than half the plot holds: the last row takes the rest.
        row = next((r for r, box in enumerate(boxes) if _clear(box, taken)), rows - 1)
        taken.append(boxes[row])
        placed[i] = (round(label_x, 2), baselines[row], anchor)
    return placed


def _legend(chart: Chart, right: float) -> list[str]:
    entries: list[tuple[str, str, str]] = [(s.name, s.color, "line") for s in chart.series]
    verdicts = sorted({m.verdict for m in chart.markers})
    entries += [(v, VERDICT_COLORS.get(v, "#444"), "diamond") for v in verdicts]
    out = []
    x = right
    for name, color, shape in reversed(entries):
        width = 22 + 6.5 * len(name)
        x -= width
        if shape == "line":
            out.append(
                f'<line x1="{x}" y1="16" x2="{x + 14}" y2="16" stroke="{color}" stroke-width="3"/>'
            )
        else:
            out.append(
                f'<path d="M{x + 7} 11 L{x + 12} 16 L{x + 7} 21 L{x + 2} 16 Z" fill="{color}"/>'
            )
        out.append(f'<text x="{x + 18}" y="20">{escape(name)}</text>')
    return out
