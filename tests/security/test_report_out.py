"""`audit report --out DIR` in a shared sticky directory such as /tmp, run as root:
another local user, played by `nobody`, cannot choose where the report is written by
planting a symbolic link or a directory of their own (issue 22, finding 6)."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from swiftdeploy.cli import run
from swiftdeploy.errors import ExitCode
from tests.cli.test_audit import MANIFEST  # a project with an audit trail
from tests.support.trails import write_synthetic_trail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")

NOBODY = 65534


@dataclass
class Machine:
    manifest: Path
    shared: Path  # like /tmp: world-writable and sticky
    victim: Path  # a directory of root's the attacker would like written to


@pytest.fixture
def machine(short_tmp: Path) -> Machine:
    if os.geteuid() != 0:
        pytest.skip("plays root and nobody")
    short_tmp.chmod(0o755)  # nobody may pass through to the shared directory
    shared, victim, project = short_tmp / "shared", short_tmp / "victim", short_tmp / "project"
    for directory in (shared, victim, project):
        directory.mkdir()
    shared.chmod(0o1777)
    (project / "swiftdeploy.yaml").write_text(MANIFEST)
    write_synthetic_trail(project / "audit" / "history.jsonl")
    return Machine(project / "swiftdeploy.yaml", shared, victim)


def as_nobody(*argv: str) -> None:
    subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def report(machine: Machine, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of `swiftdeploy audit report --out OUT`, through the real handler."""
    capsys.readouterr()
    code = run(["audit", "report", "--out", str(out), "-f", str(machine.manifest)])
    return code, capsys.readouterr().err


def test_a_link_planted_in_a_sticky_directory_is_refused(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nobody's link in the shared directory, named as root's report will be
    planted = machine.shared / "report"
    as_nobody("ln", "-s", str(machine.victim), str(planted))
    assert planted.lstat().st_uid == NOBODY
    # When root writes the report there, Then it refuses in one line (exit 2)
    code, err = report(machine, planted, capsys)
    assert code == ExitCode.BAD_INPUT
    assert err.count("\n") == 1
    assert f"refusing to write the report in {planted}: it is a symbolic link" in err
    # And nothing was written where the link points
    assert list(machine.victim.iterdir()) == []


def test_a_link_planted_on_the_way_is_refused(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nobody's link as a directory on the way to the report's
    as_nobody("ln", "-s", str(machine.victim), str(machine.shared / "reports"))
    out = machine.shared / "reports" / "today"
    # When root writes the report there, Then it refuses, naming the link
    code, err = report(machine, out, capsys)
    assert code == ExitCode.BAD_INPUT
    assert "passes through 'reports', a symbolic link of uid 65534" in err
    assert list(machine.victim.iterdir()) == []


def test_a_directory_another_user_owns_is_refused(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nobody's own directory where root's report will be
    theirs = machine.shared / "report"
    as_nobody("mkdir", str(theirs))
    # When root writes the report there, Then it refuses and writes nothing in it
    code, err = report(machine, theirs, capsys)
    assert code == ExitCode.BAD_INPUT
    assert f"{theirs}: it belongs to uid 65534, not to you (uid 0)" in err
    assert list(theirs.iterdir()) == []


def test_a_new_or_own_directory_gets_the_report(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a new name in the shared directory
    new = machine.shared / "mine" / "report"
    # When root writes the report there, Then it is made private and holds the report
    code, err = report(machine, new, capsys)
    assert code == ExitCode.OK, err
    for directory in (new, new.parent, new / "charts"):
        info = directory.lstat()
        assert stat.S_ISDIR(info.st_mode)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o700), directory
    assert (new / "audit_report.html").is_file()
    assert list((new / "charts").glob("*.svg"))
    # And a second report over it (an existing directory of root's) replaces the files,
    # never writing through a link that stands where a file will be
    (new / "audit_report.md").unlink()
    (new / "audit_report.md").symlink_to(machine.victim / "written")
    code, err = report(machine, new, capsys)
    assert code == ExitCode.OK, err
    assert not (new / "audit_report.md").is_symlink()
    assert list(machine.victim.iterdir()) == []
    assert sorted(p.name for p in new.iterdir()) == [
        "audit_report.html",
        "audit_report.md",
        "charts",
    ]


def test_a_link_of_root_on_the_way_is_followed(
    machine: Machine, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given root's own link on the way (as /var/run -> /run is)
    (machine.shared / "latest").symlink_to(machine.victim)
    # When root writes the report through it, Then the report is where the link points
    code, err = report(machine, machine.shared / "latest" / "report", capsys)
    assert code == ExitCode.OK, err
    assert (machine.victim / "report" / "audit_report.md").is_file()
