"""Measurement: three outcomes kept apart, and numbers only when they mean something."""

from __future__ import annotations

import json

import httpx
import pydantic
import pytest

from swiftdeploy.metrics.base import Measurement, MetricsProvider, quantile_key, summarize
from swiftdeploy.metrics.scrape import ScrapeProvider

BUCKETS = {"0.01": 80.0, "0.05": 95.0, "0.1": 99.0, "10.0": 100.0, "+Inf": 100.0}


def window(**overrides: object) -> Measurement:
    arguments: dict[str, object] = {
        "track": "canary",
        "provider": "test",
        "window_start": 1000.0,
        "window_end": 1020.0,
        "requests": 100.0,
        "errors": 3.0,
        "buckets": BUCKETS,
        "min_requests": 50,
        "evidence": ["http://127.0.0.1:1/metrics"],
    }
    arguments.update(overrides)
    return summarize(**arguments)  # type: ignore[arg-type]


def test_ok_has_rates_and_quantiles_in_ms() -> None:
    m = window()
    assert m.status == "ok"
    assert m.ok
    assert (m.requests, m.errors, m.error_rate) == (100, 3, 0.03)
    assert m.elapsed_s == 20.0
    assert m.rps == 5.0
    assert m.quantiles is not None
    assert set(m.quantiles) == {"p50", "p90", "p99"}
    assert m.quantiles["p50"] == pytest.approx(10 * 50 / 80)
    assert m.quantiles["p99"] == pytest.approx(100.0)
    assert m.latency_ms(0.99) == m.quantiles["p99"]
    assert m.buckets["+Inf"] == 100
    assert m.evidence == ("http://127.0.0.1:1/metrics",)


def test_rps_uses_the_real_elapsed_time() -> None:
    assert window(window_end=1004.0).rps == 25.0


def test_no_requests_is_no_data_not_a_pass() -> None:
    m = window(requests=0, errors=0, buckets={}, min_requests=0)
    assert m.status == "no_data"
    assert m.error_rate is None
    assert m.quantiles is None
    assert "0 requests in 20 s" in m.detail


def test_too_few_requests_is_no_data_with_the_counts_for_the_record() -> None:
    m = window(requests=12, errors=12)
    assert m.status == "no_data"
    assert (m.requests, m.errors) == (12, 12)
    assert m.error_rate is None  # 100% errors on 12 requests is still not evidence
    assert m.quantiles is None
    assert "fewer than min_requests=50" in m.detail


def test_requests_without_latency_observations_have_undefined_quantiles() -> None:
    m = window(buckets={})
    assert m.status == "ok"
    assert m.quantiles == {"p50": None, "p90": None, "p99": None}
    assert m.latency_ms(0.99) is None
    assert "no latency histogram observations" in m.detail


def test_a_window_without_duration_is_no_data() -> None:
    m = window(window_end=1000.0)
    assert m.status == "no_data"
    assert "no duration" in m.detail
    backwards = window(window_end=990.0)
    assert backwards.status == "no_data"
    assert backwards.window_start is None
    assert backwards.elapsed_s == 0


def test_custom_quantiles() -> None:
    m = window(quantiles=[0.999, 0.75])
    assert m.quantiles is not None
    assert set(m.quantiles) == {"p99.9", "p75"}
    assert quantile_key(0.5) == "p50"
    assert quantile_key(0.999) == "p99.9"


def test_provider_error_and_no_data_constructors() -> None:
    down = Measurement.provider_error("stable", "scrape", "refused", ["http://x"])
    assert (down.status, down.detail, down.evidence) == ("provider_error", "refused", ("http://x",))
    assert down.error_rate is None
    empty = Measurement.no_data("stable", "scrape", "no replicas")
    assert empty.status == "no_data"


def test_frozen_and_validated() -> None:
    m = window()
    with pytest.raises(pydantic.ValidationError):
        m.requests = 5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="errors cannot exceed"):
        Measurement(track="t", provider="p", status="no_data", requests=1, errors=2)
    with pytest.raises(pydantic.ValidationError, match="ok measurement needs"):
        Measurement(track="t", provider="p", status="ok")
    with pytest.raises(pydantic.ValidationError):
        Measurement(track="t", provider="p", status="maybe")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        Measurement(track="t", provider="p", status="no_data", rps=float("nan"))


def test_serializes_to_plain_json() -> None:
    data = json.loads(window().model_dump_json())
    assert data["status"] == "ok"
    assert data["quantiles"]["p99"] == pytest.approx(100.0)
    assert Measurement.model_validate(data) == window()


def test_the_scrape_provider_is_a_metrics_provider() -> None:
    with httpx.Client() as client:
        provider = ScrapeProvider(lambda track: [], client)
        assert isinstance(provider, MetricsProvider)
        assert provider.name == "scrape"
