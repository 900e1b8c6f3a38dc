"""What an HTTP client of the public listener can and cannot do: it never sees the
service's private paths, and neither the override header nor a forged sticky cookie
lets it skew the canary's analysis or pick its own track."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Project, new_project, teardown

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pinned() -> Iterator[Project]:
    """v1 deployed with a sticky cookie, v2 as a canary at 50%."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    project = new_project(root)
    project.edit_manifest("# sticky_cookie: sd_track", "sticky_cookie: sd_track")
    try:
        project.cli("deploy")
        project.cli("canary", "v2", "--weight", "50")
        yield project
    finally:
        teardown(project)
        shutil.rmtree(root, ignore_errors=True)


def _counted(project: Project, track: str) -> tuple[int, int]:
    """(requests in the analysis counts, requests forced by the header) for a track."""
    text = project.admin_get(f"/metrics/{track}").text
    counted = sum(int(v) for v in re.findall(r"^http_requests_total\{.*\} (\d+)$", text, re.M))
    forced = re.search(r"^swiftdeploy_forced_requests_total (\d+)$", text, re.M)
    assert forced is not None, text
    return counted, int(forced.group(1))


@pytest.mark.parametrize(
    "path", ["/metrics", "/metrics/", "/metrics/x", "/%6Detrics", "//metrics", "/chaos"]
)
def test_private_paths_are_not_served_publicly(pinned: Project, path: str) -> None:
    # Given the service serves /metrics on its own port
    replica = pinned.state()["replicas"][0]
    assert httpx.get(f"http://127.0.0.1:{replica['port']}/metrics").status_code == 200
    # When a client asks the public listener for it, however spelled
    response = httpx.get(pinned.url + path)
    # Then nginx answers 404 without reaching the service
    assert response.status_code == 404
    assert "x-app-version" not in response.headers


def test_forced_requests_are_served_but_not_counted(pinned: Project) -> None:
    # Given the canary's counts so far
    counted_before, forced_before = _counted(pinned, "canary")
    # When an outside client forces 50 requests onto the canary
    with httpx.Client(timeout=5.0) as client:
        versions = {
            client.get(pinned.url + "/", headers={"X-Canary": "always"}).headers["x-app-version"]
            for _ in range(50)
        }
    # Then it was served by the canary, but the analysis counts did not move
    assert versions == {"v2"}
    counted_after, forced_after = _counted(pinned, "canary")
    assert counted_after == counted_before
    assert forced_after == forced_before + 50
    # And ordinary requests are still counted
    with httpx.Client(timeout=5.0) as client:
        for _ in range(20):
            client.get(pinned.url + "/")
    stable_and_canary = _counted(pinned, "canary")[0] + _counted(pinned, "stable")[0]
    assert stable_and_canary >= counted_after + 20


def test_a_signed_pin_holds_and_a_forged_one_is_ignored(pinned: Project) -> None:
    # Given a client that got a signed pin on its first request
    with httpx.Client(timeout=5.0) as client:
        first = client.get(pinned.url + "/")
        cookie = first.cookies["sd_track"]
        track, _, signature = cookie.partition(".")
        assert track in ("stable", "canary")
        assert signature
        # Then every later request with it goes to the same version
        again = {client.get(pinned.url + "/").headers["x-app-version"] for _ in range(30)}
        assert again == {first.headers["x-app-version"]}
    # When other clients forge a canary pin (bare, or with a made-up signature)
    for forged in ("canary", "canary.AAAAAAAAAAAAAAAAAAAAAAAAAAA", f"canary.{signature}x"):
        versions = []
        for _ in range(40):
            response = httpx.get(pinned.url + "/", cookies={"sd_track": forged})
            versions.append(response.headers["x-app-version"])
            # Then each gets a fresh, signed assignment instead
            assert response.cookies["sd_track"] != forged
        # And the split, not the cookie, decides: about half go to the canary, not all
        assert 10 <= versions.count("v2") <= 30, (forged, versions.count("v2"))
