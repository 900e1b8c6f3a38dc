"""The registries find third parties' parts through entry points (tests/plugins holds a
distribution that registers one of each), and a client a runtime needs but this install
lacks is one line saying which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from bench.support.project import new_project

from swiftdeploy.errors import BadInputError, ExitCode, OperationalError
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.metrics import PROVIDERS, ProviderDeps, create_provider
from swiftdeploy.policy import create_engine, known_engines
from swiftdeploy.runtime import BACKENDS, backend
from swiftdeploy.runtime import local as local_runtime
from swiftdeploy.traffic import ROUTERS, create_router
from swiftdeploy.traffic.base import Routes

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def plugin_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # importlib.metadata finds distributions by the .dist-info directories on sys.path
    monkeypatch.syspath_prepend(str(PLUGINS))


@pytest.fixture
def loaded(short_tmp: Path) -> LoadedManifest:
    return load_manifest(new_project(short_tmp).manifest)  # short: supervisord's socket


def test_without_the_plugin_only_the_built_ins_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(PLUGINS)])
    assert BACKENDS.names() == ["local", "docker", "kubernetes"]
    assert ROUTERS.names() == ["nginx"]
    assert PROVIDERS.names() == ["scrape", "prometheus", "nginx"]
    assert known_engines() == ["embedded", "opa"]


def test_a_runtime_plugin_is_found_and_its_functions_run(loaded: LoadedManifest) -> None:
    assert BACKENDS.names() == ["local", "docker", "kubernetes", "example", "broken"]
    runtime = backend("example")
    assert runtime.__name__ == "swiftdeploy_example_plugin.runtime"  # type: ignore[attr-defined]
    # what `validate` runs: the plugin's own check after the local runtime's
    assert runtime.preflight(loaded)[-1] == "example runtime: demo"


def test_a_plugin_cannot_take_a_built_in_name() -> None:
    # the plugin registers "local" too; the built-in wins
    assert backend("local") is local_runtime


def test_a_router_plugin_is_found_and_routes(loaded: LoadedManifest) -> None:
    router = create_router("example", loaded.manifest, loaded.state_dir)
    router.apply(Routes(canary_weight=25, stable=("127.0.0.1:9001",), canary=("127.0.0.1:9002",)))
    assert router.name == "example"
    assert router.current().routes.canary_weight == 25


def test_a_metrics_provider_plugin_is_found_and_gets_its_deps(loaded: LoadedManifest) -> None:
    with httpx.Client() as client:
        deps = ProviderDeps(
            settings=loaded.manifest.metrics,
            app_targets=lambda track: [f"http://127.0.0.1:9001/metrics?{track}"],
            router_metrics=lambda track: "",
            router_history=lambda track, start, end: {},
            prometheus_url=lambda: "http://127.0.0.1:9090",
            client=client,
            min_requests=1,
            state_dir=loaded.state_dir,
        )
        measured = create_provider("example", deps).measure("canary", 10.0)
    assert measured.provider == "example"
    assert measured.detail == "would scrape http://127.0.0.1:9001/metrics?canary"


def test_a_policy_engine_plugin_is_found_and_decides(tmp_path: Path) -> None:
    assert known_engines() == ["embedded", "opa", "example"]
    engine = create_engine("example", directory=tmp_path / "policies")
    decision = engine.decide("swiftdeploy.canary", {})
    assert (decision.engine, decision.verdict, decision.allow) == ("example", "hold", False)
    assert decision.reasons[0].message == "swiftdeploy.canary from policies"


@pytest.mark.parametrize(
    ("lookup", "choices"),
    [
        (lambda: backend("nomad"), "local, docker, kubernetes, example, broken"),
        (lambda: ROUTERS.get("envoy"), "nginx, example"),
        (lambda: PROVIDERS.get("datadog"), "scrape, prometheus, nginx, example"),
        (lambda: create_engine("wasm", directory=Path()), "embedded, opa, example"),
    ],
)
def test_an_unknown_name_lists_built_ins_and_plugins(
    lookup: Callable[[], object], choices: str
) -> None:
    with pytest.raises(BadInputError) as raised:
        lookup()
    line = raised.value.one_line()
    assert f"choose one of: {choices}; a plugin adds one under the entry point group" in line


def test_a_plugin_that_does_not_import_is_one_operational_error() -> None:
    with pytest.raises(OperationalError, match=r"the runtime plugin 'broken' \(swiftdeploy_exam"):
        backend("broken")


# --- extras: `pip install swiftdeploy` is the local runtime --------------------------

# Runs the CLI with the docker and kubernetes clients refused, as in an install without
# the extras.
WITHOUT_EXTRAS = textwrap.dedent(
    """
    import sys

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {"docker", "kubernetes"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    sys.argv = ["swiftdeploy", *sys.argv[1:]]
    from swiftdeploy.cli import main

    main()
    """
)


@pytest.fixture
def project_dir(short_tmp: Path) -> Path:
    # a short path: supervisord's socket lives under it (unix sockets take 107 bytes)
    return new_project(short_tmp).root


def _without_extras(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, *args],
        cwd=project_dir,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_local_runtime_needs_neither_docker_nor_kubernetes(project_dir: Path) -> None:
    for args in (["--help"], ["validate"], ["doctor"]):
        done = _without_extras(project_dir, *args)
        assert "No module named" not in done.stderr
        assert "internal error" not in done.stderr
        if args != ["doctor"]:  # doctor's exit says whether this machine has nginx, ...
            assert done.returncode == 0, done.stderr


def test_runtime_docker_without_its_extra_is_one_line(project_dir: Path) -> None:
    manifest = project_dir / "swiftdeploy.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["runtime"] = "docker"
    del document["service"]["command"]
    document["service"]["image"] = "swiftdeploy-demo:{version}"
    manifest.write_text(yaml.safe_dump(document))
    done = _without_extras(project_dir, "validate")
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr == (
        "swiftdeploy: error: runtime docker needs the docker client, which this install"
        " lacks (pip install 'swiftdeploy[docker]')\n"
    )


def test_a_kubernetes_command_without_its_extra_is_one_line(project_dir: Path) -> None:
    # Given a runtime: kubernetes project (a local one is refused before any client)
    init = [sys.executable, "-m", "swiftdeploy.cli", "init", "--runtime", "kubernetes"]
    subprocess.run([*init, "--force"], cwd=project_dir, check=True, capture_output=True)
    done = _without_extras(project_dir, "kube", "rbac")
    assert done.returncode == ExitCode.BAD_INPUT
    assert done.stderr == (
        "swiftdeploy: error: runtime kubernetes needs the kubernetes client, which this"
        " install lacks (pip install 'swiftdeploy[kubernetes]')\n"
    )


def test_a_manifest_names_the_plugins_parts_and_validate_runs_its_runtime(
    project_dir: Path,
) -> None:
    # Given a manifest naming the plugin's runtime, metrics provider and policy engine
    manifest = project_dir / "swiftdeploy.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["runtime"] = "example"
    document["metrics"] = {"provider": "example"}
    document["policy"]["engine"] = "example"
    manifest.write_text(yaml.safe_dump(document))
    # Then it loads as written
    loaded = load_manifest(manifest)
    assert (loaded.manifest.runtime, loaded.manifest.metrics.provider) == ("example", "example")
    assert loaded.manifest.policy.engine == "example"
    # and `validate`, with the plugin installed, runs the plugin runtime's own check
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    done = subprocess.run(
        [sys.executable, "-m", "swiftdeploy.cli", "validate"],
        cwd=project_dir,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "example runtime: demo" in done.stdout + done.stderr, done.stderr


def test_a_manifest_naming_an_unknown_part_is_one_line_listing_the_plugins_too(
    project_dir: Path,
) -> None:
    manifest = project_dir / "swiftdeploy.yaml"
    document = yaml.safe_load(manifest.read_text())
    document["runtime"] = "nomad"
    manifest.write_text(yaml.safe_dump(document))
    with pytest.raises(BadInputError) as raised:
        load_manifest(manifest)
    line = raised.value.one_line()
    assert "unknown runtime 'nomad'; choose one of: local, docker, kubernetes, example" in line
    assert "\n" not in line
