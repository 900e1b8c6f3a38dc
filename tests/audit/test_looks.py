"""Look records: a hold that differs from its full record only in its numbers and
messages is written relative to it, and gives back exactly that decision; anything
else that differs is no look."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from swiftdeploy.audit.looks import Misfit, compact, expand, expand_decision, same
from swiftdeploy.audit.recorder import record_decision
from swiftdeploy.policy.base import CANARY
from tests.support.inputs import counts, ledger, policy_input

from .conftest import policy_engine

BASE_HASH = "ab" * 32


def decision_of_look(canary: int, errors: int, stable: int) -> dict[str, Any]:
    """A real decision record's `decision` (JSON, as written) for one look's counts."""
    captured: dict[str, Any] = {}

    class Capture:
        def record(self, kind: str, **fields: Any) -> None:
            captured.update(json.loads(json.dumps(fields)))

    given = policy_input(ledger(counts(canary, errors), counts(stable, stable // 200)))
    decision = policy_engine().decide(CANARY, given)
    record_decision(Capture(), decision, CANARY, given, {}, given["statistics"])
    return dict(captured["decision"])


def full_hold(decision: dict[str, Any], seq: int = 3) -> dict[str, Any]:
    return {"seq": seq, "hash": BASE_HASH, "kind": "decision", "action": "hold",
            "decision": decision}  # fmt: skip


def look_record(look: dict[str, Any]) -> dict[str, Any]:
    return {"seq": 9, "kind": "decision", "action": "hold", "decision": look}


def test_a_later_look_is_its_numbers_and_changed_messages() -> None:
    # Given the full record of a hold, and a later look at the same step with more requests
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    assert first["output"]["verdict"] == later["output"]["verdict"] == "hold"
    # When the later one is written relative to the first
    look = compact(full_hold(first), later)
    # Then it keeps who decided, names the full record, and holds the numbers
    assert {k: look[k] for k in ("engine", "package", "decision_id")} == {
        "engine": "embedded", "package": CANARY, "decision_id": None}  # fmt: skip
    assert look["look"]["base"] == {"seq": 3, "hash": BASE_HASH}
    assert 340 in look["look"]["numbers"]
    changed = [text for _, text in look["look"]["texts"]]
    assert changed
    assert all(isinstance(text, str) for text in changed)
    assert len(json.dumps(look)) < len(json.dumps(later)) / 2
    # And it gives back exactly the later decision, byte for byte
    assert same(expand_decision(full_hold(first), look_record(look)), later)


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
        compact(full_hold(base), later)


def test_a_look_that_does_not_fit_its_full_record_is_refused() -> None:
    base = full_hold(decision_of_look(300, 1, 1200))
    look = compact(base, decision_of_look(340, 1, 1360))
    short = copy.deepcopy(look)
    short["look"]["numbers"].pop()
    longer = copy.deepcopy(look)
    longer["look"]["numbers"].append(1)
    texts = copy.deepcopy(look)
    texts["look"]["texts"].append([999, "no such message"])
    named = copy.deepcopy(look)
    named["look"]["base"]["seq"] = 4
    for bad in (short, longer, texts, named):
        with pytest.raises(Misfit):
            expand_decision(base, look_record(bad))
    with pytest.raises(Misfit):  # only a hold's full record is a base
        expand_decision({**base, "action": "promote"}, look_record(look))


def test_expand_rebuilds_looks_in_trail_order_and_leaves_the_rest() -> None:
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    base = full_hold(first)
    look = look_record(compact(base, later))
    orphan = look_record(compact(full_hold(first, seq=2), later))
    other = {"seq": 10, "kind": "transition", "phase_after": "paused"}
    records = expand([base, look, orphan, other])
    assert records[0] is base
    assert records[3] is other
    assert same(records[1]["decision"], later)
    assert records[1]["look"] == look["decision"]["look"]  # still says it was a look
    assert records[2] is orphan  # its full record is not among them
    assert expand([look, base]) == [look, base]  # a look comes after its full record


def test_opa_decisions_each_with_its_own_id_are_looks() -> None:
    # OPA names every decision; its id is in the record's decision and the policy's output
    first, later = decision_of_look(300, 1, 1200), decision_of_look(340, 1, 1360)
    for decision, decision_id in ((first, "4f3c-1"), (later, "9a7e-2")):
        decision.update(engine="opa", decision_id=decision_id)
        decision["output"].update(engine="opa", decision_id=decision_id)
    look = compact(full_hold(first), later)
    assert look["decision_id"] == "9a7e-2"
    assert same(expand_decision(full_hold(first), look_record(look)), later)
