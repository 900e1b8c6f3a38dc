"""One audit record on one line: its canonical form, its hash, and a strict reader.

A record's line is its canonical JSON: sorted keys, separators `,` and `:`, UTF-8, no
NaN or Infinity. Its `hash` is the SHA-256 of the canonical JSON of every field but
`hash` and `mac`. A reader accepts a line only when its bytes ARE the canonical form of
what they parse to, so the hash covers exactly the bytes on disk: no duplicate key, no
other spelling of a number or string, no extra space can carry a second meaning.

Everything that reads a record, a head or a checkpoint goes through `parse_json`, which
turns whatever a file holds (invalid UTF-8, NUL bytes, duplicate keys, NaN, numbers
too large for a float, nesting deeper than MAX_DEPTH) into a ValueError with a reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64
MAX_DEPTH = 64  # far deeper than any record the log writes; deep enough to stop a stack
# Fields outside the hash: the hash itself, and the MAC of the hash.
UNHASHED = frozenset({"hash", "mac"})
# The envelope a reader needs, with its JSON type (seq: an integer, never a bool).
REQUIRED = (("id", str), ("ts", str), ("kind", str), ("seq", int))

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


def canonical_bytes(value: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical JSON without its `hash` and `mac`."""
    body = {key: value for key, value in record.items() if key not in UNHASHED}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def is_hash(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


def is_canonical(value: Mapping[str, Any], raw: bytes) -> bool:
    """Whether `raw` is exactly the canonical JSON of `value`."""
    try:
        return canonical_bytes(value) == raw
    except ValueError:  # a lone surrogate cannot be written as UTF-8
        return False


def nesting_depth(value: object) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar); no recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


class _Refused(ValueError):
    """A value JSON allows in text but a record must not hold; the message says which."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Refused(f"has the key {key!r} twice")
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise _Refused(f"holds {name}, which is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"holds the number {text[:40]}, too large for a float")
    return value


def parse_json(raw: bytes) -> Any:
    """Parse strictly; raises ValueError whose message completes "it ..." (see above)."""
    try:
        # Decoded here: json.loads(bytes) would guess UTF-16 or UTF-32 from NUL bytes.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite
        )
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # int()'s limit on digits
        raise ValueError(f"is not valid JSON ({exc})") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise ValueError(f"is nested more than {MAX_DEPTH} levels deep")
    return value


def parse_record(raw: bytes) -> dict[str, Any]:
    """The record on one line (without its newline); ValueError saying what is wrong.

    Checks the form only (strict JSON, an object, canonical bytes, envelope types), not
    the hash or the MAC, so a caller can tell "not a record" from "changed".
    """
    record = parse_json(raw)
    if not isinstance(record, dict):
        raise ValueError("is not a JSON object")
    for key in ("hash", "prev_hash"):
        if not is_hash(record.get(key)):
            raise ValueError(f"has no valid {key} (64 lowercase hex digits)")
    if "mac" in record and not is_hash(record["mac"]):
        raise ValueError("has a mac that is not 64 lowercase hex digits")
    for key, kind in REQUIRED:
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"has no valid {key}")
    if not is_canonical(record, raw):
        raise ValueError(
            "is not in canonical form (sorted keys, no spaces, one spelling per value): "
            "it was not written by swiftdeploy"
        )
    return record
