"""`init_project`: the manifest for a runtime and the shipped policies written once;
an existing manifest kept unless forced, a policy a person edited kept too; bad
--runtime or --listen is bad input before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftdeploy.commands.init import copy_policies, init_project
from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import load_manifest


def test_the_manifest_and_the_policies_are_written_and_load(tmp_path: Path) -> None:
    written = init_project(tmp_path / "app", "127.0.0.1:18081", force=False, runtime="docker")
    manifest = tmp_path / "app" / "swiftdeploy.yaml"
    assert written[0] == manifest
    loaded = load_manifest(manifest).manifest
    assert (loaded.runtime, loaded.traffic.listen) == ("docker", "127.0.0.1:18081")
    policies = {p.name for p in written[1:]}
    assert {"canary.rego", "canary_test.rego"} <= policies
    assert policies == {p.name for p in (tmp_path / "app" / "policies").iterdir()}


def test_an_existing_manifest_is_kept_unless_forced(tmp_path: Path) -> None:
    init_project(tmp_path, "127.0.0.1:18081", force=False)
    manifest = tmp_path / "swiftdeploy.yaml"
    manifest.write_text(manifest.read_text() + "# mine\n")
    with pytest.raises(BadInputError, match="already exists"):
        init_project(tmp_path, "127.0.0.1:18082", force=False)
    assert manifest.read_text().endswith("# mine\n")
    init_project(tmp_path, "127.0.0.1:18082", force=True)
    assert load_manifest(manifest).manifest.traffic.listen == "127.0.0.1:18082"


def test_a_policy_a_person_changed_is_kept_unless_forced(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    copy_policies(policies, force=False)
    edited = policies / "canary.rego"
    edited.write_text(edited.read_text() + "# tuned\n")
    assert edited not in copy_policies(policies, force=False)
    assert edited.read_text().endswith("# tuned\n")
    assert edited in copy_policies(policies, force=True)
    assert not edited.read_text().endswith("# tuned\n")


@pytest.mark.parametrize(
    ("listen", "runtime", "said"),
    [
        ("127.0.0.1:18081", "nomad", "--runtime 'nomad' is not a runtime"),
        ("localhost", "local", "--listen 'localhost' is not HOST:PORT"),
        ("http://127.0.0.1:80", "local", "--listen 'http://127.0.0.1:80' is not HOST:PORT"),
    ],
)
def test_bad_options_write_nothing(tmp_path: Path, listen: str, runtime: str, said: str) -> None:
    with pytest.raises(BadInputError) as refused:
        init_project(tmp_path / "app", listen, force=False, runtime=runtime)
    assert refused.value.message == said
    assert not (tmp_path / "app").exists()


def test_the_manifest_may_be_named_and_the_policies_go_beside_it(tmp_path: Path) -> None:
    written = init_project(tmp_path, "127.0.0.1:18081", False, manifest=Path("conf/app.yaml"))
    assert written[0] == tmp_path / "conf" / "app.yaml"
    assert load_manifest(written[0]).manifest.traffic.listen == "127.0.0.1:18081"
    assert {p.parent for p in written[1:]} == {tmp_path / "conf" / "policies"}


@pytest.mark.parametrize(
    ("files", "directory", "said"),
    [
        (["app"], "app", "is a file, not a directory"),
        (["app"], "app/deeper", "is a file, not a directory"),
        (["policies"], ".", "policies is a file; the policies go in a directory of that name"),
    ],
)
def test_a_file_where_a_directory_goes_is_refused_before_anything_is_written(
    tmp_path: Path, files: list[str], directory: str, said: str
) -> None:
    for name in files:
        (tmp_path / name).write_text("mine\n")
    with pytest.raises(BadInputError, match=said):
        init_project(tmp_path / directory, "127.0.0.1:18081", force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == files
