"""commands/schema.py: the manifest's JSON Schema is draft 2020-12, uses only its
keywords, describes every key, and accepts what `init` writes for every runtime (checked
with the jsonschema library, as an editor or a CI step would) while refusing a wrong one,
including what the models' cross-field validators refuse (`validate` and the schema agree)."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from swiftdeploy.cli import run
from swiftdeploy.commands.init import RUNTIMES, init_project
from swiftdeploy.commands.schema import DESCRIPTIONS, manifest_schema
from swiftdeploy.errors import ManifestError
from swiftdeploy.manifest import Manifest, load_manifest

# Every keyword of the 2020-12 vocabularies (core, applicator, validation, meta-data,
# format, content, unevaluated): `ge`/`le` and the like are not among them.
KEYWORDS = frozenset(
    [
        "$schema",
        "$id",
        "$ref",
        "$defs",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "$comment",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "prefixItems",
        "items",
        "contains",
        "properties",
        "patternProperties",
        "additionalProperties",
        "propertyNames",
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
        "title",
        "description",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "examples",
        "format",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
        "unevaluatedItems",
        "unevaluatedProperties",
    ]
)
# Under these the keys are names (of properties or definitions), not keywords.
NAMED = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas"})


def _nodes(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            if key in NAMED:
                for name, sub in value.items():
                    found += _nodes(sub, f"{path}/{key}/{name}")
            elif key not in {"default", "examples", "const", "enum"}:
                found += _nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _nodes(item, f"{path}/{index}")
    return found


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return manifest_schema()


def test_the_schema_is_draft_2020_12_and_well_formed(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_schema_uses_only_json_schema_keywords(schema: dict[str, Any]) -> None:
    unknown = {
        f"{path}: {key}" for path, node in _nodes(schema) for key in node if key not in KEYWORDS
    }
    assert not unknown, sorted(unknown)


def test_every_titled_node_is_described(schema: dict[str, Any]) -> None:
    bare = [
        path for path, node in _nodes(schema) if "title" in node and not node.get("description")
    ]
    assert not bare, bare


def test_every_description_names_a_real_key() -> None:
    models = {"Manifest": Manifest.model_json_schema(by_alias=True)}
    models.update(models["Manifest"]["$defs"])
    for key in DESCRIPTIONS:
        model, _, field = key.partition(".")
        assert model in models, key
        assert not field or field in models[model]["properties"], key


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_what_init_writes_validates_against_the_schema(
    runtime: str, schema: dict[str, Any], tmp_path: Path
) -> None:
    manifest = init_project(tmp_path, "127.0.0.1:18080", force=False, runtime=runtime)[0]
    data = yaml.safe_load(manifest.read_text())
    assert data["runtime"] == runtime
    errors = list(Draft202012Validator(schema).iter_errors(data))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("strategy", "canary", "analysis", "min_duration"), "soon"),  # not a duration
        (("strategy", "canary", "analysis", "max_duration"), -5),  # negative
        (("service", "replicas"), 0),  # below the minimum
        (("service", "nmae"), "demo"),  # an unknown key
        (("policy", "detect", "errors"), "1%"),  # not +N% or xN
    ],
)
def test_a_wrong_manifest_is_refused_by_the_schema(
    path: tuple[str, ...], value: object, schema: dict[str, Any], tmp_path: Path
) -> None:
    data = yaml.safe_load(init_project(tmp_path, "127.0.0.1:18080", False)[0].read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not Draft202012Validator(schema).is_valid(data)


@pytest.mark.parametrize("written", ["1m30s", "1h2m", 90, "manual"])
def test_a_duration_may_be_written_as_text_or_seconds(
    written: object, schema: dict[str, Any], tmp_path: Path
) -> None:
    data = yaml.safe_load(init_project(tmp_path, "127.0.0.1:18080", False)[0].read_text())
    data["strategy"]["canary"]["steps"][0]["pause"] = written
    assert Draft202012Validator(schema).is_valid(data)


def test_the_schema_command_prints_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    shipped = resources.files("swiftdeploy").joinpath("schemas", "manifest.v1.schema.json")
    # regenerate with: swiftdeploy schema > src/swiftdeploy/schemas/manifest.v1.schema.json
    assert printed == json.loads(shipped.read_text(encoding="utf-8"))


Edit = Callable[[dict[str, Any]], object]
SINK = {"name": "team", "kind": "webhook", "url": "https://hooks.example/team"}
HOOK = {"name": "gate", "type": "pre-rollout", "url": "https://hooks.example/gate"}
ENV_KEY = {"env": "SWIFTDEPLOY_SIGNING_KEY"}
KUBE_KEY = {"secret": "swiftdeploy", "key": "signing-key"}


def _edited(tmp_path: Path, runtime: str, edit: Edit) -> tuple[dict[str, Any], Path]:
    manifest = init_project(tmp_path, "127.0.0.1:18080", force=False, runtime=runtime)[0]
    data = yaml.safe_load(manifest.read_text())
    edit(data)
    manifest.write_text(yaml.safe_dump(data))
    return data, manifest


def _notify(
    sink: dict[str, Any] | None = None,
    hook: dict[str, Any] | None = None,
    key: dict[str, str] | None = None,
) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        data["notifications"] = {"signing_key": key, "sinks": [sink] if sink else []}
        data["hooks"] = [hook] if hook else []

    return edit


# What manifest.py's model validators (Manifest._runnable, _webhooks_signed) refuse.
P = pytest.param
CROSS_FIELD_WRONG = [
    P("local", lambda d: d["service"].pop("command"), id="local-no-command"),
    P("local", lambda d: (d.pop("runtime"), d["service"].pop("command")), id="default-no-command"),
    P("local", lambda d: d["service"].update(command=None, image="a:{version}"), id="local-null"),
    P("local", lambda d: d["service"]["env"].update(PORT="9000"), id="local-env-port"),
    P("docker", lambda d: d["service"].pop("image"), id="docker-no-image"),
    P("kubernetes", lambda d: d["service"].pop("image"), id="kube-no-image"),
    P("kubernetes", lambda d: d["metrics"].update(provider="nginx"), id="kube-nginx-metrics"),
    P("kubernetes", lambda d: d["metrics"]["prometheus"].pop("url"), id="kube-no-prom-url"),
    P("kubernetes", lambda d: d["metrics"]["prometheus"].update(url=""), id="kube-empty-url"),
    P("local", _notify(sink=SINK), id="sink-unsigned"),
    P("docker", _notify(hook=HOOK), id="hook-unsigned"),
    P("docker", lambda d: d.update(hooks=[HOOK]), id="hook-no-notifications"),
    P("local", _notify(sink=SINK, key=KUBE_KEY), id="local-kube-signing-key"),
    P("docker", _notify(hook={**HOOK, "url": KUBE_KEY}, key=ENV_KEY), id="docker-kube-url"),
    P("local", _notify(sink={**SINK, "headers": {"X": KUBE_KEY}}, key=ENV_KEY), id="kube-header"),
]
CROSS_FIELD_RIGHT = [
    P("local", lambda d: d.pop("runtime"), id="default-with-command"),
    P("local", _notify(sink=SINK, key=ENV_KEY), id="local-env-key"),
    P("kubernetes", _notify(hook=HOOK, key=KUBE_KEY), id="kube-secret-key"),
    P("kubernetes", _notify(hook={**HOOK, "url": KUBE_KEY}, key=ENV_KEY), id="kube-secret-url"),
]


@pytest.mark.parametrize(("runtime", "edit"), CROSS_FIELD_WRONG)
def test_what_validate_refuses_across_fields_the_schema_refuses(
    runtime: str, edit: Edit, schema: dict[str, Any], tmp_path: Path
) -> None:
    data, manifest = _edited(tmp_path, runtime, edit)
    with pytest.raises(ManifestError):
        load_manifest(manifest)
    assert not Draft202012Validator(schema).is_valid(data)


@pytest.mark.parametrize(("runtime", "edit"), CROSS_FIELD_RIGHT)
def test_what_validate_accepts_across_fields_the_schema_accepts(
    runtime: str, edit: Edit, schema: dict[str, Any], tmp_path: Path
) -> None:
    data, manifest = _edited(tmp_path, runtime, edit)
    load_manifest(manifest)
    errors = list(Draft202012Validator(schema).iter_errors(data))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
