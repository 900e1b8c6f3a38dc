"""Reading exposition text: the hand-written parser and prometheus_client's agree."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from bench.support.hostile_metrics import SHAPES, TYPE_LINE, Shape, fill
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from swiftdeploy.demo.app import build_app
from swiftdeploy.errors import MetricsProviderError
from swiftdeploy.metrics.exposition import (
    MAX_LINE_CHARS,
    MAX_SERIES,
    ExpositionParser,
    TargetSample,
    canonical_le,
    parse_exposition,
    parse_exposition_with_prometheus_client,
    sample_of,
)
from tests.metrics.conftest import Render, render_exposition

Parser = Callable[..., TargetSample]
PARSERS = [
    pytest.param(parse_exposition, id="hand-written"),
    pytest.param(parse_exposition_with_prometheus_client, id="prometheus_client"),
]


@pytest.mark.parametrize("parse", PARSERS)
def test_reads_requests_errors_and_buckets(parse: Parser, render: Render) -> None:
    text = render(
        {("GET", "/", "200"): 90, ("GET", "/", "503"): 7, ("POST", "/items", "404"): 3},
        {("GET", "/"): [0.004, 0.02, 0.02, 12.0]},
    )
    sample = parse(text, "http://a/metrics")
    assert sample.target == "http://a/metrics"
    assert sample.total_requests == 100
    assert sample.total_errors == 7  # 404 is the client's fault, not an error
    assert sample.requests[("/", "GET", "503", "")] == 7
    totals = sample.bucket_totals()
    assert totals["0.005"] == 1
    assert totals["0.025"] == 3
    assert totals["10.0"] == 3
    assert totals["+Inf"] == 4
    assert len(totals) == 20


@pytest.mark.parametrize("parse", PARSERS)
def test_a_fresh_service_has_families_but_no_series(parse: Parser, render: Render) -> None:
    sample = parse(render(), "t")
    assert sample.requests == {}
    assert sample.buckets == {}


@pytest.mark.parametrize("parse", PARSERS)
def test_route_filter(parse: Parser, render: Render) -> None:
    text = render(
        {("GET", "/", "200"): 5, ("GET", "/admin", "500"): 9},
        {("GET", "/"): [0.01], ("GET", "/admin"): [1.0]},
    )
    sample = parse(text, "t", routes=frozenset({"/"}))
    assert sample.total_requests == 5
    assert sample.total_errors == 0
    assert sample.bucket_totals()["+Inf"] == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("", id="empty"),
        pytest.param("<html><body>502 Bad Gateway</body></html>", id="html"),
        pytest.param('{"status": "ok"}', id="json"),
        pytest.param("Hello world\n", id="plain-text"),
        pytest.param("# just a comment\n", id="comment-only"),
        pytest.param("process_cpu_seconds_total 1.5\n", id="another-service"),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200" 5\n',
            id="unclosed-labels",
        ),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} five\n',
            id="bad-value",
        ),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200"}\n',
            id="no-value",
        ),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} -3\n',
            id="negative-counter",
        ),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200"} NaN\n',
            id="nan-counter",
        ),
        pytest.param(
            "# TYPE http_request_duration_seconds histogram\n"
            'http_request_duration_seconds_bucket{le="soon"} 1\n',
            id="bad-le",
        ),
        pytest.param(
            '# TYPE http_requests_total counter\nhttp_requests_total{code="200",code="500"} 1\n',
            id="duplicate-label",
        ),
    ],
)
@pytest.mark.parametrize("parse", PARSERS)
def test_garbage_is_a_provider_error(parse: Parser, body: str) -> None:
    with pytest.raises(MetricsProviderError, match=r"^http://a/metrics: "):
        parse(body, "http://a/metrics")


def test_garbage_message_names_the_line() -> None:
    text = render_exposition({("GET", "/", "200"): 1}) + "<oops>\n"
    with pytest.raises(MetricsProviderError, match=r"line \d+: not a sample line: '<oops>'"):
        parse_exposition(text, "t")


@pytest.mark.parametrize("parse", PARSERS)
def test_timestamps_tabs_and_odd_label_values(parse: Parser) -> None:
    text = (
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="GET",route="/a b/{id}",code="200"} 3 1700000000000\n'
        'http_requests_total{route="/q\\"uote\\\\",method="GET",code="500"}\t2\n'
        '  http_requests_total{method="GET",route="/x,y=z}",code="200",} 4  \n'
        'http_requests_total{method="GET",route="/",code="200",shard="2"} 5\n'
        'http_requests_total{method="GET",route="/",code="200",shard="3"} 6\n'
    )
    sample = parse(text, "t")
    assert sample.requests == {
        ("/a b/{id}", "GET", "200", ""): 3,
        ('/q"uote\\', "GET", "500", ""): 2,
        ("/x,y=z}", "GET", "200", ""): 4,
        ("/", "GET", "200", "shard='2'"): 5,
        ("/", "GET", "200", "shard='3'"): 6,
    }


def test_memo_is_not_fooled_by_timestamps_or_other_values() -> None:
    parser = ExpositionParser()
    plain = '# TYPE http_requests_total counter\nhttp_requests_total{code="500"} 3\n'
    stamped = '# TYPE http_requests_total counter\nhttp_requests_total{code="500"} 3 1700000000\n'
    for _ in range(2):
        assert parser.parse(plain, "t").total_errors == 3
        assert parser.parse(stamped, "t").total_errors == 3
        assert parser.parse(plain.replace(" 3", " 8"), "t").total_errors == 8
    with pytest.raises(MetricsProviderError):
        parser.parse(plain.replace(" 3", " x"), "t")


def test_memo_is_bounded() -> None:
    parser = ExpositionParser(memo_size=10)
    for i in range(30):
        text = render_exposition({("GET", f"/r{i}", "200"): i + 1})
        assert parser.parse(text, "t").total_requests == i + 1
    assert len(parser._memo) <= 10 + 1


def test_le_spellings_are_one_bucket() -> None:
    assert canonical_le("1") == canonical_le("1.0") == canonical_le("1e0") == "1.0"
    assert canonical_le("+Inf") == canonical_le("+inf") == "+Inf"
    assert canonical_le("0.005") == "0.005"
    with pytest.raises(ValueError, match="NaN"):
        canonical_le("NaN")


def test_a_track_sums_its_replicas(render: Render) -> None:
    a = parse_exposition(
        render({("GET", "/", "200"): 10, ("GET", "/", "500"): 1}, {("GET", "/"): [0.01] * 11}),
        "a",
    )
    b = parse_exposition(
        render({("GET", "/", "200"): 20, ("GET", "/", "502"): 2}, {("GET", "/"): [0.3] * 22}),
        "b",
    )
    sample = sample_of(12.5, [a, b])
    assert sample.t == 12.5
    assert set(sample.targets) == {"a", "b"}
    assert sample.requests == 33
    assert sample.errors == 3
    buckets = sample.buckets()
    assert buckets["0.01"] == 11
    assert buckets["0.25"] == 11
    assert buckets["0.3"] == 33
    assert buckets["+Inf"] == 33


# --- the two parsers agree on whatever prometheus_client writes ---

LABEL_TEXT = st.text(alphabet=st.sampled_from(list('abz/{}=,"\\\n -_.é')), min_size=0, max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    requests=st.dictionaries(
        st.tuples(st.sampled_from(["GET", "POST"]), LABEL_TEXT, st.sampled_from(["200", "503"])),
        st.integers(min_value=0, max_value=10**9) | st.floats(0, 1e12),
        max_size=6,
    ),
    observations=st.dictionaries(
        st.tuples(st.sampled_from(["GET", "POST"]), LABEL_TEXT),
        st.lists(st.floats(0, 20), max_size=5),
        max_size=4,
    ),
)
def test_parsers_agree(
    requests: dict[tuple[str, str, str], float],
    observations: dict[tuple[str, str], list[float]],
) -> None:
    text = render_exposition(requests, observations)
    ours = parse_exposition(text, "t")
    theirs = parse_exposition_with_prometheus_client(text, "t")
    assert ours == theirs
    assert ExpositionParser().parse(text, "t") == ours
    assert ours.total_requests == pytest.approx(sum(requests.values()))


def test_contract_with_the_demo_service() -> None:
    """The demo service's /metrics reads as this module expects (names, labels, buckets)."""
    client = TestClient(build_app("v1", chaos_token=None))
    assert parse_exposition(client.get("/metrics").text, "demo").total_requests == 0
    for _ in range(5):
        client.get("/")
    client.get("/healthz")
    client.get("/no/such/page")
    sample = parse_exposition(client.get("/metrics").text, "demo")
    assert sample.total_requests == 6
    assert sample.total_errors == 0
    assert sample.requests[("/", "GET", "200", "")] == 5
    assert sample.bucket_totals()["+Inf"] == 6
    assert len(sample.bucket_totals()) == 20
    assert parse_exposition_with_prometheus_client(client.get("/metrics").text, "demo") == sample


# --- a hostile /metrics (issue 22) ---------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.name)
def test_a_hostile_body_at_the_size_limit_is_refused_or_read(shape: Shape) -> None:
    # Given a canary's /metrics built to cost a scrape seconds of CPU, at the size limit
    body = shape.body()
    parser = ExpositionParser()
    # When it is parsed, Then it is read (if a real service could send it) or refused
    # in one line, never parsed series by series to the end
    if shape.accepted:
        assert parser.parse(body, "t").requests is not None
    else:
        with pytest.raises(MetricsProviderError, match=r"^t: .*(over|too large)") as refused:
            parser.parse(body, "t")
        assert "\n" not in refused.value.one_line()
    # And the memo keeps at most the capped series of one body, their heads short
    assert len(parser._memo) <= MAX_SERIES + 1  # the one over the cap
    assert sum(map(len, parser._memo)) <= (MAX_SERIES + 1) * 256


def test_the_caps_are_generous_for_a_real_service(render: Render) -> None:
    # Given a service with 300 routes (6,300 series of ours) and 100,000 other lines
    requests = {("GET", f"/r{i}", "200"): i + 1 for i in range(300)}
    text = render(requests, {("GET", f"/r{i}"): [0.02] for i in range(300)})
    text += "".join(f'other_total{{i="{i}"}} 1\n' for i in range(100_000))
    # When it is parsed, Then every series is read
    sample = ExpositionParser().parse(text, "t", deadline=time.monotonic() + 60)
    assert len(sample.requests) == 300
    assert sample.total_requests == sum(requests.values())


def test_the_deadline_bounds_the_parse() -> None:
    # Given a body of a few thousand lines and a deadline already passed
    text = render_exposition({("GET", f"/r{i}", "200"): 1 for i in range(3000)})
    # When it is parsed, Then it is refused at the next look at the clock
    with pytest.raises(MetricsProviderError, match=r"deadline \(parsing line [\d,]+\)"):
        ExpositionParser().parse(text, "t", deadline=time.monotonic() - 1)
    # And without one (or with time left) it is read
    assert ExpositionParser().parse(text, "t", deadline=time.monotonic() + 60).total_requests


def _labels_to_the_cap(i: int) -> str:
    """A distinct line of our family: 4 KiB of labels whose values are escapes, about a
    millisecond of parsing each."""
    pairs = [f'a{j}="\\\\"' for j in range(MAX_LINE_CHARS // 10)]
    line = f'http_requests_total{{route="/{i}"'
    while pairs and len(line) + len(pairs[0]) + 8 <= MAX_LINE_CHARS:
        line += "," + pairs.pop(0)
    return line + "} 1\n"


def test_the_clock_is_read_often_on_costly_lines() -> None:
    # Given 16 MiB of our family's costliest lines (1,024 of them took the parser about
    # 1.2 s, past the scrape's deadline by that much before it looked at the clock)
    body = fill(_labels_to_the_cap)
    assert body.count("\n") > 4000
    # When the deadline has passed, Then the parse stops within a few dozen of them
    with pytest.raises(MetricsProviderError, match=r"deadline \(parsing line") as late:
        ExpositionParser().parse(body, "t", deadline=time.monotonic() - 1)
    line = re.search(r"parsing line ([\d,]+)", str(late.value))
    assert line is not None
    assert int(line.group(1).replace(",", "")) <= 64, late.value


def test_the_caps_count_lines_and_series_not_bytes() -> None:
    line = 'http_requests_total{{method="GET",route="/{}",code="200"}} 1\n'
    parser = ExpositionParser(max_lines=10, max_series=5)
    five = TYPE_LINE + "".join(line.format(i) for i in range(5))
    assert len(parser.parse(five, "t").requests) == 5
    assert len(parser.parse(five.removesuffix("\n"), "t").requests) == 5  # no last newline
    with pytest.raises(MetricsProviderError, match="over 5 series"):
        parser.parse(five + line.format(5), "t")
    with pytest.raises(MetricsProviderError, match="11 lines, over the 10 read"):
        parser.parse(five + "a 1\n" * 5, "t")
    # a line of our family longer than the cap is garbage; another family's is skipped
    long_value = "x" * MAX_LINE_CHARS
    with pytest.raises(MetricsProviderError, match=f"line 2: over {MAX_LINE_CHARS} char"):
        ExpositionParser().parse(TYPE_LINE + line.format(long_value), "t")
    other = f'other_total{{v="{long_value}"}} 1\n'
    assert ExpositionParser().parse(TYPE_LINE + other, "t").requests == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "/", "n", '\\"', "\\\\", "\\n", "\\a", "\\"]), max_size=12))
def test_escapes_read_as_prometheus_client_reads_them(pieces: list[str]) -> None:
    route = "".join(pieces)
    text = f'{TYPE_LINE}http_requests_total{{method="GET",route="{route}",code="200"}} 1\n'
    try:
        reference = parse_exposition_with_prometheus_client(text, "t")
    except MetricsProviderError:
        return  # a value prometheus_client cannot read (a lone backslash before the quote)
    assert parse_exposition(text, "t") == reference
