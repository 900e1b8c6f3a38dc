"""The OPA engine over REST: a real server, and fail-closed answers when it is not."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError, PolicyEngineError
from swiftdeploy.policy import CANARY, INFRASTRUCTURE, OpaEngine, OpaServer, opa_server_argv
from swiftdeploy.policy.opa import opa_check
from swiftdeploy.ports import free_port

Build = Callable[..., dict[str, Any]]


def mock_engine(handler: Callable[[httpx.Request], httpx.Response]) -> OpaEngine:
    return OpaEngine("http://127.0.0.1:8181", transport=httpx.MockTransport(handler))


# --- argv and URL -------------------------------------------------------------------


def test_server_argv(tmp_path: Path) -> None:
    argv = opa_server_argv(tmp_path, 8181, opa_binary="/x/opa")
    assert argv[:5] == ["/x/opa", "run", "--server", "--addr", "127.0.0.1:8181"]
    assert "--disable-telemetry" in argv
    assert argv[argv.index("--set") + 1] == "decision_logs.console=true"
    assert argv[argv.index("--ignore") + 1] == "*_test.rego"
    assert argv[-1] == str(tmp_path.resolve())
    assert "--set" not in opa_server_argv(tmp_path, 8181, decision_logs=False)


def test_server_argv_directory_can_never_be_a_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert opa_server_argv(Path("--help"), 8181)[-1] == str(tmp_path / "--help")


@pytest.mark.parametrize("port", [0, 65536])
def test_server_argv_refuses_bad_ports(tmp_path: Path, port: int) -> None:
    with pytest.raises(BadInputError):
        opa_server_argv(tmp_path, port)


@pytest.mark.parametrize("url", ["127.0.0.1:8181", "ftp://127.0.0.1", "http://", "not a url"])
def test_bad_urls_are_bad_input(url: str) -> None:
    with pytest.raises(BadInputError):
        OpaEngine(url)


# --- engine failures ----------------------------------------------------------------------


def test_nothing_listening_is_unreachable(canary_input: Build, infra_input: Build) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", timeout=1.0)
    canary = engine.decide(CANARY, canary_input())
    infra = engine.decide(INFRASTRUCTURE, infra_input())
    engine.close()
    assert (canary.allow, canary.verdict) == (False, "hold")
    assert (infra.allow, infra.verdict) == (False, "rollback")
    for decision in (canary, infra):
        assert decision.reasons[0].rule == "engine_unreachable"
        assert decision.reasons[0].message.startswith("policy engine unreachable")


def test_stopped_server_is_unreachable(
    opa_binary: str, canary_input: Build, tmp_path: Path
) -> None:
    server = OpaServer(Path(__file__).resolve().parents[2] / "policies", opa_binary=opa_binary)
    engine = OpaEngine(server.start())
    try:
        assert engine.decide(CANARY, canary_input()).allow is True
        server.stop()
        decision = engine.decide(CANARY, canary_input())
    finally:
        server.stop()
        engine.close()
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == "engine_unreachable"
    assert "policy engine unreachable" in decision.reasons[0].message


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_no_answer_within_the_timeout_is_unreachable(
    silent_server: str, infra_input: Build
) -> None:
    engine = OpaEngine(silent_server, timeout=0.2)
    decision = engine.decide(INFRASTRUCTURE, infra_input())
    engine.close()
    assert (decision.allow, decision.verdict) == (False, "rollback")
    assert decision.reasons[0].rule == "engine_unreachable"
    assert f"did not answer within {format_duration(0.2)}" in decision.reasons[0].message
    assert decision.elapsed_ms >= 150


def test_proxy_settings_are_ignored(
    opa_server: OpaServer, canary_input: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    engine = OpaEngine(opa_server.url)
    assert engine.decide(CANARY, canary_input()).allow is True
    engine.close()


def test_undefined_result_when_package_is_missing(opa_engine: OpaEngine) -> None:
    decision = opa_engine.decide("swiftdeploy.nothing", {})
    assert (decision.allow, decision.verdict) == (False, "rollback")
    assert decision.reasons[0].rule == "undefined_result"
    assert decision.decision_id is not None


def test_malformed_result_from_a_real_server(opa_binary: str, tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text('package swiftdeploy.canary\n\ndecision := {"allow": true}\n')
    with OpaServer(tmp_path, opa_binary=opa_binary) as url:
        engine = OpaEngine(url)
        decision = engine.decide(CANARY, {})
        engine.close()
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == "malformed_result"
    assert "missing verdict, reasons" in decision.reasons[0].message


@pytest.mark.parametrize(
    ("response", "rule", "words"),
    [
        (httpx.Response(200, text="<html>proxy</html>"), "malformed_result", "not a JSON object"),
        (httpx.Response(200, json=[1]), "malformed_result", "not a JSON object"),
        (httpx.Response(200, json={"result": "yes"}), "malformed_result", "got str"),
        (
            httpx.Response(500, json={"code": "internal_error", "message": "eval_conflict_error"}),
            "engine_error",
            "HTTP 500 internal_error: eval_conflict_error",
        ),
        (
            httpx.Response(400, json={"code": "rego_compile_error", "message": "x.rego:3: bad"}),
            "compile_error",
            "x.rego:3: bad",
        ),
        (httpx.Response(404, text="not found"), "engine_error", "HTTP 404"),
    ],
)
def test_bad_answers_fail_closed(response: httpx.Response, rule: str, words: str) -> None:
    engine = mock_engine(lambda request: response)
    decision = engine.decide(CANARY, {})
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == rule
    assert words in decision.reasons[0].message


def test_request_shape_and_decision_id() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        result = {"allow": True, "verdict": "promote", "reasons": []}
        return httpx.Response(200, json={"result": result, "decision_id": "d-1"})

    engine = mock_engine(answer)
    decision = engine.decide(INFRASTRUCTURE, {"action": "deploy", "x": 0.1 + 0.2})
    assert (decision.allow, decision.decision_id, decision.engine) == (True, "d-1", "opa")
    [request] = seen
    assert request.method == "POST"
    assert request.url.path == "/v1/data/swiftdeploy/infrastructure/decision"
    assert json.loads(request.content) == {"input": {"action": "deploy", "x": 0.3}}


def test_invalid_input_is_not_sent(canary_input: Build) -> None:
    engine = mock_engine(lambda request: pytest.fail("nothing should be sent"))
    decision = engine.decide(CANARY, canary_input({"canary": {"p99_ms": float("nan")}}))
    assert (decision.allow, decision.reasons[0].rule) == (False, "invalid_input")


# --- compile problems ------------------------------------------------------------------------


def test_compile_error_is_reported_by_check_and_stops_the_server(
    opa_binary: str, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.rego"
    bad.write_text('package swiftdeploy.canary\n\ndecision := {\n  "a":\n')
    engine = OpaEngine("http://127.0.0.1:8181", directory=tmp_path, opa_binary=opa_binary)
    problems = engine.check()
    engine.close()
    assert problems
    assert problems[0].startswith(f"{bad}:5: ")
    with pytest.raises(PolicyEngineError, match=r"OPA exited while starting.*broken\.rego"):
        OpaServer(tmp_path, opa_binary=opa_binary).start()


def test_check_reports_a_missing_directory(opa_binary: str, tmp_path: Path) -> None:
    problems = opa_check(tmp_path / "nope", opa_binary=opa_binary)
    assert len(problems) == 1
    assert "no such file or directory" in problems[0]


def test_check_without_the_opa_binary(tmp_path: Path) -> None:
    with pytest.raises(PolicyEngineError, match="not found"):
        opa_check(tmp_path, opa_binary=str(tmp_path / "no-opa"))


def test_server_without_the_opa_binary(tmp_path: Path) -> None:
    with pytest.raises(PolicyEngineError, match="cannot run"):
        OpaServer(tmp_path, opa_binary=str(tmp_path / "no-opa")).start()
