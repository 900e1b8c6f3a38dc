"""Looks: a hold that differs from its full record only in its numbers and messages is
written relative to it, several in one record, and gives back exactly that decision;
anything else that differs is no look."""

from __future__ import annotations

import base64
import copy
import json
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from swiftdeploy.audit.looks import (
    KEPT_BASES,
    Expander,
    Misfit,
    compact,
    expand,
    expand_record,
    label,
    pack,
    rebuild,
    same,
    unpack,
)
from swiftdeploy.audit.recorder import record_decision
from swiftdeploy.policy.base import CANARY
from tests.support.inputs import counts, ledger, policy_input
from tests.support.trails import policy_engine

BASE_HASH = "ab" * 32
TS = "2026-12-07T10:00:01.000Z"


def decision_of_look(canary: int, errors: int, stable: int) -> dict[str, Any]:
    """A real decision record's `decision` (JSON, as written) for one look's counts."""
    captured: dict[str, Any] = {}

    class Capture:
        def record(self, kind: str, **fields: Any) -> None:
            captured.update(json.loads(json.dumps(fields)))

        def flush(self) -> None:
            pass

    given = policy_input(ledger(counts(canary, errors), counts(stable, stable // 200)))
    decision = policy_engine().decide(CANARY, given)
    record_decision(Capture(), decision, CANARY, given, {}, given["statistics"])
    return dict(captured["decision"])


def full_hold(decision: dict[str, Any], seq: int = 3) -> dict[str, Any]:
    return {"seq": seq, "hash": BASE_HASH, "kind": "decision", "action": "hold",
            "decision": decision}  # fmt: skip


def looks_record(decision: dict[str, Any], seq: int = 9) -> dict[str, Any]:
    return {"seq": seq, "id": "r9", "ts": TS, "kind": "decision", "action": "hold",
            "rollout_id": "r1", "decision": decision}  # fmt: skip


def later_looks(n: int) -> list[dict[str, Any]]:
    """The decisions of `n` looks after decision_of_look(300, 1, 1200), 5 requests apart."""
    return [decision_of_look(300 + 5 * i, 1, 1200 + 20 * i) for i in range(1, n + 1)]


def test_a_later_look_is_its_numbers_and_changed_messages() -> None:
    # Given the full record of a hold, and a later look at the same step with more requests
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    assert first["output"]["verdict"] == later["output"]["verdict"] == "hold"
    # When the later one is taken relative to the first
    look = compact(full_hold(first), later, TS)
    # Then it holds its time, its decision id, its numbers and the messages that changed
    assert (look["ts"], look["decision_id"]) == (TS, None)
    assert 340 in look["numbers"]
    changed = [text for _, text in look["texts"]]
    assert changed
    assert all(isinstance(text, str) for text in changed)
    assert len(json.dumps(look)) < len(json.dumps(later)) / 2
    # And it gives back exactly the later decision, byte for byte
    assert same(rebuild(full_hold(first), look), later)


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(decision: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = decision
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set("input/alpha", 0.05),
        _set("input/thresholds/max_error_rate", 0.02),
        _set("input/step/weight", 25),
        _set("input/step/index", 1),
        _set("output/verdict", "promote"),
        _set("output/reasons/0/rule", "min_duration"),
        _set("input/statistics/errors/verdict", "pass"),
        _set("input/statistics/errors/passed_by", "power"),
        _set("engine", "opa"),
        _set("package", "swiftdeploy.other"),
        _set("input/canary/status", "no_data"),
        _set("input/canary/healthy", False),
        _set("input/canary/requests", True),
        _set("input/extra", 1),
        lambda d: d["output"]["reasons"].pop(),
        lambda d: d["statistics"].update(errors={}),  # no longer the input's statistics
    ],
    ids=lambda change: getattr(change, "__qualname__", "change"),
)
def test_anything_but_numbers_and_messages_is_no_look(
    change: Callable[[dict[str, Any]], None],
) -> None:
    base = decision_of_look(300, 1, 1200)
    later = copy.deepcopy(base)
    change(later)
    with pytest.raises(Misfit):
        compact(full_hold(base), later, TS)


def test_a_look_that_does_not_fit_its_full_record_is_refused() -> None:
    base = full_hold(decision_of_look(300, 1, 1200))
    look = compact(base, decision_of_look(340, 1, 1360), TS)
    short = copy.deepcopy(look)
    short["numbers"].pop()
    longer = copy.deepcopy(look)
    longer["numbers"].append(1)
    texts = copy.deepcopy(look)
    texts["texts"].append([999, "no such message"])
    for bad in (short, longer, texts):
        with pytest.raises(Misfit):
            rebuild(base, bad)
    with pytest.raises(Misfit):  # only a hold's full record is a base
        rebuild({**base, "action": "promote"}, look)


def test_looks_packed_in_one_record_give_back_each_decision() -> None:
    # Given a full hold and twelve later looks at it, a second apart
    first, decisions = decision_of_look(300, 1, 1200), later_looks(12)
    base = full_hold(first)
    taken = [compact(base, d, f"2026-12-07T10:00:{i:02}.000Z") for i, d in enumerate(decisions)]
    # When they are packed into one record's decision
    packed = pack(base, taken)
    # Then it names its full record and holds the looks, far smaller than in full
    assert packed["looks"]["base"] == {"seq": 3, "hash": BASE_HASH}
    assert packed["looks"]["count"] == 12
    assert (packed["engine"], packed["package"]) == ("embedded", CANARY)
    assert len(json.dumps(packed)) < sum(len(json.dumps(d)) for d in decisions) / 10
    assert same(unpack(packed), taken)
    # And the record expands to twelve records, each as its full record would have been
    record = looks_record(packed)
    got = expand_record(base, record)
    assert [same(r["decision"], d) for r, d in zip(got, decisions, strict=True)] == [True] * 12
    assert [r["ts"] for r in got] == [look["ts"] for look in taken]
    assert [r["id"] for r in got] == [f"r9.{i}" for i in range(1, 13)]
    assert [label(r) for r in got] == [f"9.{i}" for i in range(1, 13)]
    assert all(r["seq"] == 9 and r["rollout_id"] == "r1" for r in got)
    assert label(base) == 3


def test_expand_rebuilds_looks_in_trail_order_and_leaves_the_rest() -> None:
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    base = full_hold(first)
    look = looks_record(pack(base, [compact(base, later, TS)]))
    orphan = looks_record(pack(full_hold(first, seq=2), [compact(base, later, TS)]), seq=10)
    other = {"seq": 11, "kind": "transition", "phase_after": "paused"}
    records = expand([base, look, orphan, other])
    assert len(records) == 4
    assert records[0] is base
    assert records[3] is other
    assert same(records[1]["decision"], later)
    assert records[1]["looks"] == {"seq": 9, "index": 1, "count": 1}  # still says it was a look
    assert records[2] is orphan  # its full record is not among them
    assert expand([look, base]) == [look, base]  # a look comes after its full record


def _repacked(payload: bytes) -> Callable[[dict[str, Any]], None]:
    def change(looks: dict[str, Any]) -> None:
        looks["zlib"] = base64.b64encode(payload).decode()

    return change


def _payload(decision: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        zlib.decompress(base64.b64decode(decision["looks"]["zlib"]))
    )
    return loaded


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda looks: looks.update(zlib="not base64!"), "not zlib in base64"),
        (_repacked(b"plain text"), "not zlib in base64"),
        (_repacked(zlib.compress(b"{}") + b"more"), "followed by more"),
        (_repacked(zlib.compress(b"{}")[:-3]), "cut short"),
        (_repacked(zlib.compress(b" " * (17 << 20))), "unpack to too much"),
        (_repacked(zlib.compress(b'{"ts": []}')), "not canonical JSON"),
        (_repacked(zlib.compress(b'{"a":1,"a":2}')), "not JSON"),
        (_repacked(zlib.compress(b'{"ts":[]}')), "not {ts, decision_id, numbers, texts}"),
        (lambda looks: looks.update(count=3), "are not 3"),
        (lambda looks: looks.update(count=0), "not a positive number"),
        (lambda looks: looks.update(zlib=None), "not a text"),
    ],
    ids=[
        "base64",
        "zlib",
        "more",
        "short",
        "bomb",
        "spaces",
        "twice",
        "keys",
        "count",
        "0",
        "null",
    ],
)
def test_a_damaged_looks_record_is_refused(
    change: Callable[[dict[str, Any]], None], says: str
) -> None:
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    base = full_hold(first)
    packed = pack(base, [compact(base, later, TS), compact(base, later, TS)])
    assert set(_payload(packed)) == {"ts", "decision_id", "numbers", "texts"}
    change(packed["looks"])
    with pytest.raises(Misfit, match=says):
        expand_record(base, looks_record(packed))
    assert expand([base, looks_record(packed)])[1]["decision"] is packed  # left as it is


def test_a_looks_record_at_another_record_or_engine_is_refused() -> None:
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    base = full_hold(first)
    packed = pack(base, [compact(base, later, TS)])
    with pytest.raises(Misfit, match="names another record"):
        expand_record(full_hold(first, seq=4), looks_record(packed))
    with pytest.raises(Misfit, match="engine"):
        expand_record(base, looks_record({**packed, "engine": "opa"}))


def test_opa_decisions_each_with_its_own_id_are_looks() -> None:
    # OPA names every decision; its id is in the record's decision and the policy's output
    first, *later = [decision_of_look(300 + 5 * i, 1, 1200 + 20 * i) for i in range(3)]
    for n, decision in enumerate([first, *later]):
        decision.update(engine="opa", decision_id=f"4f3c-{n}")
        decision["output"].update(engine="opa", decision_id=f"4f3c-{n}")
    base = full_hold(first)
    taken = [compact(base, decision, TS) for decision in later]
    assert [look["decision_id"] for look in taken] == ["4f3c-1", "4f3c-2"]
    got = expand_record(base, looks_record(pack(base, taken)))
    assert [same(r["decision"], d) for r, d in zip(got, later, strict=True)] == [True, True]


def test_a_reader_keeps_the_latest_full_records_only() -> None:
    # A follower of a trail of years keeps KEPT_BASES full holds, the latest
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    bases = [full_hold(first, seq=seq) for seq in range(1, KEPT_BASES + 2)]
    oldest, newest = bases[0], bases[-1]
    at = {
        base["seq"]: looks_record(pack(base, [compact(base, later, TS)]), seq=1000 + base["seq"])
        for base in (oldest, newest)
    }
    expander = Expander()
    for base in bases:
        assert expander(base) == [base]
    assert expander(at[oldest["seq"]]) == [at[oldest["seq"]]]  # left as it is
    (got,) = expander(at[newest["seq"]])
    assert same(got["decision"], later)
