"""Signed checkpoints: made from a trail that verifies, checked later against the trail
with only the public key inside (pinned to an expected key), and the one check that
holds when the trail is rolled back, or deleted, together with its head file."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from swiftdeploy.audit import checkpoint as checkpoints
from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.keys import KeyStore
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.commands.audit import make_checkpoint, verify_trail
from swiftdeploy.errors import AuditTamperedError, BadInputError
from tests.support.trails import write_trail

N = 10


@pytest.fixture
def trail(trail_path: Path) -> Path:
    return write_trail(trail_path, N)


def more(path: Path, count: int) -> None:
    log = AuditLog(path, 10_000_000, [])
    for i in range(count):
        log.append("command", n=f"more {i}")


def snapshot(path: Path, where: Path) -> None:
    where.mkdir()
    shutil.copy2(path, where / path.name)
    shutil.copy2(head_path(path), where / head_path(path).name)


def restore(path: Path, where: Path) -> None:
    shutil.copy2(where / path.name, path)
    shutil.copy2(where / head_path(path).name, head_path(path))


def test_a_checkpoint_names_the_head_and_is_signed(trail: Path, audit_keys: Path) -> None:
    checkpoint = make_checkpoint(trail)
    result = verify(trail)
    assert (checkpoint.count, checkpoint.head) == (N, result.head)
    assert checkpoint.trail == str(trail.resolve())
    assert checkpoint.public_key.startswith("ed25519:")
    assert checkpoints.signature_problem(checkpoint, checkpoint.public_key) is None

    key = audit_keys / "audit-signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert checkpoint.public_key == "ed25519:" + base64.b64encode(raw).decode()
    assert key.read_bytes() not in checkpoint.to_text().encode()
    assert make_checkpoint(trail).public_key == checkpoint.public_key  # one key, kept


def test_records_after_the_checkpoint_are_fine(trail: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept.json"
    kept.write_text(make_checkpoint(trail).to_text())
    more(trail, 4)

    result = verify_trail(trail, checkpoint_file=kept)
    assert result.ok, result.lines()
    assert result.records_after_checkpoint == 4
    assert result.checkpoint_line == f"{trail}:{N}"
    assert any("4 records follow it" in line for line in result.lines())


def test_a_rollback_of_trail_and_head_together_is_caught_only_by_a_checkpoint(
    trail: Path, tmp_path: Path
) -> None:
    """What the trail and its head cannot show: both put back to an older copy."""
    snapshot(trail, tmp_path / "old")
    more(trail, 5)
    checkpoint = make_checkpoint(trail)
    restore(trail, tmp_path / "old")

    assert verify(trail).ok  # consistent with itself: the limit the docstrings state
    result = verify(trail, checkpoint=checkpoint)
    assert not result.ok
    problem = result.checkpoint_problem
    assert problem is not None
    assert problem.code == "checkpoint_missing"
    assert f"the checkpoint names record {N + 5}" in problem.reason
    assert f"only {N} records verify" in problem.reason
    assert result.summary().startswith("audit trail does not contain the checkpoint")


def test_a_trail_deleted_with_its_head_is_caught_by_a_checkpoint(trail: Path) -> None:
    checkpoint = make_checkpoint(trail)
    trail.unlink()
    head_path(trail).unlink()
    more(trail, N + 2)  # a fresh chain, longer than the old one, as if nothing had happened

    assert verify(trail).ok
    problem = verify(trail, checkpoint=checkpoint).checkpoint_problem
    assert problem is not None
    assert problem.code == "checkpoint_missing"
    assert "is not the record the checkpoint names" in problem.reason


def test_a_changed_checkpoint_is_refused(trail: Path) -> None:
    checkpoint = make_checkpoint(trail)
    for changed in (
        dataclasses.replace(checkpoint, count=N - 1),
        dataclasses.replace(checkpoint, ts="2000-01-01T00:00:00.000Z"),
        dataclasses.replace(checkpoint, signature=checkpoint.signature[:-4] + "AAA="),
        dataclasses.replace(checkpoint, public_key="ed25519:short"),
    ):
        problem = verify(trail, checkpoint=changed).checkpoint_problem
        assert problem is not None
        assert problem.code == "checkpoint_invalid"


def test_a_checkpoint_from_another_signer(trail: Path, audit_keys: Path, tmp_path: Path) -> None:
    """Made with a key of its own, for the trail as it is: valid, but not ours."""
    theirs = KeyStore(tmp_path / "their-keys")
    result = verify(trail)
    assert result.head is not None
    forged = checkpoints.create(theirs, trail, result.records, result.head, "2030-01-01T00:00Z")
    assert checkpoints.signature_problem(forged, None) is None

    make_checkpoint(trail)  # now there is a local signing key to compare with
    problem = verify(trail, checkpoint=forged).checkpoint_problem
    assert problem is not None
    assert "not by the expected key" in problem.reason
    pinned = verify(trail, checkpoint=forged, signer=forged.public_key)
    assert pinned.ok


def test_without_a_key_to_compare_the_signer_is_a_warning(
    trail: Path, audit_keys: Path, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(trail)
    (audit_keys / "audit-signing.key").unlink()
    result = verify(trail, checkpoint=checkpoint)
    assert result.ok
    assert any("was not compared with a key you trust" in w for w in result.warnings)


def test_a_checkpoint_file_round_trips_and_garbage_is_bad_input(
    trail: Path, tmp_path: Path
) -> None:
    checkpoint = make_checkpoint(trail)
    kept = tmp_path / "kept.json"
    kept.write_text(checkpoint.to_text())
    assert checkpoints.load(kept) == checkpoint

    fields = json.loads(checkpoint.to_text())
    for content in (
        b"",
        b"\xff\x00",
        b"[" * 10_000,
        json.dumps({**fields, "count": float("nan")}).encode(),
        json.dumps({**fields, "count": "10"}).encode(),
        json.dumps({**fields, "extra": 1}).encode(),
        checkpoint.to_text().replace("{", '{"count":1,', 1).encode(),
    ):
        kept.write_bytes(content)
        with pytest.raises(BadInputError, match="is not an audit checkpoint"):
            checkpoints.load(kept)
    with pytest.raises(BadInputError, match="cannot read the checkpoint"):
        checkpoints.load(tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="is not an ed25519 public key"):
        checkpoints.parse_public_key("ed25519:bm90IGEga2V5")


def test_no_checkpoint_of_a_trail_that_does_not_verify(trail: Path) -> None:
    head_path(trail).unlink()
    with pytest.raises(AuditTamperedError, match="no head file"):
        make_checkpoint(trail)
