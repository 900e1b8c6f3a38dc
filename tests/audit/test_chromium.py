"""The HTML report as a person sees it: rendered by headless Chromium (Debian's
`chromium` package), from a file:// URL with networking off."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.report import write_report

from .conftest import ROLLED_BACK

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
    assert "canary error rate 5.2% &gt; 1.0% (stable 0.3%; 412 requests)" in page
    assert "sequential test on errors: e = 812 &gt;= 100 (alpha = 0.01)" in page
    assert "rolled back" in page
