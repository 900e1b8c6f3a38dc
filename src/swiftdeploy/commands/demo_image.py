"""`swiftdeploy demo-image`: the demo service as a container image, with no registry.

Two layers, each cached:
1. a base image of Debian with python3: a `debootstrap --variant=minbase` root
   filesystem imported into the engine (as `docker import`); built once per machine,
   named by its recipe, so a changed recipe builds a new one;
2. the demo service on it, built by the engine's classic builder FROM that local base:
   the demo's module and the Python packages it imports, copied from this
   installation (the same versions as `swiftdeploy-demo`, no package index asked).

Each image carries the digest of what went into it; a re-run with nothing changed only
compares digests. The container takes its version from SWIFTDEPLOY_VERSION, which the
runtime gives every replica, so one image serves every tag.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from swiftdeploy import proc
from swiftdeploy.demo import app as demo_app
from swiftdeploy.errors import BadInputError, OperationalError
from swiftdeploy.runtime.image_user import UNSHARED_UID

if TYPE_CHECKING:
    import docker

REPOSITORY = "swiftdeploy-demo"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_RECIPE = f"debootstrap --variant=minbase --include=python3 {SUITE} {MIRROR}"
BASE_IMAGE = f"swiftdeploy-demo-base:{hashlib.sha256(BASE_RECIPE.encode()).hexdigest()[:12]}"
DIGEST_LABEL = "io.swiftdeploy.demo.digest"
# What the demo imports, and what they import: copied into the image as installed here.
DISTRIBUTIONS = (
    "starlette",
    "anyio",
    "idna",
    "typing_extensions",
    "uvicorn",
    "click",
    "h11",
    "prometheus_client",
)
# Trimmed from the base: documentation and apt's caches serve no one in a container.
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY site /opt/swiftdeploy/site
COPY demo.py /opt/swiftdeploy/demo.py
ENV PYTHONPATH=/opt/swiftdeploy/site PYTHONDONTWRITEBYTECODE=1 PORT=8080
EXPOSE 8080
# No privilege, and a uid no host account has: without user-namespace remapping a
# container's uid is the host's, and a host account of it (as nobody was) could read the
# replicas' environment and signal them (SECURITY.md).
USER {UNSHARED_UID}:{UNSHARED_UID}
# Shell form: the port and version come from the container's environment.
CMD exec python3 /opt/swiftdeploy/demo.py --host 0.0.0.0 \\
    --port "$PORT" --version "${{SWIFTDEPLOY_VERSION:-unknown}}"
"""
_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def build_demo_image(tags: list[str], progress: Callable[[str], None]) -> list[str]:
    """`swiftdeploy-demo:<tag>` for every tag, built or found up to date; returns them."""
    refs = [f"{REPOSITORY}:{checked_tag(tag)}" for tag in tags]
    return build_on_base(refs, DIGEST_LABEL, _digest(), _write_context, progress)


def build_on_base(
    refs: list[str],
    label: str,
    digest: str,
    write_context: Callable[[Path], None],
    progress: Callable[[str], None],
) -> list[str]:
    """Build the images `refs` FROM the base (the demo's, and the driver's image in
    commands/driver_image.py) unless each carries `digest` in `label` already."""
    from swiftdeploy.runtime import docker as engine

    client = engine.connect()
    with build_lock():
        stale = [ref for ref in refs if engine.image_label(client, ref, label) != digest]
        if not stale:
            return refs
        _ensure_base(client, progress)
        progress(f"building {', '.join(stale)}")
        with tempfile.TemporaryDirectory(prefix="swiftdeploy-image-") as tmp:
            context = Path(tmp)
            write_context(context)
            engine.build_image(client, context, stale, {label: digest})
    return refs


def _ensure_base(client: docker.DockerClient, progress: Callable[[str], None]) -> None:
    """The base image (Debian with python3), built once per machine."""
    from swiftdeploy.runtime import docker as engine

    if engine.image_label(client, BASE_IMAGE, DIGEST_LABEL) is None:
        progress(f"building the base image {BASE_IMAGE} (debootstrap, about a minute)")
        _build_base(client)


def checked_tag(tag: str) -> str:
    if not tag or len(tag) > 128 or not set(tag) <= _TAG_CHARS or tag[0] in ".-":
        raise BadInputError(
            f"invalid image tag {tag!r}",
            hint="up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        )
    return tag


def _digest() -> str:
    """What the demo layer is made of: the Dockerfile, the module, the packages' versions."""
    parts = [DOCKERFILE, Path(demo_app.__file__).read_text()]
    parts += [f"{name}=={importlib.metadata.version(name)}" for name in DISTRIBUTIONS]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def build_lock() -> Iterator[None]:
    """Two builds at once (two test workers) take turns; the second finds it done."""
    directory = Path(tempfile.gettempdir()) / f"swiftdeploy-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(directory / "demo-image.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build_base(client: docker.DockerClient) -> None:
    from swiftdeploy.runtime import docker as engine

    if os.geteuid() != 0:
        raise OperationalError(
            "building the demo's base image needs root (debootstrap)",
            hint="run `swiftdeploy demo-image` as root once; later builds reuse the base",
        )
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise OperationalError(
            "debootstrap not found",
            hint="`make setup` installs it, or: apt-get install debootstrap",
        )
    with tempfile.TemporaryDirectory(prefix="swiftdeploy-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        argv = [debootstrap, *BASE_RECIPE.split()[1:4], str(root), MIRROR]
        proc.run(argv, timeout=900).assert_success("debootstrap")
        for path in TRIM:
            shutil.rmtree(root / path, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        proc.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."], timeout=300
        ).assert_success("packing the root filesystem")
        engine.import_rootfs(client, tarball, BASE_IMAGE)


def _write_context(context: Path) -> None:
    (context / "Dockerfile").write_text(DOCKERFILE)
    shutil.copyfile(demo_app.__file__, context / "demo.py")
    site = context / "site"
    for name in DISTRIBUTIONS:
        for file in importlib.metadata.distribution(name).files or []:
            # Console scripts live outside site-packages ("../../bin"); the demo runs none.
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(file.locate())), target)
