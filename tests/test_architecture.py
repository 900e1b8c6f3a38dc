"""The layers hold: no module imports from a layer above its own, nor from another
package of its own layer. The order is the one docs/architecture.md states."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "swiftdeploy"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """Unit (top-level module or package) -> layer, 0 at the bottom."""
    block = re.search(r"<!-- layers:.*?-->\s*```text\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/architecture.md lost its layers block"
    lines = [line.split() for line in block.group(1).strip().splitlines()]
    return {unit: len(lines) - 1 - i for i, line in enumerate(lines) for unit in line}


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__init__" else "swiftdeploy"


def _is_module(name: str) -> bool:
    return (SRC / f"{name}.py").exists() or (SRC / name).is_dir()


def _parse(path: Path) -> ast.Module:
    """`ast.parse`, once more on CPython 3.11's spurious "AST constructor recursion depth
    mismatch" (python/cpython#106905: a counter the threads other tests leave running in
    this worker can upset; a loaded clean-clone run hit it once). The walk is the test."""
    source = path.read_text()
    try:
        return ast.parse(source)
    except SystemError:
        return ast.parse(source)


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every swiftdeploy import, lazy or not."""
    found = []
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "swiftdeploy":  # `from swiftdeploy import proc, __version__`
                    names = [
                        f"swiftdeploy.{a.name}" if _is_module(a.name) else "swiftdeploy"
                        for a in node.names
                    ]
                else:
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [(module, n, node.lineno) for n in names if n.startswith("swiftdeploy")]
    return found


def test_every_unit_has_a_layer() -> None:
    known = layers()
    units = {unit_of(".".join(p.relative_to(SRC.parent).with_suffix("").parts))
             for p in SRC.rglob("*.py")}  # fmt: skip
    assert units - known.keys() == set(), "add these to the layers in docs/architecture.md"


def test_no_import_runs_up_or_sideways() -> None:
    level = layers()
    wrong = [
        f"{importer}:{line} imports {imported}"
        for importer, imported, line in imports()
        if unit_of(importer) != unit_of(imported)
        and level[unit_of(imported)] >= level[unit_of(importer)]
    ]
    assert wrong == []


def test_the_walk_sees_imports() -> None:
    # The check above is only as good as the walk: it must see lazy imports and
    # `from swiftdeploy import x` alike.
    found = {(unit_of(a), unit_of(b)) for a, b, _ in imports()}
    assert ("cli", "commands") in found
    assert ("runtime", "proc") in found  # `from swiftdeploy import proc`
    assert ("fleet", "policy") in found  # only imported inside a function


def imports_of_tests(root: Path) -> list[str]:
    """`file:line module` for every import of the tests package under `root`, lazy or not."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [
                f"{path.relative_to(root.parent)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] == "tests"
            ]
    return found


def test_bench_imports_nothing_of_tests() -> None:
    # bench/ runs on its own support (bench/support/, which the tests import): a
    # benchmark never depends on a test module, a fixture or pytest
    root = SRC.parents[1]
    assert imports_of_tests(root / "bench") == []
    # the walk does see imports of tests (here, in the tests themselves)
    assert any(f.endswith(" tests.conftest") for f in imports_of_tests(root / "tests"))
