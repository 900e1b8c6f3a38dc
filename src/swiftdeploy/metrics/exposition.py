"""Prometheus text exposition -> the few series SwiftDeploy reads, per replica and per track.

From each replica's /metrics we keep two series families, one value per series:

- `http_requests_total{method,route,code}`: the request counter (5xx codes are errors);
- `http_request_duration_seconds_bucket{method,route,le}`: the latency histogram.

Values stay per series and per replica (`TargetSample`) because counter resets are
per series of one target: windows (window.py) take increases per series first and
sum them after, as `sum(increase(...))` does. `Sample` is one scrape of one track, and
also sums its replicas for an instant view.

Two parsers give the same result: `parse_exposition` / `ExpositionParser` (hand-written,
what the scrape provider uses) and `parse_exposition_with_prometheus_client` (the
reference, for tests and the bench). The hand-written one exists because
`bench/metrics_scrape.py` (20 replicas x 2,015 series, one scrape round parsed and
summed) measured a p50 of 738 ms with prometheus_client's parser against 228 ms for
ours without its memo, 50 ms on a provider's first round and 40 ms on every later one
(18x). prometheus_client builds a Sample and a label dict for every line through a
character-by-character quote scanner; ours skips other series' lines on a prefix test
and, for ours, remembers the series key of each `name{labels}` text it has seen,
which every replica and every scrape repeats. Like prometheus_client's parser ("a
laxer parser than the main Go parser") it is not a validator: lines of other series
get only a cheap sanity check (a sample line must begin with a metric name character).

A body that is not exposition text at all fails: a bad line of one of our series,
a line that cannot begin a sample, or no sign of either family (not even a `# TYPE`
line, which prometheus_client writes even before the first request) all raise
MetricsProviderError. An empty body is garbage too, for the same reason.

The canary's /metrics is untrusted, so a parse is bounded (issue 22): at most
`max_lines` lines (counted before any is split out), `max_series` lines of our two
families, `max_line_chars` characters in one of them, and a `deadline` it checks as
it goes. Past any of them the body is a provider error, never a partial count. The
review's 16 MiB of 264,000 distinct series, which the unbounded parser read in 2.7 s
(p50) and 154 MiB, now fails on its line count in 9 ms (`bench/fuzz.py --only metrics`,
BENCHMARKS.md).
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from swiftdeploy.errors import MetricsProviderError

REQUESTS = "http_requests_total"
BUCKETS = "http_request_duration_seconds_bucket"
# Names under which a TYPE or HELP line, or prometheus_client's parser, shows a family.
FAMILY_NAMES = frozenset({"http_requests", REQUESTS, "http_request_duration_seconds", BUCKETS})
_REQUEST_LABELS = ("method", "route", "code")
_BUCKET_LABELS = ("method", "route", "le")
_WANTED_SETS = {labels: frozenset(labels) for labels in (_REQUEST_LABELS, _BUCKET_LABELS)}

# (route, method, code or le, any other labels as "name='value',..." or "")
SeriesKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class TargetSample:
    """One replica's series, as read in one scrape."""

    target: str
    requests: Mapping[SeriesKey, float] = field(default_factory=dict)
    buckets: Mapping[SeriesKey, float] = field(default_factory=dict)

    @property
    def total_requests(self) -> float:
        return sum(self.requests.values())

    @property
    def total_errors(self) -> float:
        return sum(v for key, v in self.requests.items() if is_error_code(key[2]))

    def bucket_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for key, value in self.buckets.items():
            totals[key[2]] = totals.get(key[2], 0.0) + value
        return totals


@dataclass(frozen=True, slots=True)
class Sample:
    """One scrape of one track at `t` (unix seconds): every replica that answered."""

    t: float
    targets: Mapping[str, TargetSample]

    @property
    def requests(self) -> float:
        return sum(target.total_requests for target in self.targets.values())

    @property
    def errors(self) -> float:
        return sum(target.total_errors for target in self.targets.values())

    def buckets(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for target in self.targets.values():
            for le, value in target.bucket_totals().items():
                totals[le] = totals.get(le, 0.0) + value
        return totals


def is_error_code(code: str) -> bool:
    """A 5xx status: the server failed. 4xx are the client's and are not errors."""
    return code.startswith("5")


def canonical_le(le: str) -> str:
    """One spelling per bound, so replicas' buckets add up: "1" and "1.0" -> "1.0"."""
    bound = float(le)
    if math.isnan(bound):
        raise ValueError("le is NaN")
    if math.isinf(bound):
        return "+Inf" if bound > 0 else "-Inf"
    return repr(bound)


# --- the hand-written parser ------------------------------------------------------

# Generous for a real service (a few thousand series of our families, a demo replica
# has about 2,000), small enough that a hostile body at the size limit fails in ms.
MAX_LINES = 200_000
MAX_SERIES = 20_000
MAX_LINE_CHARS = 4096
# Longer `name{labels}` texts are parsed every time: the memo stays a few MiB at most.
_MEMO_HEAD_CHARS = 256
# How many lines between two looks at the clock, and how many lines of our families: one
# of those can cost a millisecond (4 KiB of labels and escapes), 1,024 of them a second.
_DEADLINE_EVERY = 1024
_DEADLINE_EVERY_SERIES = 32

_NAME_START = frozenset(string.ascii_letters + "_:")
# The value's pattern is "unrolled" (runs of plain characters, then one escape): the
# alternation (?:[^"\\]|\\.)* stepped once per character, 5x slower on long values.
_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"[ \t]*')


def parse_exposition(
    text: str, target: str, *, routes: frozenset[str] | None = None
) -> TargetSample:
    """Read one replica's /metrics body; `routes` keeps only those routes' series."""
    return ExpositionParser(routes=routes).parse(text, target)


class ExpositionParser:
    """The hand-written parser, with a memo of the series it has already read.

    Every replica exposes the same series and every scrape repeats them, so the text
    before the value (`name{labels}`) recurs; the memo maps it to its series key and
    skips the label parsing, which is most of the cost. A provider keeps one parser
    for its lifetime; the memo is cleared when it reaches `memo_size` entries.
    """

    def __init__(
        self,
        *,
        routes: frozenset[str] | None = None,
        memo_size: int = 50_000,
        max_lines: int = MAX_LINES,
        max_series: int = MAX_SERIES,
        max_line_chars: int = MAX_LINE_CHARS,
    ) -> None:
        self.routes = routes
        self.memo_size = memo_size
        self.max_lines = max_lines
        self.max_series = max_series
        self.max_line_chars = max_line_chars
        # "name{labels}" -> (is a bucket series, key); only for "name{labels} value" lines
        self._memo: dict[str, tuple[bool, SeriesKey]] = {}
        self._le: dict[str, str] = {}

    def parse(self, text: str, target: str, *, deadline: float | None = None) -> TargetSample:
        """One body; `deadline` (time.monotonic()) bounds the parse, as the read is bounded."""
        self._begin(text, target)
        requests: dict[SeriesKey, float] = {}
        buckets: dict[SeriesKey, float] = {}
        routes = self.routes
        seen = False
        series = 0
        until = math.inf if deadline is None else deadline
        # Split on "\n" only, as prometheus_client does: splitlines() would also split on
        # \r, \x1c, \u2028 ..., which the line count above does not see.
        for number, raw in enumerate(text.split("\n"), start=1):
            if not number % _DEADLINE_EVERY and time.monotonic() > until:
                raise _late(target, number)
            line = raw.strip() if raw[:1] in (" ", "\t") or raw[-1:] == "\r" else raw
            if not line:
                continue
            if line[0] == "#":
                seen = seen or _declares_family(line)
                continue
            if line[0] not in _NAME_START:
                raise _garbage(target, number, "not a sample line", raw)
            if not line.startswith("http_request"):
                continue  # a family we do not read: no more work than this test
            if len(line) > self.max_line_chars:
                raise _garbage(target, number, f"over {self.max_line_chars} characters", raw)
            try:
                parsed = self._read(line)
            except ValueError as exc:
                raise _garbage(target, number, str(exc), raw) from None
            if parsed is None:
                continue
            seen = True
            series += 1
            if series > self.max_series or not series % _DEADLINE_EVERY_SERIES:
                self._check_series(series, target, number, until)
            is_bucket, key, value = parsed
            if routes is None or key[0] in routes:
                (buckets if is_bucket else requests)[key] = value
        if not seen:
            raise _no_family(target)
        return TargetSample(target=target, requests=requests, buckets=buckets)

    def _check_series(self, series: int, target: str, number: int, until: float) -> None:
        if series > self.max_series:
            raise _over_cap(target, f"over {self.max_series:,} series of our families")
        if time.monotonic() > until:
            raise _late(target, number)

    def _begin(self, text: str, target: str) -> None:
        # Counted in C before a line object is made; a last line may lack its newline.
        lines = text.count("\n") + (not text.endswith("\n"))
        if lines > self.max_lines:
            raise _over_cap(target, f"{lines:,} lines, over the {self.max_lines:,} read")
        if len(self._memo) > self.memo_size:
            self._memo.clear()

    def _read(self, line: str) -> tuple[bool, SeriesKey, float] | None:
        """A line of one of our series; None for other http_request* series."""
        head, _, tail = line.rpartition(" ")
        known = self._memo.get(head)
        if known is None:
            return self._parse_line(line, head)
        return known[0], known[1], _checked(float(tail))

    def _parse_line(self, line: str, head: str) -> tuple[bool, SeriesKey, float] | None:
        """Parse a line of one of our series in full; None for other http_request* series."""
        brace = line.find("{")
        name = (line[:brace] if brace != -1 else line.split(None, 1)[0]).rstrip()
        if name == REQUESTS:
            is_bucket, wanted = False, _REQUEST_LABELS
        elif name == BUCKETS:
            is_bucket, wanted = True, _BUCKET_LABELS
        else:
            return None
        labels, rest = _split_labels(line, brace)
        key = _series_key(labels, wanted, self._le)
        value = _counter_value(rest)
        plain = rest == line[len(head) :] and rest[1:] and rest[1:].split() == [rest[1:]]
        if plain and len(head) <= _MEMO_HEAD_CHARS:
            self._memo[head] = (is_bucket, key)  # a plain "name{labels} value" line
        return is_bucket, key, value


def _declares_family(comment: str) -> bool:
    """A `# TYPE` or `# HELP` line of one of our families."""
    if not comment.startswith(("# TYPE ", "# HELP ")):
        return False
    parts = comment.split(None, 3)
    return len(parts) > 2 and parts[2] in FAMILY_NAMES


def _split_labels(line: str, brace: int) -> tuple[dict[str, str], str]:
    """The labels of a sample line and the text after them (value, maybe timestamp)."""
    if brace == -1:
        parts = line.split(None, 1)
        return {}, parts[1] if len(parts) > 1 else ""
    labels: dict[str, str] = {}
    pos = brace + 1
    end = len(line)
    while True:
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos < end and line[pos] == "}":
            return labels, line[pos + 1 :]
        match = _PAIR.match(line, pos)
        if match is None:
            raise ValueError("malformed labels")
        name, value = match.group(1), match.group(2)
        if name in labels:
            raise ValueError(f"duplicate label {name!r}")
        labels[name] = _unescape(value) if "\\" in value else value
        pos = match.end()
        if pos < end and line[pos] == ",":
            pos += 1
        elif not (pos < end and line[pos] == "}"):
            raise ValueError("malformed labels")


def _unescape(value: str) -> str:
    """\\\\, \\n and \\" read as prometheus_client reads them (a regex, left to right),
    with str methods: a callback per escape took seconds on 16 MiB of escapes. Pairs of
    backslashes go first, as the left-to-right scan pairs them; what is left between
    them holds no pair, so its \\n and \\" are escapes."""
    return "\\".join(part.replace("\\n", "\n").replace('\\"', '"') for part in value.split("\\\\"))


def _series_key(
    labels: Mapping[str, str], wanted: tuple[str, str, str], le_cache: dict[str, str]
) -> SeriesKey:
    method, route, third = (labels.get(name, "") for name in wanted)
    if wanted[2] == "le":
        if third not in le_cache:
            le_cache[third] = canonical_le(third)
        third = le_cache[third]
    extra = ""
    if len(labels) > 3 or not labels.keys() <= _WANTED_SETS[wanted]:
        extra = ",".join(
            f"{name}={value!r}" for name, value in sorted(labels.items()) if name not in wanted
        )
    return route, method, third, extra


def _counter_value(rest: str) -> float:
    parts = rest.split()
    # "value", "value timestamp", or OpenMetrics' "value # exemplar..."
    if not parts or (len(parts) > 2 and parts[1] != "#"):
        raise ValueError("expected a value and at most a timestamp")
    return _checked(float(parts[0]))


def _checked(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a counter cannot be {value}")
    return value


def _garbage(target: str, number: int, why: str, line: str) -> MetricsProviderError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return MetricsProviderError(
        f"{target}: not Prometheus text exposition: line {number}: {why}: {shown!r}"
    )


def _late(target: str, number: int) -> MetricsProviderError:
    return MetricsProviderError(
        f"{target}: /metrics not read within the scrape's deadline (parsing line {number:,})"
    )


def _over_cap(target: str, what: str) -> MetricsProviderError:
    return MetricsProviderError(
        f"{target}: /metrics too large to read: {what}",
        hint="a scrape reads at most a few thousand series of the two families it uses",
    )


def _no_family(target: str) -> MetricsProviderError:
    return MetricsProviderError(
        f"{target}: the body has no {REQUESTS} or http_request_duration_seconds family",
        hint="is this the service's /metrics endpoint?",
    )


# --- the reference: prometheus_client's parser ---------------------------------------


def parse_exposition_with_prometheus_client(
    text: str, target: str, *, routes: frozenset[str] | None = None
) -> TargetSample:
    """Same contract as parse_exposition, through prometheus_client.parser."""
    requests: dict[SeriesKey, float] = {}
    buckets: dict[SeriesKey, float] = {}
    seen = False
    le_cache: dict[str, str] = {}
    try:
        for family in text_string_to_metric_families(text):
            seen = seen or family.name in FAMILY_NAMES
            for sample in family.samples:
                if sample.name == REQUESTS:
                    into, wanted = requests, _REQUEST_LABELS
                elif sample.name == BUCKETS:
                    into, wanted = buckets, _BUCKET_LABELS
                else:
                    continue
                seen = True
                key = _series_key(sample.labels, wanted, le_cache)
                value = _checked(float(sample.value))
                if routes is None or key[0] in routes:
                    into[key] = value
    except MetricsProviderError:
        raise
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on garbage
        raise MetricsProviderError(
            f"{target}: not Prometheus text exposition: {type(exc).__name__}: {exc}"
        ) from None
    if not seen:
        raise _no_family(target)
    return TargetSample(target=target, requests=requests, buckets=buckets)


def sample_of(t: float, targets: Iterable[TargetSample]) -> Sample:
    return Sample(t=t, targets={target.target: target for target in targets})
