"""Which uid an image runs as and who else on this machine has it (no engine needed):
the warning `validate`, `deploy`, `canary` and `rollout` print on docker."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from swiftdeploy.runtime.image_user import (
    UNSHARED_UID,
    host_holders,
    image_uid,
    shared_uid_warning,
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/app:\n"
)


def no_passwd() -> str | None:
    raise AssertionError("a numeric USER needs no /etc/passwd")


@pytest.mark.parametrize(
    ("user", "uid"),
    [("", 0), ("0", 0), ("65534:65534", 65534), ("1000", 1000), ("70713:0", 70713)],
)
def test_a_numeric_user_is_its_uid(user: str, uid: int) -> None:
    assert image_uid(user, no_passwd) == uid


@pytest.mark.parametrize(
    ("user", "uid"), [("root", 0), ("nobody", 65534), ("app:app", 1000), ("ghost", None)]
)
def test_a_name_is_looked_up_in_the_images_passwd(user: str, uid: int | None) -> None:
    # The image's own /etc/passwd decides, not this machine's: `app` is 1000 there
    assert image_uid(user, lambda: PASSWD) == uid


def test_a_name_in_an_image_without_passwd_has_no_uid() -> None:
    assert image_uid("app", lambda: None) is None


def test_a_uid_a_host_account_has_is_held_by_it(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    assert host_holders(nobody, tmp_path / "no-subuid") == ["the account nobody"]


def test_root_and_an_unused_uid_are_held_by_no_one_else(tmp_path: Path) -> None:
    # Root in a container is the host's root: trusted, never warned about
    assert host_holders(0, tmp_path / "no-subuid") == []
    assert host_holders(UNSHARED_UID, tmp_path / "no-subuid") == []


def test_the_demo_images_uid_is_no_account_of_this_machine() -> None:
    with pytest.raises(KeyError):
        pwd.getpwuid(UNSHARED_UID)


def test_a_uid_in_a_users_subordinate_range_is_held_by_their_containers(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\nbroken line\nbob:x:1\nbob:165536:65536\n")
    assert host_holders(100000 + 1000, subuid) == [f"alice's rootless containers ({subuid})"]
    assert host_holders(165536, subuid) == [f"bob's rootless containers ({subuid})"]
    assert host_holders(99999, subuid) == []


def test_the_warning_is_one_line_saying_who_what_and_the_fix() -> None:
    line = shared_uid_warning(
        "swiftdeploy.yaml: service.image",
        "web:v2",
        "65534:65534",
        65534,
        ["the account nobody"],
        "/run/swiftdeploy/env",
    )
    assert "\n" not in line
    assert line.startswith("swiftdeploy.yaml: service.image: web:v2 runs as uid 65534")
    assert "also gives to the account nobody" in line
    assert "/proc/PID/environ" in line
    assert "/proc/PID/root/run/swiftdeploy/env" in line
    assert "signal the replicas" in line
    assert f"USER {UNSHARED_UID}:{UNSHARED_UID}" in line
