"""Shared fixtures: isolated projects in short temporary directories (unix socket paths
are limited to 108 bytes), a CLI runner, and a deployed project that is always torn down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from swiftdeploy.ports import free_port

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


@dataclass
class Project:
    root: Path
    listen_port: int

    @property
    def manifest(self) -> Path:
        return self.root / "swiftdeploy.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".swiftdeploy"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [SWIFTDEPLOY, *args, "-f", str(self.manifest)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if check and done.returncode != 0:
            command = " ".join(args)
            raise AssertionError(
                f"swiftdeploy {command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "state.json").read_text())

    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.state()['admin_port']}"

    def edit_manifest(self, old: str, new: str) -> None:
        text = self.manifest.read_text()
        assert old in text, old
        self.manifest.write_text(text.replace(old, new))


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _new_project(root: Path) -> Project:
    port = free_port()
    subprocess.run(
        [SWIFTDEPLOY, "init", str(root), "--listen", f"127.0.0.1:{port}"],
        check=True,
        capture_output=True,
    )
    return Project(root=root, listen_port=port)


def _teardown(project: Project) -> None:
    if (project.state_dir / "supervisord.pid").exists():
        project.cli("teardown", check=False)


@pytest.fixture
def project(short_tmp: Path) -> Iterator[Project]:
    """A fresh project from `swiftdeploy init`, torn down after the test whatever happens."""
    proj = _new_project(short_tmp)
    try:
        yield proj
    finally:
        _teardown(proj)


@pytest.fixture(scope="module")
def deployed() -> Iterator[Project]:
    """One project per test module with v1 deployed (2 replicas); torn down at the end."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    proj = _new_project(root)
    try:
        proj.cli("deploy")
        yield proj
    finally:
        _teardown(proj)
        shutil.rmtree(root, ignore_errors=True)


def version_counts(
    url: str, requests: int, headers: dict[str, str] | None = None
) -> dict[str, int]:
    """Send `requests` GETs on one keepalive connection; count responses by X-App-Version."""
    counts: dict[str, int] = {}
    with httpx.Client(timeout=5.0) as client:
        for _ in range(requests):
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            version = response.headers["x-app-version"]
            counts[version] = counts.get(version, 0) + 1
    return counts
