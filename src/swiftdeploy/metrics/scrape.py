"""The `scrape` metrics provider: read each replica's /metrics directly, no Prometheus.

Each `measure(track, window_s)`:

1. asks `targets(track)` for the metric URLs of that track's replicas;
2. scrapes them all at once (one thread per target, at most 16) with the given
   httpx.Client, and parses them with one `ExpositionParser` (whose memo makes
   repeated scrapes cheap);
3. appends the scrape to the track's history and, when `history_path` is given,
   saves the history there (atomically), so a later one-shot CLI run can measure
   against it;
4. measures from the oldest scrape within the window to this one (window.py), with
   counter resets handled per replica and series as Prometheus does.

No earlier scrape within the window (the first measure of a one-shot run, or a
saved history older than the window): it waits `bootstrap_s` (never less than 1 s),
scrapes again and measures that pair. `elapsed_s` then says what was really
measured (about a second, whatever window was asked for), and on that little traffic
`min_requests` usually makes it `no_data`: an answer, never a pass. The floor of 1 s
is there because a shorter pair measures scheduling noise more than traffic; a
caller that wants a fuller first window passes a larger `bootstrap_s` (the analysis
interval, say) or measures on every tick, which fills the history as it goes.

Each replica's read and parse share one deadline, `timeout_s` from the request, and
the parse reads at most the parser's caps of lines and series (exposition.py): a
canary's /metrics cannot cost more than that of the controller's time (issue 22).

Outcomes: no replicas -> `no_data`; any replica that cannot be scraped (refused,
timed out, non-200, over `max_bytes` or the parser's caps, or not exposition text,
read and parsed within `timeout_s`) -> `provider_error`
naming it, since the counts of the others alone could hide the failing replica's
errors. `measure()` never raises: even a bug comes back as `provider_error`.

The saved history is read once, when the provider is made, and written after every
measure, atomically; two processes measuring at once would each keep their own
(the last writer wins), so measure from one process per project at a time. A file that cannot
be read or was kept with another route filter is set aside (a note in the next
measurement's detail says so) and the provider starts over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import MetricsProviderError
from swiftdeploy.fsutil import atomic_write
from swiftdeploy.metrics.base import DEFAULT_QUANTILES, Measurement, summarize
from swiftdeploy.metrics.exposition import ExpositionParser, Sample, TargetSample, sample_of
from swiftdeploy.metrics.window import History, WindowDelta

HISTORY_VERSION = 1
# Each look scrapes every replica (a few ms); reading more often than this measures
# the scheduler more than the traffic.
RESOLUTION_S = 0.25
# A window this much shorter than asked for is reported as such (scrapes are not
# exactly on time, so a little short is normal).
SHORT_WINDOW_SLACK_S = 2.0
MIN_BOOTSTRAP_S = 1.0
MAX_PARALLEL_SCRAPES = 16
MAX_BYTES = 16 * 1024 * 1024  # a /metrics body larger than this is refused unread
# prometheus_client serves text format 0.0.4 for this, OpenMetrics only if asked.
_ACCEPT = {"Accept": "text/plain;version=0.0.4"}


class ScrapeProvider:
    """Measures a track by scraping its replicas; see the module docstring."""

    name = "scrape"

    def __init__(
        self,
        targets: Callable[[str], Sequence[str]],
        client: httpx.Client,
        *,
        min_requests: int = 0,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        routes: Iterable[str] | None = None,
        history_path: Path | None = None,
        bootstrap_s: float = MIN_BOOTSTRAP_S,
        timeout_s: float = 2.0,
        max_bytes: int = MAX_BYTES,
        max_history_s: float = 600.0,
        tracks: Sequence[str] = ("stable", "canary"),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._targets = targets
        self._client = client
        self.min_requests = min_requests
        self.quantiles = tuple(quantiles)
        self.routes = frozenset(routes) if routes is not None else None
        self.history_path = history_path
        self.bootstrap_s = max(MIN_BOOTSTRAP_S, bootstrap_s)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_history_s = max_history_s
        self.tracks = tuple(tracks)
        self._clock = clock
        self._sleep = sleep
        self._parser = ExpositionParser(routes=self.routes)
        self._histories: dict[str, History] = {}
        self._notes: list[str] = []  # history load/save problems, told once in a detail
        self.resolution_s = RESOLUTION_S
        if history_path is not None:
            self._load(history_path)

    # --- the MetricsProvider interface ---

    def measure(self, track: str, window_s: float) -> Measurement:
        evidence: list[str] = []
        try:
            return self._measure(track, window_s, evidence)
        except Exception as exc:  # never raise out of measure(): a bug fails closed too
            return Measurement.provider_error(
                track, self.name, f"unexpected {type(exc).__name__}: {exc}", evidence
            )

    def mark(self, track: str) -> float | None:
        """Scrape now and keep it as the start of a later `measure_since`."""
        try:
            urls = list(self._targets(track))
            if not urls:
                return None
            sample, failures = self._scrape(urls)
            if failures:
                self._notes.extend(failures)
                return None
            self.history(track).append(sample)
            self._save()
            return sample.t
        except Exception as exc:  # a mark is best effort; measure_since tells what is wrong
            self._notes.append(f"marking {track} failed: {type(exc).__name__}: {exc}")
            return None

    def measure_since(self, track: str, since: float) -> Measurement:
        try:
            return self._measure_since(track, since)
        except Exception as exc:  # never raise out of measure: a bug fails closed too
            return Measurement.provider_error(
                track, self.name, f"unexpected {type(exc).__name__}: {exc}"
            )

    def is_online(self) -> bool:
        """True if any replica of any of `tracks` serves valid exposition text."""
        return any(self._answers(url) for track in self.tracks for url in self._urls(track))

    def _urls(self, track: str) -> list[str]:
        try:
            return list(self._targets(track))
        except Exception:  # a failing lookup means "nothing to ask", not a crash
            return []

    def _answers(self, url: str) -> bool:
        try:
            self._read(url)
        except MetricsProviderError:
            return False
        return True

    # --- the work ---

    def history(self, track: str) -> History:
        if track not in self._histories:
            self._histories[track] = History(max_age_s=self.max_history_s)
        return self._histories[track]

    def _measure(self, track: str, window_s: float, evidence: list[str]) -> Measurement:
        if not window_s > 0:
            raise ValueError(f"the window must be positive, got {window_s}")
        try:
            urls = list(self._targets(track))
        except Exception as exc:  # the runtime's state, read by the caller's function
            return Measurement.provider_error(
                track,
                self.name,
                self._with_notes(
                    f"cannot list the replicas of {track!r}: {type(exc).__name__}: {exc}"
                ),
            )
        evidence.extend(urls)
        if not urls:
            return Measurement.no_data(
                track, self.name, self._with_notes(f"no replicas of {track!r} to scrape")
            )
        history = self.history(track)
        latest, failures = self._scrape(urls)
        history.append(latest)
        delta = history.delta(window_s)
        if not failures and delta is None:
            self._sleep(self.bootstrap_s)
            second, failures = self._scrape(urls)
            history.append(second)
            delta = history.delta_since(latest.t)
        self._save()
        if failures:
            return Measurement.provider_error(
                track, self.name, self._with_notes("; ".join(failures)), urls
            )
        if delta is None:  # only if the clock went back between the two scrapes
            return Measurement.no_data(
                track, self.name, self._with_notes("no two scrapes to measure between"), urls
            )
        if delta.elapsed < window_s - SHORT_WINDOW_SLACK_S:
            self._notes.append(
                f"the window reaches back before the first saved reading: these are the last"
                f" {format_duration(delta.elapsed)} of the {format_duration(window_s)} asked for"
                " (the nginx provider keeps 15 minutes of history)"
            )
        return self._summary(track, delta, urls, self.min_requests)

    def _measure_since(self, track: str, since: float) -> Measurement:
        urls = list(self._targets(track))
        if not urls:
            return Measurement.no_data(
                track, self.name, self._with_notes(f"no replicas of {track!r} to scrape")
            )
        latest, failures = self._scrape(urls)
        if failures:
            return Measurement.provider_error(
                track, self.name, self._with_notes("; ".join(failures)), urls
            )
        history = self.history(track)
        history.append(latest)
        self._save()
        delta = history.delta_since(since)
        if delta is None:  # the reading at `since` is gone: count from this one
            return Measurement(
                track=track,
                provider=self.name,
                status="no_data",
                detail=self._with_notes(f"no reading since {since:.3f} to count from"),
                window_start=latest.t,
                window_end=latest.t,
                elapsed_s=0.0,
                evidence=tuple(urls),
            )
        # every increment counts, however small: the caller adds them up
        return self._summary(track, delta, urls, min_requests=0)

    def _summary(
        self, track: str, delta: WindowDelta, urls: Sequence[str], min_requests: int
    ) -> Measurement:
        return summarize(
            track=track,
            provider=self.name,
            window_start=delta.start,
            window_end=delta.end,
            requests=delta.requests,
            errors=delta.errors,
            buckets=delta.buckets,
            min_requests=min_requests,
            quantiles=self.quantiles,
            evidence=urls,
            detail=self._with_notes(_describe(delta)),
        )

    def _scrape(self, urls: Sequence[str]) -> tuple[Sample, list[str]]:
        """Scrape every URL at once: the track's sample and one message per failure."""
        started = self._clock()
        workers = min(len(urls), MAX_PARALLEL_SCRAPES)  # httpx.Client is thread-safe
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape") as pool:
            bodies = list(pool.map(self._fetch_or_error, urls))
        t = (started + self._clock()) / 2
        parsed: list[TargetSample] = []
        failures: list[str] = []
        for url, body in zip(urls, bodies, strict=True):
            try:
                if isinstance(body, MetricsProviderError):
                    raise body
                text, deadline = body
                parsed.append(self._parser.parse(text, url, deadline=deadline))
            except MetricsProviderError as exc:
                failures.append(exc.one_line())
        return sample_of(t, parsed), failures

    def _read(self, url: str) -> TargetSample:
        """One replica's series, read and parsed within `timeout_s`."""
        text, deadline = self._fetch_timed(url)
        return self._parser.parse(text, url, deadline=deadline)

    def _fetch_or_error(self, url: str) -> tuple[str, float] | MetricsProviderError:
        try:
            return self._fetch_timed(url)
        except MetricsProviderError as exc:
            return exc

    def _fetch_timed(self, url: str) -> tuple[str, float]:
        """The body and the deadline its parse must meet too: `timeout_s` in all from
        the request, the same deadline `_fetch` gives the read."""
        deadline = time.monotonic() + self.timeout_s
        return self._fetch(url), deadline

    def _fetch(self, url: str) -> str:
        """The body, read within `timeout_s` in all: httpx's timeouts bound each read,
        and a canary that drips a byte a second would pass them forever."""
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream(
                "GET", url, headers=_ACCEPT, timeout=self.timeout_s
            ) as response:
                if response.status_code != 200:
                    raise MetricsProviderError(f"{url}: HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise MetricsProviderError(f"{url}: body over {self.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise MetricsProviderError(
                            f"{url}: no whole answer within {format_duration(self.timeout_s)}"
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise MetricsProviderError(f"{url}: {type(exc).__name__}: {exc}") from None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise MetricsProviderError(
                f"{url}: not Prometheus text exposition: not UTF-8"
            ) from None

    # --- persistence ---

    def _with_notes(self, detail: str) -> str:
        notes, self._notes = self._notes, []
        return "; ".join(part for part in (detail, *notes) if part)

    def _load(self, path: Path) -> None:
        """Read a saved history; an unreadable one is set aside with a note, not fatal."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self._notes.append(f"ignored unreadable scrape history {path}: {exc}")
            return
        routes = sorted(self.routes) if self.routes is not None else None
        if not isinstance(data, dict) or data.get("version") != HISTORY_VERSION:
            self._notes.append(f"ignored scrape history {path}: not version {HISTORY_VERSION}")
            return
        if data.get("routes") != routes:  # its counts are of other series
            self._notes.append(f"set aside scrape history {path}: kept for other routes")
            return
        tracks = data.get("tracks")
        if not isinstance(tracks, dict):
            self._notes.append(f"ignored scrape history {path}: no tracks")
            return
        for track, saved in tracks.items():
            try:
                history = History.from_json(saved, max_age_s=self.max_history_s)
            except (ValueError, TypeError) as exc:
                self._notes.append(f"ignored saved scrapes of {track!r} in {path}: {exc}")
                continue
            self._histories[str(track)] = history

    def _save(self) -> None:
        if self.history_path is None:
            return
        data = {
            "version": HISTORY_VERSION,
            "routes": sorted(self.routes) if self.routes is not None else None,
            "tracks": {track: history.to_json() for track, history in self._histories.items()},
        }
        try:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.history_path, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            self._notes.append(f"could not save scrape history {self.history_path}: {exc}")


def _describe(delta: WindowDelta) -> str:
    over = format_duration(delta.elapsed)
    parts = [f"{len(delta.targets)} replica(s), {delta.scrapes} scrapes over {over}"]
    if delta.resets:
        parts.append(f"{delta.resets} counter reset(s) seen and counted")
    if delta.unbased:
        parts.append(f"not counted yet (one scrape only): {', '.join(delta.unbased)}")
    return ", ".join(parts)
