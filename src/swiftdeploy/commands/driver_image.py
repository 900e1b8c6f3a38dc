"""`swiftdeploy driver-image`: the image `swiftdeploy kube install` runs the driver
from, built with no registry, as the demo's image is (commands/demo_image.py).

It is the demo's base (Debian with python3, built once per machine) plus this
installation of SwiftDeploy: its package and every distribution it requires, copied
as installed here (the same versions, no package index asked; the base's python3 is
the same minor version, so compiled wheels load). The image carries the digest of what
went into it; a re-run with nothing changed only compares digests.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import swiftdeploy
from swiftdeploy.commands import demo_image
from swiftdeploy.commands.kube_install import DRIVER_REPOSITORY
from swiftdeploy.errors import OperationalError

DIGEST_LABEL = "io.swiftdeploy.driver.digest"
# No privilege, and a uid no host account has (as the demo's image; SECURITY.md).
MULTIARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
# Shared libraries a copied wheel links that the base (debootstrap minbase) lacks:
# regopy's engine needs libatomic. Copied from this machine (the base's Debian release).
LIBRARIES = ("libatomic.so.1",)
DOCKERFILE = f"""\
FROM {demo_image.BASE_IMAGE}
COPY lib/ /usr/lib/{MULTIARCH}/
COPY site /opt/swiftdeploy/site
COPY swiftdeploy /usr/local/bin/swiftdeploy
ENV PYTHONPATH=/opt/swiftdeploy/site PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
CMD ["swiftdeploy", "--help"]
"""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's name (PEP 508)
_EXTRA = re.compile(r"\bextra\s*==")  # a requirement of an extra (dev)
_DRIVER_EXTRA = re.compile(r"""extra\s*==\s*["']kubernetes["']""")
LAUNCHER = '#!/bin/sh\nexec python3 -m swiftdeploy.cli "$@"\n'


def build_driver_image(tags: list[str], progress: Callable[[str], None]) -> list[str]:
    """`swiftdeploy-driver:<tag>` for every tag, built or found up to date."""
    refs = [f"{DRIVER_REPOSITORY}:{demo_image.checked_tag(tag)}" for tag in tags]
    return demo_image.build_on_base(refs, DIGEST_LABEL, _digest(), _write_context, progress)


def distributions() -> list[str]:
    """Every distribution SwiftDeploy's driver needs at run time, by name, its own
    excluded: the core's and the `kubernetes` extra's (the driver runs in the cluster)."""
    seen: set[str] = set()
    todo = ["swiftdeploy"]
    while todo:
        name = todo.pop()
        for text in importlib.metadata.requires(name) or []:
            found = _NAME.match(text)
            wanted = name == "swiftdeploy" and _DRIVER_EXTRA.search(text)
            if found is None or (_EXTRA.search(text) and not wanted):
                continue  # another extra's (dev, docker) requirement
            key = found.group(0).lower().replace("_", "-")
            if key in seen:
                continue
            try:
                importlib.metadata.distribution(key)
            except importlib.metadata.PackageNotFoundError:
                continue  # another platform's (its marker): not installed here
            seen.add(key)
            todo.append(key)
    return sorted(seen)


def _package_files() -> Iterator[tuple[Path, Path]]:
    """(source, path in the site directory) of SwiftDeploy's own package."""
    package = Path(swiftdeploy.__file__).parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path, Path("swiftdeploy") / path.relative_to(package)


def _distribution_files() -> Iterator[tuple[Path, Path]]:
    for name in distributions():
        for file in importlib.metadata.distribution(name).files or []:
            # console scripts live outside site-packages ("../../bin"); none is run
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            yield Path(str(file.locate())), Path(file)


def _digest() -> str:
    parts = [DOCKERFILE, LAUNCHER, swiftdeploy.__version__]
    parts += [f"{name}=={importlib.metadata.version(name)}" for name in distributions()]
    hashed = hashlib.sha256("\n".join(parts).encode())
    for source, target in _package_files():
        hashed.update(str(target).encode() + b"\0" + source.read_bytes())
    return hashed.hexdigest()[:16]


def _library(name: str) -> Path:
    for directory in (f"/usr/lib/{MULTIARCH}", f"/lib/{MULTIARCH}", "/usr/lib64", "/usr/lib"):
        if (Path(directory) / name).exists():
            return (Path(directory) / name).resolve()
    raise OperationalError(
        f"{name} is not installed here, and the driver's image needs it",
        hint="apt-get install libatomic1",
    )


def _write_context(context: Path) -> None:
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "lib").mkdir()
    for name in LIBRARIES:
        shutil.copyfile(_library(name), context / "lib" / name)
    launcher = context / "swiftdeploy"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    site = context / "site"
    for source, target in [*_package_files(), *_distribution_files()]:
        (site / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, site / target)
