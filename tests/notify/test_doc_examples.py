"""Every YAML example of notifications or hooks in docs/notifications.md and README.md
validates as written, on the runtime it says it is for (a first line `# runtime:
kubernetes`, else init's local manifest): the examples cannot drift from the schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.support.sim import init_manifest

from swiftdeploy.commands.validate import notification_checks

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "docs" / "notifications.md", ROOT / "README.md"]
# what runtime: kubernetes needs besides (init writes a local manifest)
KUBERNETES = {
    "runtime": "kubernetes",
    "service.image": "demo:{version}",
    "metrics.provider": "prometheus",
    "metrics.prometheus.url": "http://prometheus:9090",
}


def examples() -> Iterator[Any]:
    for document in DOCUMENTS:
        text = document.read_text()
        for block in re.finditer(r"^```yaml\n(.*?)^```", text, re.M | re.S):
            data = yaml.safe_load(block[1])
            if isinstance(data, dict) and {"notifications", "hooks"} & data.keys():
                line = text[: block.start()].count("\n") + 1
                runtime = "kubernetes" if block[1].startswith("# runtime: kubernetes") else "local"
                yield pytest.param(data, runtime, id=f"{document.name}:{line}:{runtime}")


EXAMPLES = list(examples())


def test_the_examples_are_found() -> None:
    # the notifications and hooks examples of the docs, and README's
    assert len(EXAMPLES) >= 4, [example.id for example in EXAMPLES]


@pytest.mark.parametrize(("example", "runtime"), EXAMPLES)
def test_an_example_validates_as_written(
    tmp_path: Path, example: dict[str, Any], runtime: str
) -> None:
    settings = KUBERNETES if runtime == "kubernetes" else {}
    # loading raises, in one line, on anything the schema refuses
    loaded = init_manifest(tmp_path, **settings, **example)
    notification_checks(loaded)  # events patterns this version writes
    assert loaded.manifest.runtime == runtime
