"""Signed checkpoints: a trail's head (record count and last hash), when, and who signed.

`swiftdeploy audit checkpoint` writes one; hand it to someone who keeps it (a ticket,
a release note, another machine). `swiftdeploy audit verify --checkpoint FILE` later
checks that the trail still holds that exact record at that position. Every hash
covers the one before it, so the records before it are then the same too; records
after it are fine. This is how certificate transparency's signed tree heads and
Rekor's checkpoints work, and it is the one check that holds against an attacker who
rolls the trail back, or deletes it, together with its head file.

A checkpoint is one line of canonical JSON: `format`, `trail` (the path it was made
from, for people), `count`, `head`, `ts`, `public_key` (`ed25519:` + base64 of the raw
key) and `signature` (base64 ed25519 over the canonical JSON of all the other fields).
The private key is `audit-signing.key` beside the audit HMAC key (0600). Checking a
checkpoint needs only the public key inside it; since anyone can make a key, compare
that key with one you trust: `--key`, or else the local signing key when there is one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swiftdeploy.audit.keys import SIGNING_KEY_FILE, KeyStore
from swiftdeploy.audit.records import canonical_bytes, is_hash, parse_json
from swiftdeploy.errors import AuditError, BadInputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FORMAT = "swiftdeploy-audit-checkpoint/v1"
KEY_PREFIX = "ed25519:"
_FIELDS = frozenset({"format", "trail", "count", "head", "ts", "public_key", "signature"})
_MAX_FILE = 65536
_PUBLIC_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class Checkpoint:
    trail: str
    count: int
    head: str
    ts: str
    public_key: str
    signature: str

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature, canonical."""
        return canonical_bytes(self._fields(signature=False))

    def to_text(self) -> str:
        return canonical_bytes(self._fields(signature=True)).decode("utf-8") + "\n"

    def to_dict(self) -> dict[str, Any]:
        return self._fields(signature=True)

    def _fields(self, *, signature: bool) -> dict[str, Any]:
        fields = {"format": FORMAT, **dataclasses.asdict(self)}
        if not signature:
            del fields["signature"]
        return fields


def create(keys: KeyStore, trail: Path, count: int, head: str, ts: str) -> Checkpoint:
    """A checkpoint of `head`, signed with the local signing key (made on first use)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def new_key() -> str:
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem.decode("ascii")

    private = _load_private(keys, keys.read(SIGNING_KEY_FILE, new_key))
    unsigned = Checkpoint(str(trail), count, head, ts, _public_text(private), "")
    signature = base64.b64encode(private.sign(unsigned.signed_bytes())).decode("ascii")
    return dataclasses.replace(unsigned, signature=signature)


def local_public_key(keys: KeyStore) -> str | None:
    """The local signing key's public half, or None when there is no signing key."""
    data = keys.read(SIGNING_KEY_FILE, None)
    return None if data is None else _public_text(_load_private(keys, data))


def parse_public_key(text: str) -> str:
    """`--key`: the `ed25519:...` a checkpoint carries; BadInputError when it is not one."""
    value = text.strip()
    if _raw_public_key(value) is None:
        raise BadInputError(
            f"--key {text!r} is not an ed25519 public key",
            hint=f"pass the {KEY_PREFIX}... value of a checkpoint's public_key",
        )
    return value


def load(file: Path) -> Checkpoint:
    """Read a checkpoint file; BadInputError when it is unreadable or not a checkpoint."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _not_a_checkpoint(file, "is not a regular file")
            data = os.read(fd, _MAX_FILE + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BadInputError(f"cannot read the checkpoint {file}: {exc.strerror}") from exc
    if len(data) > _MAX_FILE:
        raise _not_a_checkpoint(file, "is too large")
    try:
        fields = parse_json(data.strip())
    except ValueError as exc:
        raise _not_a_checkpoint(file, str(exc)) from None
    if not isinstance(fields, dict) or set(fields) != _FIELDS or fields["format"] != FORMAT:
        raise _not_a_checkpoint(file, f"is not a {FORMAT} object")
    count = fields["count"]
    texts = ("trail", "head", "ts", "public_key", "signature")
    if (
        not isinstance(count, int)
        or isinstance(count, bool)
        or count < 1
        or not all(isinstance(fields[name], str) for name in texts)
        or not is_hash(fields["head"])
    ):
        raise _not_a_checkpoint(file, "has a field of the wrong type")
    return Checkpoint(**{name: fields[name] for name in (*texts, "count")})


def signature_problem(checkpoint: Checkpoint, expected_key: str | None) -> str | None:
    """Why the checkpoint cannot be trusted (None when its signature holds and, when an
    expected key is given, it is that key's)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = _raw_public_key(checkpoint.public_key)
    if raw is None:
        return "its public_key is not an ed25519 public key"
    if expected_key is not None and checkpoint.public_key != expected_key:
        return f"it was signed by {checkpoint.public_key}, not by the expected key {expected_key}"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except binascii.Error:
        signature = b""
    if len(signature) != _SIGNATURE_BYTES:
        return "its signature is not an ed25519 signature"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, checkpoint.signed_bytes())
    except InvalidSignature:
        return "its signature does not match its content: it was changed after it was signed"
    return None


def _raw_public_key(text: str) -> bytes | None:
    if not text.startswith(KEY_PREFIX):
        return None
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
    except binascii.Error:
        return None
    return raw if len(raw) == _PUBLIC_KEY_BYTES else None


def _load_private(keys: KeyStore, data: bytes | None) -> Ed25519PrivateKey:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = keys.signing_key_path
    if data is None:  # only a concurrent `rm` between creating and reading it
        raise AuditError(f"the audit signing key {path} vanished as it was created")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditError(f"the audit signing key {path} cannot be loaded: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise AuditError(f"the audit signing key {path} is not an ed25519 key")
    return private


def _public_text(private: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def _not_a_checkpoint(file: Path, reason: str) -> BadInputError:
    return BadInputError(
        f"{file} is not an audit checkpoint: it {reason}",
        hint="pass a file `swiftdeploy audit checkpoint` wrote",
    )
