"""Differential test: OPA over REST and embedded regopy must give identical decisions.

Inputs are generated around every threshold of the shipped policies (equal, just
above, just below, far away), with tracks in every status, every statistics verdict
and way of passing, elapsed times around min and max duration, and fields deleted or
mistyped. The whole
decision is compared: allow, verdict, and every reason's rule, message, observed and
threshold.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swiftdeploy.policy import CANARY, INFRASTRUCTURE, EmbeddedEngine, OpaEngine

# By default the same 1,000 inputs per package on every run (no flaky CI). For a
# deeper, random search: SWIFTDEPLOY_DIFFERENTIAL_EXAMPLES=20000 pytest -k differential
_DEEP = os.environ.get("SWIFTDEPLOY_DIFFERENTIAL_EXAMPLES")
DIFFERENTIAL = settings(
    max_examples=int(_DEEP) if _DEEP else 1000,
    deadline=None,
    derandomize=not _DEEP,
    database=None,  # no replays of old failures: a run is what the code does now
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Draw = Callable[[st.SearchStrategy[Any]], Any]
TIMINGS: dict[str, list[float]] = {"embedded": [], "opa": []}


def around(draw: Draw, center: float, low: float = 0.0, high: float = 1e6) -> float:
    """A value on, just beside, or anywhere around a threshold."""
    offsets = [0.0, 1e-9, -1e-9, 1e-6, -1e-6, 1e-3, -1e-3, 0.1, -0.1, 1.0, -1.0]
    return draw(
        st.one_of(
            st.sampled_from([max(low, center + center * o) for o in offsets]),
            st.sampled_from([max(low, center + o) for o in offsets]),
            st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False),
        )
    )


def count_around(draw: Draw, center: int) -> int:
    return draw(
        st.one_of(
            st.sampled_from([max(0, center + o) for o in (-1, 0, 1)]),
            st.integers(min_value=0, max_value=100_000),
        )
    )


def track(draw: Draw, thresholds: dict[str, Any]) -> dict[str, Any]:
    status = draw(st.sampled_from(["ok", "ok", "ok", "ok", "no_data", "provider_error"]))
    numbers = status == "ok" or draw(st.booleans())
    return {
        "status": status,
        "detail": draw(
            st.sampled_from(["", "connection refused", "window is empty"]) | st.text(max_size=30)
        ),
        "requests": draw(st.integers(0, 100_000)) if numbers else None,
        "errors": draw(st.integers(0, 5000)) if numbers else None,
        "error_rate": around(draw, thresholds["max_error_rate"], high=1.0) if numbers else None,
        "p50_ms": draw(st.floats(0, 500)) if numbers else None,
        "p90_ms": draw(st.floats(0, 2000)) if numbers else None,
        "p99_ms": around(draw, thresholds["max_p99_ms"], high=60_000) if numbers else None,
        "healthy": draw(st.sampled_from([True, True, True, False])),
    }


def counted(draw: Draw) -> dict[str, Any]:
    return {
        "canary_n": draw(st.integers(0, 100_000)),
        "canary_events": draw(st.integers(0, 100_000)),
    }


def comparison(draw: Draw, alpha: float, beta: float) -> dict[str, Any]:
    verdict = draw(st.sampled_from(["harm", "pass", "pass", "continue", "continue"]))
    planned = draw(st.booleans())
    remaining = draw(st.integers(0, 50_000)) if planned else None
    rate = draw(st.sampled_from([None, 0.5, 5.0]) | st.floats(0.01, 5000))
    return {
        "kind": "compare",
        "verdict": verdict,
        "passed_by": draw(st.sampled_from(["power", "no_harm", "earlier_step", "hand"]))
        if verdict == "pass"
        else None,
        "e_value": around(draw, 1 / alpha, high=1e9),
        "weight": draw(st.sampled_from([0.6, 0.2])),
        "e_value_no_harm": around(draw, 1 / beta, high=1e9),
        "no_harm_threshold": 1 / beta,
        "needed": remaining + 100 if remaining is not None else None,
        "remaining": remaining,
        "eta_s": remaining / rate if remaining is not None and rate else None,
        "canary_rps": rate,
        **counted(draw),
        "stable_n": draw(st.integers(0, 100_000)),
        "stable_events": draw(st.integers(0, 100_000)),
        "note": draw(st.sampled_from(["", "no stable traffic to compare with yet"])),
        "regression": draw(st.sampled_from(["+1 point", "x2", "+100 ms at p99"])),
        "slow_above_ms": draw(st.sampled_from([None, 150, 200.5])),
    }


def limit(draw: Draw, alpha: float) -> dict[str, Any]:
    return {
        "kind": "limit",
        "verdict": draw(st.sampled_from(["harm", "continue", "continue"])),
        "e_value": around(draw, 1 / alpha, high=1e9),
        "weight": 0.1,
        **counted(draw),
        "limit": draw(st.sampled_from([0.01, 0.05])),
        "slow_above_ms": draw(st.sampled_from([None, 500, 750.5])),
    }


def thresholds(draw: Draw) -> dict[str, Any]:
    return {
        "max_error_rate": draw(st.sampled_from([0.001, 0.01, 0.05]) | st.floats(1e-4, 0.99)),
        "max_p99_ms": draw(st.sampled_from([100, 250.5, 500]) | st.floats(1, 10_000)),
        "min_disk_free_gb": draw(st.sampled_from([0, 1.0, 5]) | st.floats(0, 1000)),
        "max_load_per_core": draw(st.sampled_from([1, 4.0]) | st.floats(0.01, 100)),
        "min_mem_available_pct": draw(st.sampled_from([5.0, 10]) | st.floats(0, 100)),
    }


def damaged(draw: Draw, document: dict[str, Any]) -> dict[str, Any]:
    """Sometimes delete a field or give it a wrong type, to exercise the contract rules."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        parent = document
        while True:
            key = draw(st.sampled_from(sorted(parent)))
            child = parent[key]
            if not isinstance(child, dict) or not child or draw(st.booleans()):
                break
            parent = child
        if draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(st.sampled_from(["412", None, True, [1], {"a": 1}, -1, 0.5]))
        if not parent:
            break
    return document


@st.composite
def canary_inputs(draw: Draw) -> dict[str, Any]:
    limits = thresholds(draw)
    alpha = draw(st.sampled_from([0.01, 0.05, 0.001]) | st.floats(1e-4, 0.5))
    beta = draw(st.sampled_from([0.1, 0.2]) | st.floats(0.001, 0.5))
    min_duration = draw(st.sampled_from([0, 10, 30.5]))
    max_duration = min_duration + draw(st.sampled_from([0, 50]))
    elapsed = draw(
        st.sampled_from([min_duration, max_duration])
        | st.floats(0, 200)
        | st.sampled_from([min_duration - 0.1, max_duration + 0.1, max_duration - 1e-6])
    )
    combined = around(draw, 1 / alpha, high=1e9)
    document = {
        "thresholds": limits,
        "alpha": alpha,
        "beta": beta,
        "detect": {"errors": "+1 point", "latency_ms": 100},
        "step": {
            "index": draw(st.integers(0, 5)),
            "weight": draw(st.integers(1, 99)),
            "elapsed_s": max(0.0, elapsed),
            "min_duration_s": min_duration,
            "max_duration_s": max_duration,
        },
        "canary": track(draw, limits),
        "stable": track(draw, limits),
        "statistics": {
            "harm": {
                "e_value": combined,
                "threshold": 1 / alpha,
                "verdict": "harm" if combined >= 1 / alpha else "none",
            },
            "errors": comparison(draw, alpha, beta),
            "latency": comparison(draw, alpha, beta),
            "error_rate": limit(draw, alpha),
            "p99": limit(draw, alpha),
        },
    }
    return damaged(draw, document)


@st.composite
def infra_inputs(draw: Draw) -> dict[str, Any]:
    limits = thresholds(draw)
    document = {
        "action": draw(st.sampled_from(["deploy", "canary"])),
        "thresholds": limits,
        "host": {
            "disk_free_gb": around(draw, limits["min_disk_free_gb"], high=10_000),
            "load_per_core": around(draw, limits["max_load_per_core"], high=200),
            "mem_available_pct": around(draw, limits["min_mem_available_pct"], high=100),
            "cpu_count": draw(st.integers(1, 256)),
            "state_dir": draw(st.sampled_from(["/srv/app/.swiftdeploy"]) | st.text(max_size=40)),
        },
    }
    return damaged(draw, document)


def both(package: str, document: dict[str, Any], embedded: EmbeddedEngine, opa: OpaEngine) -> None:
    started = time.perf_counter()
    mine = embedded.decide(package, document)
    TIMINGS["embedded"].append(time.perf_counter() - started)
    started = time.perf_counter()
    theirs = opa.decide(package, document)
    TIMINGS["opa"].append(time.perf_counter() - started)
    assert not mine.failed, mine
    assert not theirs.failed, theirs
    assert mine.outcome() == theirs.outcome()
    assert mine.allow == (mine.verdict == "promote")


@pytest.mark.slow
@DIFFERENTIAL
@given(document=canary_inputs())
def test_canary_decisions_are_identical(
    document: dict[str, Any], embedded_engine: EmbeddedEngine, opa_engine: OpaEngine
) -> None:
    both(CANARY, document, embedded_engine, opa_engine)


@pytest.mark.slow
@DIFFERENTIAL
@given(document=infra_inputs())
def test_infrastructure_decisions_are_identical(
    document: dict[str, Any], embedded_engine: EmbeddedEngine, opa_engine: OpaEngine
) -> None:
    both(INFRASTRUCTURE, document, embedded_engine, opa_engine)


def test_report_differential_timings() -> None:
    """Not a check: prints what the differential tests cost per engine (-s to see)."""
    for name, seconds in TIMINGS.items():
        if seconds:
            ordered = sorted(seconds)
            median_ms = ordered[len(ordered) // 2] * 1000
            print(
                f"{name}: {len(ordered)} decisions, median {median_ms:.2f} ms,"
                f" total {sum(ordered):.1f} s"
            )
