"""Property-based fuzzing of the manifest loader, of the command line, and of the
evidence -> statistics -> policy input -> decision path.

The only outcomes allowed are a valid object or a clean SwiftDeployError; anything
else (a traceback) fails. CI runs FUZZ_EXAMPLES examples per property (default 300; 100
for the decision path, whose examples are slow); `bench/fuzz.py` runs more (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from bench.support.hostile_metrics import TYPE_LINE, fill
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swiftdeploy.cli import run
from swiftdeploy.errors import ExitCode, MetricsProviderError, SwiftDeployError
from swiftdeploy.manifest import Policy, Thresholds, load_manifest
from swiftdeploy.metrics.exposition import MAX_SERIES, ExpositionParser
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.policy.base import CANARY, canonical_json
from swiftdeploy.state.evidence import Counts, Evidence, StepLedger
from tests.support.inputs import counts, ledger, policy_input

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
POLICIES = Path(__file__).resolve().parents[2] / "policies"

GOOD: dict[str, Any] = {
    "apiVersion": "swiftdeploy/v1",
    "service": {
        "name": "demo",
        "command": ["swiftdeploy-demo", "--port", "{port}", "--version", "{version}"],
        "version": "v1",
    },
    "traffic": {"listen": "127.0.0.1:8080"},
    "strategy": {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["{port}", "../..", "a;b", "X-C\nH: v", "{x}", "10s", "manual", "100"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
paths = st.lists(
    st.sampled_from(
        ["apiVersion", "service", "name", "command", "version", "replicas", "env", "health",
         "traffic", "listen", "canary_header", "sticky_cookie", "track_header", "strategy",
         "canary", "steps",
         "weight", "pause", "analysis", "policy", "thresholds", "metrics", "provider", "audit",
         "path", "max_error_rate", 0, 1]
    ),
    min_size=1,
    max_size=4,
)  # fmt: skip


def _mutate(document: Any, path: list[Any], value: Any) -> Any:
    """`document` with the value at `path` replaced (the path is created as needed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict) and isinstance(head, str):
        return {**document, head: _mutate(document.get(head), rest, value)}
    if isinstance(document, list) and isinstance(head, int) and head < len(document):
        copy = list(document)
        copy[head] = _mutate(copy[head], rest, value)
        return copy
    return {str(head): _mutate(None, rest, value)}


def _load(text: str) -> None:
    """Loads, or fails with one clean line and exit code 2; anything else propagates."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "swiftdeploy.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        failure: SwiftDeployError | None = None
        try:
            load_manifest(path)
        except SwiftDeployError as exc:
            failure = exc
    if failure is not None:
        assert failure.exit_code == 2
        assert "\n" not in failure.one_line().strip(), failure.one_line()


@FUZZ
@given(paths, values)
def test_mutated_manifests_load_or_fail_cleanly(path: list[Any], value: Any) -> None:
    try:
        text = yaml.safe_dump(_mutate(GOOD, path, value), allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError, ValueError):
        return
    _load(text)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_loads_or_fails_cleanly(text: str) -> None:
    _load(text.encode("utf-8", "replace").decode("utf-8"))


ENGINE = EmbeddedEngine(POLICIES)


@st.composite
def track_counts(draw: st.DrawFn) -> Counts:
    requests = draw(st.integers(min_value=0, max_value=10**7))
    errors = draw(st.integers(min_value=0, max_value=requests))
    slow = draw(st.integers(min_value=0, max_value=requests))
    return (
        counts(requests, errors, slow)
        if draw(st.booleans())
        else Counts(requests=requests, errors=errors)
    )


@st.composite
def ledgers(draw: st.DrawFn) -> Evidence:
    earlier = tuple(
        StepLedger(
            index=index,
            weight=draw(st.integers(min_value=1, max_value=99)),
            started_at=0.0,
            canary=draw(track_counts()),
            stable=draw(track_counts()),
            observed_s=draw(st.floats(min_value=0, max_value=1e6)),
            passed=draw(st.sampled_from([{}, {"errors": "power"}, {"latency": "hand"}])),
        )
        for index in range(draw(st.integers(min_value=0, max_value=2)))
    )
    current = ledger(
        draw(track_counts()),
        draw(track_counts()),
        weight=draw(st.integers(min_value=0, max_value=100)),
        elapsed_s=draw(st.floats(min_value=0, max_value=1e6)),
        earlier=earlier,
    )
    bound = draw(st.one_of(st.none(), st.floats(min_value=1e-4, max_value=100)))
    return current.model_copy(update={"latency_bound_s": bound})


# 100 examples in CI, not 300: each assesses a whole ledger (scipy's incomplete beta on
# counts up to 10^7, 0.15 s an example); bench/fuzz.py asks for more with FUZZ_EXAMPLES.
@settings(FUZZ, max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")))
@given(
    evidence=ledgers(),
    healthy=st.booleans(),
    elapsed=st.floats(min_value=0, max_value=1e6),
    alpha=st.floats(min_value=1e-6, max_value=0.5),
    beta=st.floats(min_value=0.001, max_value=0.5),
    max_error_rate=st.floats(min_value=1e-6, max_value=0.999),
    provider_error=st.booleans(),
)
def test_policy_inputs_always_build_and_decide(
    evidence: Evidence,
    healthy: bool,
    elapsed: float,
    alpha: float,
    beta: float,
    max_error_rate: float,
    provider_error: bool,
) -> None:
    policy = Policy(alpha=alpha, beta=beta, thresholds=Thresholds(max_error_rate=max_error_rate))
    statuses = {"canary": "provider_error"} if provider_error else {}
    document = policy_input(
        evidence, policy=policy, elapsed_s=elapsed, healthy=healthy, statuses=statuses
    )
    canonical_json(document)
    decision = ENGINE.decide(CANARY, document)
    assert not decision.failed, decision
    assert decision.verdict in ("promote", "hold", "rollback")
    assert decision.allow == (decision.verdict == "promote")
    if not healthy:
        assert decision.verdict == "rollback"
    if provider_error:
        assert decision.verdict != "promote"


COMMANDS = ["init", "validate", "schema", "deploy", "status", "chaos", "metrics", "teardown",
            "canary", "weight", "promote", "rollout", "resume", "abort", "rollback", "audit",
            "policy", "verify", "explain", "export", "report", "checkpoint", "test", "check",
            "ask", "--help", "--version"]  # fmt: skip
OPTIONS = ["-f", "--window", "--weight", "--track", "--error-rate", "--latency", "--json",
           "--force", "--reason", "--all", "--plan", "--anchor", "--format", "--output",
           "--listen", "--dir", "--", "-"]  # fmt: skip
TOKENS = st.one_of(
    st.sampled_from(COMMANDS + OPTIONS),
    st.sampled_from(["v2", "[/x]", "a/b", "v\n2", "0", "100", "150", "-1", "nan", "1e999",
                     "5s", "%n", "{port}", "\x00", "canary", "stable", "swiftdeploy.yaml"]),
    st.text(max_size=12),
)  # fmt: skip


@FUZZ
@given(st.lists(TOKENS, min_size=1, max_size=6))
def test_any_command_line_exits_with_a_documented_code_and_no_crash(argv: list[str]) -> None:
    # Paths stay inside the example's directory (init writes where it is told), and
    # completion installation would edit the user's shell profile.
    assume(not any(t.startswith("/") or ".." in t or "completion" in t for t in argv))
    with tempfile.TemporaryDirectory(prefix="sd-") as tmp:
        here, tempdir = os.getcwd(), tempfile.tempdir
        os.chdir(tmp)
        tempfile.tempdir = tmp  # where a crash log would go
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()) as err,
            ):
                code = run(argv)
        finally:
            os.chdir(here)
            tempfile.tempdir = tempdir
        crash_logs = list(Path(tmp).glob("swiftdeploy-crash-*"))
    assert code in set(ExitCode), (argv, code)
    assert "internal error" not in err.getvalue(), (argv, err.getvalue())
    assert not crash_logs, crash_logs


# --- /metrics bodies from the canary (issue 22) -------------------------------------

SCRAPE_DEADLINE_S = 2.0  # ScrapeProvider's default timeout_s
FAMILIES = (
    "http_requests_total", "http_request_duration_seconds_bucket",
    "http_request_duration_seconds_count", "http_requests_created", "other_total",
)  # fmt: skip
label_text = st.text(alphabet='ax/\\"n{},= \t', max_size=40)


@st.composite
def exposition_lines(draw: st.DrawFn) -> str:
    """One sample line of any family, its labels and value anything near valid; `{i}`
    in the route makes each copy of it a series of its own."""
    labels = draw(st.lists(st.tuples(st.sampled_from(["method", "code", "le", "x"]), label_text),
                           max_size=3))  # fmt: skip
    pad = draw(st.integers(min_value=0, max_value=5000))
    route = draw(st.sampled_from(["/{i}", "/", "/{i}" + "x" * pad, '/{i}\\"' * (pad // 2)]))
    pairs = ",".join(f'{name}="{value}"' for name, value in [*labels, ("route", route)])
    value = draw(st.sampled_from(["1", "0", "1e3", "NaN", "-1", "x", "1 1700000000", "+Inf"]))
    line = f"{draw(st.sampled_from(FAMILIES))}{{{pairs}}} {value}"
    return draw(st.sampled_from([line, "  " + line, line + "\r", "# HELP " + line, line[:-3]]))


@FUZZ
@given(st.one_of(st.text(max_size=400), st.lists(exposition_lines(), max_size=20).map("\n".join)))
def test_any_metrics_body_is_read_or_refused_cleanly(text: str) -> None:
    # Anything but a sample or a MetricsProviderError (a look's provider error) fails
    with contextlib.suppress(MetricsProviderError):
        ExpositionParser().parse(TYPE_LINE + text, "t", deadline=time.monotonic() + 60)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 20))
@given(exposition_lines())
def test_a_hostile_metrics_body_at_the_size_limit_is_bounded(line: str) -> None:
    # Given a canary that repeats one line (a new series each time) up to the size limit
    body = fill(lambda i: line.replace("{i}", str(i)) + "\n")
    # When a scrape parses it with its deadline
    started = time.monotonic()
    try:
        sample = ExpositionParser().parse(body, "t", deadline=started + SCRAPE_DEADLINE_S)
    except MetricsProviderError:
        pass
    else:  # Then what it reads is within the caps
        assert len(sample.requests) + len(sample.buckets) <= MAX_SERIES
    # And it ends by the deadline (the parser looks at the clock every 1,024 lines, 32 of ours)
    assert time.monotonic() - started < SCRAPE_DEADLINE_S + 1.0
