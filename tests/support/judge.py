"""The judge in an end-to-end test: served in this process on loopback with the contract
test's config (tests/judge/test_server.py), and its trail read back."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.cli.app import run
from swiftdeploy.commands.judge import Running, start
from swiftdeploy.judge.config import load_judge
from tests.judge.test_server import TOKEN, write_config


@contextlib.contextmanager
def serving_judge(directory: Path, prometheus: str) -> Iterator[tuple[Running, Path]]:
    """`swiftdeploy judge serve` on a free loopback port, its config, data and trail in
    `directory`: the callers `argo-rollouts` (Bearer TOKEN) and `flagger` (FLAGGER_TOKEN)."""
    config = write_config(directory, prometheus)
    running = start(load_judge(config), lambda line: None, environ={"JUDGE_TEST_ARGO": TOKEN})
    try:
        yield running, config
    finally:
        running.stop()


def trail(config: Path) -> Path:
    return config.parent / ".swiftdeploy-judge" / "history.jsonl"


def decisions(config: Path) -> list[dict[str, Any]]:
    """Every answer the judge recorded, oldest first."""
    if not trail(config).exists():
        return []
    records = [json.loads(line) for line in trail(config).read_text().splitlines() if line]
    return [r for r in records if "decision" in r]


def answers(config: Path, analysis: str) -> list[dict[str, Any]]:
    """The judge's recorded answers in one analysis, oldest first."""
    return [r for r in decisions(config) if r.get("rollout_id") == analysis]


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A swiftdeploy command in this process: its exit code and what it printed."""
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err
