"""The HTML report as a person sees it: rendered by headless Chromium (Debian's
`chromium` package), from a file:// URL with networking off."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.review.report import write_report
from tests.support.trails import (
    BY_HAND,
    CANARY_SAYS,
    NO_DATA,
    NO_LOOK,
    NO_STEP,
    ROLLED_BACK,
    STABLE_SAYS,
)

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "Debian's chromium package is needed: apt-get install -y chromium"
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(tmp)}  # never the real home directory
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(
    synthetic: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, records = synthetic
    _, html_path = write_report(records, tmp_path / "report")
    url = html_path.resolve().as_uri()
    shot = tmp_path / "report.png"

    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert shot.is_file(), done.stderr[-2000:]
    data = shot.read_bytes()
    width, height, distinct = png_facts(data)
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000  # a blank page of this size compresses to a few kB
    assert distinct > 100

    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert page.count("<svg") >= 4
    assert f'data-chart="{ROLLED_BACK}-error-rate"' in page
    assert f'data-chart="{ROLLED_BACK}-p99"' in page
    assert 'class="decision-marker"' in page
    assert (
        f"canary errors worse than stable: {CANARY_SAYS} canary requests, stable {STABLE_SAYS}"
    ) in page
    assert f"canary error rate above 1.0% (thresholds.max_error_rate): {CANARY_SAYS}" in page
    assert "statistic: errors against stable: e = " in page
    assert "rolled back" in page


# Put in a copy of the report (the report itself has no script): the box Chromium
# laid out for every chart label, as JSON in the page, for --dump-dom to show.
MEASURE = """<script>
const boxes = [...document.querySelectorAll("svg.chart")].map(svg => ({
  chart: svg.dataset.chart,
  labels: [...svg.querySelectorAll("text[data-label]")].map(text => {
    const box = text.getBBox();
    return {kind: text.dataset.label, text: text.textContent,
            x: box.x, y: box.y, width: box.width, height: box.height};
  }),
}));
const out = document.createElement("pre");
out.id = "label-boxes";
out.textContent = JSON.stringify(boxes);
document.body.append(out);
</script>"""


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@pytest.mark.slow
def test_the_awkward_rollouts_render_without_zero_steps_empty_charts_or_piled_labels(
    awkward: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A canary promoted by hand (two steps 50 ms apart), rolled back before any look or
    any step, and looks that measured nothing, as Chromium lays the page out."""
    _, records = awkward
    _, html_path = write_report(records, tmp_path / "report")
    measured = tmp_path / "measured.html"
    measured.write_text(html_path.read_text().replace("</body>", MEASURE + "</body>"))

    dom = chromium(tmp_path, "--dump-dom", measured.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    # No 0% step that never happened: only the weights the steps had.
    assert not re.search(r"\(0(\.0+)?%( of traffic)?\)", page)
    for name in ("step 1 (10% of traffic)", "step 2 (25% of traffic)", "step 3 (50% of traffic)"):
        assert name in page
    # No empty chart: only the rollout promoted by hand has a look to plot; the others
    # say in one line why they have none.
    assert "no measurements recorded" not in page
    charts = re.findall(r'<svg [^>]*class="chart"[^>]*data-chart="([^"]+)"', page)
    assert charts == [f"{BY_HAND}-error-rate", f"{BY_HAND}-p99"]
    for rollout in (NO_LOOK, NO_STEP, NO_DATA):
        section = page[page.index(f'id="rollout-{rollout}"') :]
        section = section[: section.index("</section>")]
        assert "<svg" not in section
        assert section.count('<p class="note">No charts: ') == 1
    # No label drawn over another, as laid out: the step labels 50 ms apart are stacked.
    found = re.search(r'<pre id="label-boxes">(.*?)</pre>', page, re.S)
    assert found, page[-2000:]
    boxes = json.loads(html.unescape(found.group(1)))
    assert [b["chart"] for b in boxes] == charts
    for chart in boxes:
        labels = chart["labels"]
        steps = {label["text"]: label for label in labels if label["kind"] == "step"}
        assert set(steps) == {"step 1 (10%)", "step 2 (25%)", "step 3 (50%)"}
        assert {label["kind"] for label in labels} == {"step", "threshold"}
        assert all(label["width"] > 30 for label in labels)  # laid out, not empty
        assert abs(steps["step 2 (25%)"]["x"] - steps["step 3 (50%)"]["x"]) < 30
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                assert not overlap(a, b), (chart["chart"], a, b)
