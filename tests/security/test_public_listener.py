"""What an HTTP client of the public listener can and cannot do: it never sees the
service's private paths; neither the override header nor a sticky cookie (forged,
replayed, expired or another rollout's) lets it skew the canary's analysis or pick its
own track; and no response tells it which track served it unless the manifest asks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.support.project import Project, new_project, teardown

from tests.conftest import version_counts

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
    # And ordinary requests (new clients, no pin) are still counted
    for _ in range(20):
        httpx.get(pinned.url + "/", timeout=5.0)
    stable_and_canary = _counted(pinned, "canary")[0] + _counted(pinned, "stable")[0]
    assert stable_and_canary >= counted_after + 20


def _pinned_or_none(project: Project, track: str) -> int | None:
    """Requests a sticky pin sent to a track (kept out of the analysis counts)."""
    text = project.admin_get(f"/metrics/{track}").text
    found = re.search(r"^swiftdeploy_pinned_requests_total (\d+)$", text, re.M)
    return None if found is None else int(found.group(1))


def _pinned(project: Project, track: str) -> int:
    count = _pinned_or_none(project, track)
    assert count is not None, "no swiftdeploy_pinned_requests_total"
    return count


def _all_counted(project: Project) -> int:
    return _counted(project, "stable")[0] + _counted(project, "canary")[0]


def _first_visit(project: Project) -> tuple[str, str]:
    """A new client's first request: (the pin it was given, the version that served it)."""
    response = httpx.get(project.url + "/", timeout=5.0)
    return response.cookies["sd_track"], response.headers["x-app-version"]


def _canary_pin(project: Project) -> str:
    """A pin the split gave to the canary (about every second new client gets one)."""
    for _ in range(50):
        pin, version = _first_visit(project)
        if version == "v2":
            return pin
    raise AssertionError("no new client was sent to the canary in 50")


def _sign(project: Project, track: str, nonce: str, rollout: str, expiry: int) -> str:
    """A pin as the router signs one, made with the project's own key (which only the
    project's owner can read): to show which valid signatures are still refused."""
    key = (project.state_dir / "nginx" / "cookie.key").read_text().strip().encode()
    text = f"{track}|{nonce}|{rollout}|{expiry}".encode()
    tag = base64.urlsafe_b64encode(hmac.new(key, text, hashlib.sha1).digest()).rstrip(b"=")
    return f"{nonce}.{expiry}.{tag.decode()}"


def test_a_signed_pin_holds_and_a_forged_one_is_ignored(pinned: Project) -> None:
    # Given a client that got a signed pin on its first request
    with httpx.Client(timeout=5.0) as client:
        first = client.get(pinned.url + "/")
        cookie = first.cookies["sd_track"]
        nonce, expiry, tag = cookie.split(".")
        # (the value does not say which track it pins)
        assert "stable" not in cookie
        assert "canary" not in cookie
        # Then every later request with it goes to the same version
        again = {client.get(pinned.url + "/").headers["x-app-version"] for _ in range(30)}
        assert again == {first.headers["x-app-version"]}
    # When other clients forge a pin (the old form, a made-up tag, a tag changed)
    for forged in ("canary", "canary.AAAAAAAAAAAAAAAAAAAAAAAAAAA", f"{nonce}.{expiry}.{tag}x"):
        versions = []
        for _ in range(40):
            response = httpx.get(pinned.url + "/", cookies={"sd_track": forged})
            versions.append(response.headers["x-app-version"])
            # Then each gets a fresh, signed assignment instead
            assert response.cookies["sd_track"] != forged
        # And the split, not the cookie, decides: about half go to the canary, not all
        assert 10 <= versions.count("v2") <= 30, (forged, versions.count("v2"))


def test_a_replayed_pin_does_not_move_the_counts(pinned: Project) -> None:
    # Given a client the split sent to the canary, and the canary's counts so far
    pin = _canary_pin(pinned)
    counted_before = _counted(pinned, "canary")[0]
    pinned_before = _pinned_or_none(pinned, "canary")
    # When it replays its pin 100 times
    with httpx.Client(timeout=5.0, cookies={"sd_track": pin}) as client:
        versions = {client.get(pinned.url + "/").headers["x-app-version"] for _ in range(100)}
    # Then it stayed on the canary (a returning client keeps its track)
    assert versions == {"v2"}
    # But the analysis counts did not move: the pin chose the track, not the split
    assert _counted(pinned, "canary")[0] == counted_before
    assert pinned_before is not None
    assert _pinned(pinned, "canary") == pinned_before + 100


def test_each_client_gets_its_own_pin(pinned: Project) -> None:
    # When 20 new clients arrive (about half of them on each track)
    visits = [_first_visit(pinned) for _ in range(20)]
    # Then no two share a pin, even on the same track: a pin is one client's
    assert len({pin for pin, _ in visits}) == 20
    assert {version for _, version in visits} == {"v1", "v2"}


@pytest.mark.parametrize("what", ["expired", "another rollout"])
def test_a_stale_pin_is_not_honoured(pinned: Project, what: str) -> None:
    # Given the rollout the router binds pins to
    rollout = pinned.admin_get("/routes").json()["routes"]["rollout"]
    assert rollout == pinned.state()["rollout_id"]
    now = int(time.time())
    # And, as a control, a canary pin of this rollout signed with the real key holds
    valid = _sign(pinned, "canary", "controlnonce0001", rollout, now + 3600)
    assert version_counts(pinned.url + "/", 20, {"Cookie": f"sd_track={valid}"}) == {"v2": 20}
    # When a client sends a correctly signed canary pin that expired or is another rollout's
    stale = {
        "expired": _sign(pinned, "canary", "stalenonce000001", rollout, now - 1),
        "another rollout": _sign(pinned, "canary", "stalenonce000002", "0123456789ab", now + 3600),
    }[what]
    counted_before = _all_counted(pinned)
    pinned_before = _pinned(pinned, "canary") + _pinned(pinned, "stable")
    versions = []
    for _ in range(40):
        response = httpx.get(pinned.url + "/", cookies={"sd_track": stale}, timeout=5.0)
        versions.append(response.headers["x-app-version"])
        # Then it gets a fresh pin instead
        assert response.cookies["sd_track"] != stale
    # And the split decided, and counted, every one of them
    assert 10 <= versions.count("v2") <= 30, versions.count("v2")
    assert _all_counted(pinned) == counted_before + 40
    assert _pinned(pinned, "canary") + _pinned(pinned, "stable") == pinned_before


def test_the_track_is_not_announced_by_default(pinned: Project) -> None:
    # When a client asks, with or without a pin, or forcing a track
    for headers in ({}, {"X-Canary": "always"}, {"X-Canary": "never"}):
        response = httpx.get(pinned.url + "/", headers=headers, timeout=5.0)
        assert response.status_code == 200
        # Then no response header says which track served it
        assert not [h for h in response.headers if "track" in h.lower()], response.headers


def test_the_track_header_when_configured(project: Project) -> None:
    # Given a manifest that asks for the track in a response header
    project.edit_manifest("traffic:\n", "traffic:\n  track_header: X-Served-By-Track\n")
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "50")
    # When clients force each track
    always = httpx.get(project.url + "/", headers={"X-Canary": "always"}, timeout=5.0)
    never = httpx.get(project.url + "/", headers={"X-Canary": "never"}, timeout=5.0)
    # Then the header names the track that served each
    assert always.headers["x-served-by-track"] == "canary"
    assert never.headers["x-served-by-track"] == "stable"
