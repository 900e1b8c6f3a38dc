"""The demo service in-process: metrics by route template, version header, guarded chaos."""

from __future__ import annotations

import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from swiftdeploy.demo import app as demo
from swiftdeploy.demo.app import build_app, cold_start


def _requests_by_labels(client: TestClient) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").text
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "http_requests":
            for sample in family.samples:
                if sample.name == "http_requests_total":
                    out[(sample.labels["route"], sample.labels["code"])] = sample.value
    return out


def test_counts_by_route_template_and_skips_health_and_metrics() -> None:
    client = TestClient(build_app("v7", chaos_token=None))
    for _ in range(3):
        assert client.get("/").json()["version"] == "v7"
    client.get("/healthz")
    client.get("/no/such/path/123")
    counts = _requests_by_labels(client)
    assert counts == {("/", "200"): 3.0, ("<unmatched>", "404"): 1.0}


def test_every_response_has_the_version_header() -> None:
    client = TestClient(build_app("v7", chaos_token=None))
    for path in ("/", "/healthz", "/metrics", "/missing"):
        assert client.get(path).headers["x-app-version"] == "v7"


def test_chaos_absent_without_token_and_guarded_with_one() -> None:
    assert TestClient(build_app("v1", None)).post("/chaos", json={}).status_code == 404
    client = TestClient(build_app("v1", "s3cret"))
    assert client.post("/chaos", json={"error_rate": 1}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/chaos", json={"error_rate": 1}, headers=wrong).status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert client.post("/chaos", json={"error_rate": 2}, headers=auth).status_code == 400
    assert client.post("/chaos", json={"error_rate": 1}, headers=auth).status_code == 200
    assert [client.get("/").status_code for _ in range(5)] == [500] * 5
    assert client.delete("/chaos", headers=auth).status_code == 200
    assert [client.get("/").status_code for _ in range(5)] == [200] * 5


def test_chaos_latency_is_observed_in_the_histogram() -> None:
    client = TestClient(build_app("v1", "t"))
    client.post("/chaos", json={"latency_ms": 60}, headers={"Authorization": "Bearer t"})
    client.get("/")
    text = client.get("/metrics").text
    assert 'http_request_duration_seconds_bucket{le="0.05",method="GET",route="/"} 0.0' in text
    assert 'http_request_duration_seconds_bucket{le="0.075",method="GET",route="/"} 1.0' in text


def test_a_cold_start_slows_the_first_seconds_then_ends() -> None:
    warming = cold_start("60ms/30s")
    assert warming.until is not None
    assert 29 < warming.until - time.monotonic() <= 30
    client = TestClient(build_app("v2", None, warming))
    client.get("/")
    # the first request took at least its 60 ms (how much more is the machine's load)
    text = client.get("/metrics").text
    assert 'http_request_duration_seconds_bucket{le="0.05",method="GET",route="/"} 0.0' in text
    assert 'http_request_duration_seconds_count{method="GET",route="/"} 1.0' in text
    warming.until = time.monotonic()  # as 30 s passing would
    client.get("/")
    # the first request after it ends clears the cold start: no request waits any more
    assert (warming.latency_ms, warming.until) == (0.0, None)
    assert not cold_start(None).active()
    with pytest.raises(SystemExit, match="expected LATENCYms/SECONDSs"):
        cold_start("300ms")


def test_the_port_comes_from_port_when_not_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The local runtime gives it in PORT, so it stays out of `ps`; neither is an error.
    started: dict[str, object] = {}
    monkeypatch.setattr(demo.uvicorn, "run", lambda app, **kwargs: started.update(kwargs))
    monkeypatch.setattr(sys, "argv", ["swiftdeploy-demo", "--version", "v2"])
    monkeypatch.setenv("PORT", "40123")
    demo.main()
    assert started["port"] == 40123
    monkeypatch.delenv("PORT")
    with pytest.raises(SystemExit) as exited:
        demo.main()
    assert exited.value.code == 2
