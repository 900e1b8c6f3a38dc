"""Look records: a rollout's repeated holds, written relative to a full decision record.

The rollout engine looks every second or two, and most looks hold for the same reasons
with new numbers. Every look is still its own record, written before anything is done,
but a hold whose decision differs from the last full hold this process recorded only in
its numbers and its messages is a *look record*: its `decision` keeps the engine, the
package and the decision id, and `look` holds the rest relative to that full record,
named by its `seq` and `hash`:

* `numbers`: every number (or null) of the full record's decision, in its order (sorted
  keys, list order), with this look's values; the policy's settings (alpha, beta,
  detect, thresholds, the step's index, weight and durations) are not among them: they
  must be the full record's;
* `texts`: `[position, text]` for each message, note, detail or OPA decision id that
  changed (their position among those of the full record);
* the decision's `statistics`, `thresholds` and `step`, copies of the policy input's
  in a full record, are rebuilt from the input.

Anything else that differs (the step, the verdict, a reason's rule, a test's verdict,
the engine, the bundle, any field of the record) makes a full record again. The writer
rebuilds every look record before writing it and writes the full record instead if the
rebuilt decision is not byte for byte the one it was given, so `expand` gives back
exactly what a full record would have held. A record names its full record by `seq`
and `hash`, so the hash chain vouches for both and `verify` checks that the one named
is there, before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from swiftdeploy.audit.records import canonical_bytes

Record = dict[str, Any]
Path = tuple[str | int, ...]

LOOK = "look"
HOLD = "hold"  # the only action written as a look record: the engine's repeated one
IDENTITY = ("engine", "package", "decision_id")
MIRRORED = ("statistics", "thresholds", "step")
# The policy's settings: a change is no look at the same thing, so it makes a full record.
SETTINGS: tuple[Path, ...] = (
    ("input", "alpha"),
    ("input", "beta"),
    ("input", "detect"),
    ("input", "thresholds"),
    ("input", "step", "index"),
    ("input", "step", "weight"),
    ("input", "step", "min_duration_s"),
    ("input", "step", "max_duration_s"),
)
# Texts a look may change: the policy's and the statistics' words, and OPA's id of the
# decision (repeated in the policy's output).
TEXTS = frozenset({"message", "note", "detail", "decision_id"})


class Misfit(ValueError):
    """A decision that is not a look at the full record's frame, or a look record that
    cannot be rebuilt from the record it names."""


def same(a: object, b: object) -> bool:
    """Equal as written (1 == 1.0 == True in Python, but not on disk)."""
    return canonical_bytes({"v": a}) == canonical_bytes({"v": b})


def _number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _setting(path: Path) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in SETTINGS)


def _mirrored(decision: Mapping[str, Any]) -> list[str]:
    """The decision's keys that copy the policy input's key of the same name."""
    given = decision.get("input")
    if not isinstance(given, Mapping):
        return []
    return [k for k in MIRRORED if k in decision and k in given and same(decision[k], given[k])]


def _walked(decision: Mapping[str, Any], mirrored: list[str]) -> dict[str, Any]:
    return {k: v for k, v in decision.items() if k not in IDENTITY and k not in mirrored}


def _pairs(base: object, given: object, path: Path = ()) -> Iterator[tuple[Path, Any, Any]]:
    """(path, base leaf, given leaf) in order; Misfit when their shapes differ."""
    if isinstance(base, dict):
        if not isinstance(given, dict) or base.keys() != given.keys():
            raise Misfit(f"{'/'.join(map(str, path)) or 'the decision'} has other keys")
        for key in sorted(base):
            yield from _pairs(base[key], given[key], (*path, key))
    elif isinstance(base, list):
        if not isinstance(given, list) or len(base) != len(given):
            raise Misfit(f"{'/'.join(map(str, path))} has another length")
        for index, (a, b) in enumerate(zip(base, given, strict=True)):
            yield from _pairs(a, b, (*path, index))
    else:
        yield path, base, given


def _kind(path: Path, base_leaf: object) -> str:
    """`number`, `text` or `fixed`: what a leaf of the full record may be in a look."""
    if _number(base_leaf) and not _setting(path):
        return "number"
    if isinstance(base_leaf, str) and path and path[-1] in TEXTS:
        return "text"
    return "fixed"


def compact(base: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
    """The `decision` of a look record for `decision` against the full record `base`;
    Misfit when it is no look at the same frame. Both are JSON values as written."""
    full = base.get("decision")
    if not isinstance(full, Mapping) or LOOK in full:
        raise Misfit("the base is not a full decision record")
    for key in ("engine", "package"):
        if not same(full.get(key), decision.get(key)):
            raise Misfit(f"another {key}")
    mirrored = _mirrored(full)
    if _mirrored(decision) != mirrored:
        raise Misfit("the statistics, thresholds or step are not the input's")
    numbers: list[Any] = []
    texts: list[list[Any]] = []
    position = 0
    for path, was, now in _pairs(_walked(full, mirrored), _walked(decision, mirrored)):
        kind = _kind(path, was)
        if kind == "number" and _number(now):
            numbers.append(now)
        elif kind == "text" and isinstance(now, str):
            if now != was:
                texts.append([position, now])
            position += 1
        elif kind == "fixed" and same(was, now):
            continue
        else:
            raise Misfit(f"{'/'.join(map(str, path))} changed")
    return {
        "engine": decision.get("engine"),
        "package": decision.get("package"),
        "decision_id": decision.get("decision_id"),
        LOOK: {
            "base": {"seq": base.get("seq"), "hash": base.get("hash")},
            "numbers": numbers,
            "texts": texts,
        },
    }


def is_look(record: Mapping[str, Any]) -> bool:
    """A look record, not yet expanded."""
    decision = record.get("decision")
    return record.get("kind") == "decision" and isinstance(decision, Mapping) and LOOK in decision


def base_of(record: Mapping[str, Any]) -> tuple[object, object]:
    """(seq, hash) of the full record a look record names."""
    look = record["decision"][LOOK]
    base = look.get("base") if isinstance(look, Mapping) else None
    if not isinstance(base, Mapping):
        return None, None
    return base.get("seq"), base.get("hash")


def expand_decision(base: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """The full decision of look record `record`, from the full record `base` it names;
    Misfit when it cannot be rebuilt from it."""
    full = base.get("decision")
    if not isinstance(full, Mapping) or LOOK in full or base.get("action") != HOLD:
        raise Misfit(f"record {base.get('seq')} is not a full record of a hold")
    if base_of(record) != (base.get("seq"), base.get("hash")):
        raise Misfit(f"it names another record than {base.get('seq')}")
    look = record["decision"][LOOK]
    numbers, texts = look.get("numbers"), look.get("texts")
    if not isinstance(numbers, list) or not isinstance(texts, list):
        raise Misfit("its numbers or texts are not lists")
    changed: dict[int, str] = {}
    for item in texts:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], int)
            and not isinstance(item[0], bool)
            and isinstance(item[1], str)
        ):
            raise Misfit("a text is not [position, text]")
        changed[item[0]] = item[1]
    values = iter(numbers)
    mirrored = _mirrored(full)
    texts_seen = 0

    def rebuilt(value: object, path: Path) -> Any:
        nonlocal texts_seen
        if isinstance(value, dict):
            return {key: rebuilt(value[key], (*path, key)) for key in sorted(value)}
        if isinstance(value, list):
            return [rebuilt(item, (*path, index)) for index, item in enumerate(value)]
        kind = _kind(path, value)
        if kind == "number":
            now = next(values, _MISSING)
            if now is _MISSING or not _number(now):
                raise Misfit("its numbers do not fit the full record")
            return now
        if kind == "text":
            texts_seen += 1
            return changed.pop(texts_seen - 1, value)
        return value

    decision: dict[str, Any] = rebuilt(_walked(full, mirrored), ())
    if next(values, _MISSING) is not _MISSING or changed:
        raise Misfit("its numbers or texts do not fit the full record")
    decision.update({key: record["decision"].get(key) for key in IDENTITY})
    decision.update({key: decision["input"][key] for key in mirrored})
    return decision


_MISSING = object()


class Expander:
    """Gives each record back with a look record's full decision rebuilt in its
    `decision` (its `look` kept beside it), fed the records in trail order: for a
    reader that follows a trail. A look record whose full record was not fed, or does
    not fit it, comes back as it is (`verify` reports it)."""

    def __init__(self) -> None:
        self._bases: dict[int, Record] = {}  # full holds by seq: only they are named

    def __call__(self, record: Record) -> Record:
        if is_look(record):
            seq = base_of(record)[0]
            base = self._bases.get(seq) if isinstance(seq, int) else None
            if base is None:
                return record
            try:
                decision = expand_decision(base, record)
            except Misfit:
                return record
            return {**record, "decision": decision, LOOK: record["decision"][LOOK]}
        seq = record.get("seq")
        full_hold = (record.get("kind"), record.get("action")) == ("decision", HOLD)
        if full_hold and isinstance(seq, int):
            self._bases[seq] = record
        return record


def expand(records: Iterable[Record]) -> list[Record]:
    """The records, each look record with its full decision (see Expander)."""
    expander = Expander()
    return [expander(record) for record in records]
