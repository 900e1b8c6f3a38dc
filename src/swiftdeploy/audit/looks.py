"""Looks records: a rollout's repeated holds, several to a record, relative to a full one.

The rollout engine looks every second or two, and most looks hold for the same reasons
with new numbers. The first hold of a kind is written in full; a later hold that
differs from that full record only in its numbers and its messages is a *look*:

* `numbers`: every number (or null) of the full record's decision, in its order (sorted
  keys, list order), with this look's values; the policy's settings (alpha, beta,
  detect, thresholds, the step's index, weight and durations) are not among them: they
  must be the full record's;
* `texts`: `[position, text]` for each message, note, detail or OPA decision id that
  changed (their position among those of the full record);
* `decision_id` and `ts`: the look's own;
* the decision's `statistics`, `thresholds` and `step`, copies of the policy input's
  in a full record, are rebuilt from the input.

Anything else that differs (the step, the verdict, a reason's rule, a test's verdict,
the engine, the bundle, any field of the record) makes a full record again.

The recorder holds looks back for up to FLUSH_S and writes them as ONE record, kind
`decision` and action `hold` as the full record's, whose `decision.looks` names the
full record by `seq` and `hash` (so the hash chain vouches for both, and `verify`
checks the one named is there, before it) and holds the looks in `zlib`: the base64 of
the zlib-compressed canonical JSON of `{"ts": [..], "decision_id": [..], "numbers":
[[..], ..], "texts": [[..], ..]}`, one entry per look, `numbers` by column (the
values of one number in every look, side by side). Consecutive looks repeat most of
what they hold (the thresholds and settings, the counts that did not move, a message
but for a number in it), and that is what compression removes: a delta of the changed
numbers alone would be larger than this, as 85 of a look's 131 numbers change at every
look (counts, histogram buckets, quantiles, e-values).

The writer rebuilds every look and the record it packs them into before writing it,
and writes them in full instead if they do not give back byte for byte the decisions
it was given, so `expand` gives back exactly what full records would have held. A
reader shows look `i` (from 1) of the record with seq `s` as `s.i`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from swiftdeploy.audit.records import canonical_bytes, parse_json
from swiftdeploy.audit.vocabulary import HOLD

Record = dict[str, Any]
Look = dict[str, Any]  # {"ts", "decision_id", "numbers", "texts"}
Path = tuple[str | int, ...]

LOOKS = "looks"  # only holds (HOLD, the engine's repeated action) are written as looks
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
# The full holds a reader keeps to rebuild looks from: a recorder's looks name its last
# one, and a trail has one rollout at a time, so only the latest few are ever named.
KEPT_BASES = 64
# What a looks record may unpack to: far more than the writer's MAX_LOOKS looks hold,
# little enough that a crafted record cannot exhaust a reader's memory.
MAX_PACKED = 16 << 20


class Misfit(ValueError):
    """A decision that is not a look at the full record's frame, or a looks record that
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


def _full_hold(base: Mapping[str, Any]) -> Mapping[str, Any]:
    """The decision of a full record of a hold; Misfit for any other record."""
    full = base.get("decision")
    if not isinstance(full, Mapping) or LOOKS in full or base.get("action") != HOLD:
        raise Misfit(f"record {base.get('seq')} is not a full record of a hold")
    return full


def compact(base: Mapping[str, Any], decision: Mapping[str, Any], ts: str) -> Look:
    """The look `decision`, taken at `ts`, against the full record `base`; Misfit when
    it is no look at the same frame. Both are JSON values as written."""
    full = _full_hold(base)
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
    return {"ts": ts, "decision_id": decision.get("decision_id"), "numbers": numbers,
            "texts": texts}  # fmt: skip


def _changed_texts(texts: object) -> dict[int, str]:
    if not isinstance(texts, list):
        raise Misfit("its texts are not a list")
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
    return changed


def rebuild(base: Mapping[str, Any], look: Look) -> dict[str, Any]:
    """The full decision of `look` from the full record `base`; Misfit when it cannot be
    rebuilt from it."""
    full = _full_hold(base)
    numbers = look.get("numbers")
    if not isinstance(numbers, list):
        raise Misfit("its numbers are not a list")
    changed = _changed_texts(look.get("texts"))
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
    decision.update(engine=full.get("engine"), package=full.get("package"),
                    decision_id=look.get("decision_id"))  # fmt: skip
    decision.update({key: decision["input"][key] for key in mirrored})
    return decision


_MISSING = object()


# --- several looks in one record ------------------------------------------------------


def pack(base: Mapping[str, Any], looks: Sequence[Look]) -> dict[str, Any]:
    """The `decision` of the record that holds `looks` (at least one), all at `base`."""
    full = _full_hold(base)
    payload = {
        "ts": [look["ts"] for look in looks],
        "decision_id": [look["decision_id"] for look in looks],
        "numbers": [
            list(column) for column in zip(*(look["numbers"] for look in looks), strict=True)
        ],
        "texts": [look["texts"] for look in looks],
    }
    data = base64.b64encode(zlib.compress(canonical_bytes(payload), 9)).decode("ascii")
    return {
        "engine": full.get("engine"),
        "package": full.get("package"),
        LOOKS: {
            "base": {"seq": base.get("seq"), "hash": base.get("hash")},
            "count": len(looks),
            "zlib": data,
        },
    }


def unpack(decision: Mapping[str, Any]) -> list[Look]:
    """The looks a record's `decision` holds (see `pack`); Misfit when it holds none."""
    packed = decision.get(LOOKS)
    if not isinstance(packed, Mapping):
        raise Misfit("it holds no looks")
    count, data = packed.get("count"), packed.get("zlib")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise Misfit("its count of looks is not a positive number")
    if not isinstance(data, str):
        raise Misfit("its looks are not a text")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(base64.b64decode(data, validate=True), MAX_PACKED)
    except (binascii.Error, zlib.error) as exc:
        raise Misfit(f"its looks are not zlib in base64 ({exc})") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise Misfit("its looks are cut short, unpack to too much, or are followed by more")
    try:
        payload = parse_json(raw)
    except ValueError as exc:
        raise Misfit(f"its looks are not JSON: it {exc}") from None
    if not isinstance(payload, dict) or canonical_bytes(payload) != raw:
        raise Misfit("its looks are not canonical JSON")
    return _rows(payload, count)


def _rows(payload: dict[str, Any], count: int) -> list[Look]:
    """The looks, one a row, of `pack`'s payload (numbers by column)."""
    if set(payload) != {"ts", "decision_id", "numbers", "texts"}:
        raise Misfit("its looks are not {ts, decision_id, numbers, texts}")
    ts, ids, columns, texts = (payload[k] for k in ("ts", "decision_id", "numbers", "texts"))
    if not isinstance(columns, list):
        raise Misfit("its looks' numbers are not a list")
    named = [("ts", ts), ("decision_id", ids), ("texts", texts)]
    for key, items in (*named, *(("numbers", column) for column in columns)):
        if not isinstance(items, list) or len(items) != count:
            raise Misfit(f"its looks' {key} are not {count}")
    if not all(isinstance(at, str) for at in ts):
        raise Misfit("a look's time is not a text")
    return [
        {
            "ts": ts[index],
            "decision_id": ids[index],
            "texts": texts[index],
            "numbers": [column[index] for column in columns],
        }
        for index in range(count)
    ]


def is_look(record: Mapping[str, Any]) -> bool:
    """A looks record, not yet expanded."""
    decision = record.get("decision")
    return record.get("kind") == "decision" and isinstance(decision, Mapping) and LOOKS in decision


def base_of(record: Mapping[str, Any]) -> tuple[object, object]:
    """(seq, hash) of the full record a looks record names."""
    packed = record["decision"][LOOKS]
    base = packed.get("base") if isinstance(packed, Mapping) else None
    if not isinstance(base, Mapping):
        return None, None
    return base.get("seq"), base.get("hash")


def expand_record(base: Mapping[str, Any], record: Mapping[str, Any]) -> list[Record]:
    """The looks of looks record `record`, each as the full decision record it would have
    been (the envelope the record's, but `ts`, and `id` that of the record with `.i`),
    from the full record `base` it names; Misfit when they cannot be rebuilt from it."""
    full = _full_hold(base)
    if base_of(record) != (base.get("seq"), base.get("hash")):
        raise Misfit(f"it names another record than {base.get('seq')}")
    for key in ("engine", "package"):
        if not same(record["decision"].get(key), full.get(key)):
            raise Misfit(f"its {key} is not the full record's")
    held = unpack(record["decision"])
    envelope = {key: value for key, value in record.items() if key != "decision"}
    return [
        {
            **envelope,
            "id": f"{record.get('id')}.{index}",
            "ts": look["ts"],
            "decision": rebuild(base, look),
            LOOKS: {"seq": record.get("seq"), "index": index, "count": len(held)},
        }
        for index, look in enumerate(held, start=1)
    ]


def label(record: Mapping[str, Any]) -> object:
    """How a reader names a record: its `seq`, or `seq.i` for look i of a looks record."""
    where = record.get(LOOKS)
    if isinstance(where, Mapping) and "index" in where:
        return f"{where.get('seq')}.{where.get('index')}"
    return record.get("seq")


class Expander:
    """Gives each record back as the records it stands for, a looks record as its looks
    in full, fed the records in trail order: for a reader that follows a trail. A looks
    record whose full record was not fed, or does not fit it, comes back as it is
    (`verify` reports it)."""

    def __init__(self) -> None:
        self._bases: dict[int, Record] = {}  # recent full holds by seq: only they are named

    def __call__(self, record: Record) -> list[Record]:
        if is_look(record):
            seq = base_of(record)[0]
            base = self._bases.get(seq) if isinstance(seq, int) else None
            if base is None:
                return [record]
            try:
                return expand_record(base, record)
            except Misfit:
                return [record]
        seq = record.get("seq")
        full_hold = (record.get("kind"), record.get("action")) == ("decision", HOLD)
        if full_hold and isinstance(seq, int):
            self._bases[seq] = record
            if len(self._bases) > KEPT_BASES:  # a follower of a trail of years
                del self._bases[next(iter(self._bases))]
        return [record]


def expand(records: Iterable[Record]) -> list[Record]:
    """The records, each looks record as its looks in full (see Expander)."""
    expander = Expander()
    return [expanded for record in records for expanded in expander(record)]
