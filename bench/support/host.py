"""Host thresholds for test and benchmark manifests.

`deploy`, `canary` and `rollout` first pass the infrastructure gate, which measures
this machine (disk free, load per core, memory available) against the manifest's
`policy.thresholds`. init's limits are the product's defaults; a test that is not
about the gate must not fail because the machine running it is busy (a load of 4.004
per core on a loaded CI host refused a deploy), so every test project gets limits no
real machine trips. The gate's own tests set the limits they test on top of these
(tests/e2e/test_gates.py) or inject the host's facts (tests/commands/test_gate.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# Limits no machine trips: any disk, any memory, a load per core far above any real one
# (the manifest allows up to 10,000).
GENEROUS_HOST_THRESHOLDS: dict[str, float] = {
    "min_disk_free_gb": 0,
    "max_load_per_core": 1000,
    "min_mem_available_pct": 0,
}


def generous_host_gate(manifest: Path) -> None:
    """Write GENEROUS_HOST_THRESHOLDS into the manifest at `manifest`. init's manifest
    keeps its text (comments, layout, line numbers): only the three values change, so
    tests that edit it as text still find what they look for. A manifest without those
    keys (e.g. the kubernetes tests' own) gets them under policy.thresholds."""
    manifest.write_text(with_generous_host_gate(manifest.read_text()))


def with_generous_host_gate(text: str) -> str:
    """`text`, a manifest, with GENEROUS_HOST_THRESHOLDS as its host limits."""
    relaxed = text
    for key, value in GENEROUS_HOST_THRESHOLDS.items():
        # `  key: value   # comment`: the value changes, indentation and comment stay
        pattern = re.compile(rf"^(?P<indent>[ \t]*){key}:[^#\n]*?(?P<rest>[ \t]*(#.*)?)$", re.M)
        if len(pattern.findall(relaxed)) != 1:
            return _merged(text)
        relaxed = pattern.sub(rf"\g<indent>{key}: {value:g}\g<rest>", relaxed)
    return relaxed


def _merged(text: str) -> str:
    data: dict[str, Any] = yaml.safe_load(text)
    policy = data.setdefault("policy", {})
    policy.setdefault("thresholds", {}).update(GENEROUS_HOST_THRESHOLDS)
    return yaml.safe_dump(data, sort_keys=False)
