"""The judge's analyses on disk: one JSON file per analysis in its data directory,
written atomically (a judge killed mid-write keeps the previous look's ledger), read
back at the next call, so evidence adds up across calls and judge restarts. Bounded:
beyond `max_analyses`, or unused for `max_age`, the oldest are pruned."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from swiftdeploy.errors import OperationalError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.judge.judgement import Run, file_name

SUFFIX = ".json"


class AnalysisStore:
    def __init__(
        self,
        directory: Path,
        max_analyses: int,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_analyses = max_analyses
        self.max_age_s = max_age_s
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, key: str) -> Path:
        return self.directory / file_name(key)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """One call at a time per analysis (its looks must not count the same span twice)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def load(self, key: str) -> Run | None:
        """The analysis, or None when it is new. A file that cannot be read is an error,
        never a fresh start: starting its evidence again would spend alpha twice."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OperationalError(f"cannot read the analysis {key}: {exc.strerror}") from None
        try:
            run = Run.model_validate_json(text)
        except ValidationError:
            raise OperationalError(
                f"the analysis file {path} of {key} is not a valid analysis",
                hint="move it aside to start this analysis again (its evidence is lost)",
            ) from None
        if run.key != key:
            raise OperationalError(f"the analysis file {path} holds {run.key}, not {key}")
        return run

    def save(self, run: Run) -> None:
        private_dir(self.directory)
        atomic_write(self.path(run.key), run.model_dump_json())

    def runs(self) -> list[Run]:
        """Every analysis that can be read, oldest update first."""
        found = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                found.append(Run.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValidationError, json.JSONDecodeError):
                continue
        return sorted(found, key=lambda run: run.updated_at)

    def prune(self, keep: str | None = None) -> list[str]:
        """Delete analyses beyond the newest `max_analyses` and those unused for
        `max_age` (never `keep`, the one just written); returns their keys."""
        runs = [run for run in self.runs() if run.key != keep]
        cutoff = self._clock() - self.max_age_s
        room = self.max_analyses - (1 if keep is not None else 0)
        excess = max(len(runs) - room, 0)
        doomed = [run for i, run in enumerate(runs) if i < excess or run.updated_at < cutoff]
        for run in doomed:
            self.path(run.key).unlink(missing_ok=True)
        return [run.key for run in doomed]
