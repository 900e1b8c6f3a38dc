"""`swiftdeploy init`: a commented manifest that runs the bundled demo, plus the policies."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import jinja2

from swiftdeploy import DEFAULT_MANIFEST
from swiftdeploy.errors import BadInputError
from swiftdeploy.fsutil import atomic_write
from swiftdeploy.manifest import load_manifest

_LISTEN = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")


RUNTIMES = ("local", "docker", "kubernetes")


def init_project(
    directory: Path,
    listen: str,
    force: bool,
    runtime: str = "local",
    manifest: Path | None = None,
) -> list[Path]:
    """The manifest for `runtime` (validated once written) at `directory`/`manifest`
    (default swiftdeploy.yaml; an absolute `manifest` stands alone) and the policies
    beside it; returns the files written. Every target is checked before the first write."""
    if runtime not in RUNTIMES:
        raise BadInputError(
            f"--runtime {runtime!r} is not a runtime", hint=f"use one of {', '.join(RUNTIMES)}"
        )
    if not _LISTEN.match(listen):
        raise BadInputError(f"--listen {listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8080")
    manifest_path = directory / (manifest or DEFAULT_MANIFEST)
    policies = manifest_path.parent / "policies"
    _check_targets(manifest_path, policies, force)
    template = resources.files("swiftdeploy").joinpath("init_templates", "swiftdeploy.yaml.j2")
    text = jinja2.Template(template.read_text(), autoescape=False).render(
        listen=listen, runtime=runtime
    )
    atomic_write(manifest_path, text, mode=0o644)
    load_manifest(manifest_path)  # what init writes must load
    return [manifest_path, *copy_policies(policies, force)]


def _check_targets(manifest: Path, policies: Path, force: bool) -> None:
    """A file where a directory must be, an existing manifest, or a directory that
    cannot be made: one clear error before anything is written."""
    for place in (manifest.parent, *manifest.parent.parents):
        if place.exists():
            if not place.is_dir():
                raise BadInputError(
                    f"{place} is a file, not a directory",
                    hint="init takes the project's DIRECTORY; name the manifest with -f FILE",
                )
            break
    if manifest.is_dir():
        raise BadInputError(
            f"{manifest} is a directory, not a manifest file", hint="-f names the manifest file"
        )
    if manifest.exists() and not force:
        raise BadInputError(f"{manifest} already exists", hint="pass --force to overwrite")
    if policies.exists() and not policies.is_dir():
        raise BadInputError(
            f"{policies} is a file; the policies go in a directory of that name",
            hint="move it away, or init elsewhere",
        )
    try:
        manifest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(
            f"cannot create the directory {manifest.parent} ({exc.strerror})",
            hint="choose a directory you can write, e.g. swiftdeploy init ./shop",
        ) from None


def copy_policies(policies: Path, force: bool) -> list[Path]:
    """The shipped Rego policies (and their tests) written into `policies`; an existing
    file is kept unless `force`. Returns the files written."""
    written = []
    shipped = resources.files("swiftdeploy").joinpath("policies")
    policies.mkdir(parents=True, exist_ok=True)
    for entry in shipped.iterdir():
        if entry.name.endswith(".rego"):
            target = policies / entry.name
            if force or not target.exists():
                atomic_write(target, entry.read_text(encoding="utf-8"), mode=0o644)
                written.append(target)
    return written
