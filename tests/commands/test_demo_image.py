"""`build_demo_image(tags)`: `swiftdeploy-demo:<tag>` for every tag, built FROM the
cached base unless it carries the digest of what goes into it already; a bad tag is
refused before the engine is asked. (The base's debootstrap build runs once per machine,
in `make test-setup`.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from swiftdeploy.commands.demo_image import (
    DIGEST_LABEL,
    REPOSITORY,
    build_demo_image,
    checked_tag,
)
from swiftdeploy.errors import BadInputError
from swiftdeploy.runtime.docker import build_image
from swiftdeploy.runtime.image_user import UNSHARED_UID
from tests.support.docker import engine


@pytest.mark.parametrize("tag", ["v1", "1.2.3-rc_4", "latest", "a" * 128])
def test_a_tag_docker_accepts_is_kept(tag: str) -> None:
    assert checked_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-v1", ".v1", "v 1", "v1:latest", "a/b", "é", "a" * 129])
def test_a_bad_tag_is_refused_before_anything_is_built(tag: str) -> None:
    said: list[str] = []
    with pytest.raises(BadInputError) as refused:
        build_demo_image(["v1", tag], said.append)
    assert refused.value.message == f"invalid image tag {tag!r}"
    assert "up to 128 letters, digits" in str(refused.value.hint)
    assert said == []


def test_images_up_to_date_are_kept_and_a_stale_one_is_rebuilt() -> None:
    client = engine()
    said: list[str] = []
    # Given the demo image (`make test-setup` built it) under v1
    build_demo_image(["v1"], said.append)
    v1 = client.images.get(f"{REPOSITORY}:v1")
    digest = v1.labels[DIGEST_LABEL]
    said.clear()
    # and a tag of it that carries another digest (labels are inherited, so FROM v1)
    stale = f"{REPOSITORY}:test-stale-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Dockerfile").write_text(f"FROM {REPOSITORY}:v1\n")
        build_image(client, Path(tmp), [stale], {DIGEST_LABEL: "older"})
    try:
        # When both are asked for
        refs = build_demo_image(["v1", stale.split(":")[1]], said.append)
        # Then only the stale one is built, and v1 is the image it was
        assert refs == [f"{REPOSITORY}:v1", stale]
        assert said == [f"building {stale}"]
        assert client.images.get(f"{REPOSITORY}:v1").id == v1.id
        rebuilt = client.images.get(stale)
        assert rebuilt.labels[DIGEST_LABEL] == digest
        assert rebuilt.attrs["Config"]["User"] == f"{UNSHARED_UID}:{UNSHARED_UID}"
        # And its Python runs the demo with the packages copied in from here
        out = client.containers.run(
            stale,
            ["python3", "/opt/swiftdeploy/demo.py", "--help"],
            remove=True,
        )
        assert b"--version" in out
    finally:
        client.images.remove(stale)
