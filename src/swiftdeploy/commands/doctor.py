"""`swiftdeploy doctor`: versions and health of every part SwiftDeploy drives."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from swiftdeploy import __version__
from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import LoadedManifest, Manifest
from swiftdeploy.proc import version_of
from swiftdeploy.runtime import backend
from swiftdeploy.runtime.base import Check
from swiftdeploy.tools import find_opa

LUA_MODULE = Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")
# The built-in runtimes nginx does not route (their NGINX_ROUTED is False): said here for
# when a runtime's module cannot load without its client (tests/commands/test_doctor.py
# checks it against the modules).
CLUSTER_ROUTED = frozenset({"kubernetes"})


def run_checks(loaded: LoadedManifest | None) -> list[Check]:
    """The parts of the manifest's runtime (the default one without a manifest), then
    the tools every runtime uses. A runtime whose client (an extra) is not installed is
    one failing line saying which extra to install, and the other lines still follow."""
    name = loaded.manifest.runtime if loaded else Manifest.model_fields["runtime"].default
    checks = [Check("swiftdeploy", True, f"{__version__} on Python {sys.version.split()[0]}")]
    try:
        runtime = backend(name)
    except BadInputError as exc:  # registry.missing_extra: `pip install 'swiftdeploy[...]'`
        if name not in CLUSTER_ROUTED:
            checks += _nginx_checks()
        checks.append(Check(f"{name} client", False, exc.one_line()))
    else:
        if runtime.NGINX_ROUTED:
            checks += _nginx_checks()
        checks += runtime.doctor(loaded)
    ok, detail = version_of(["prometheus", "--version"])
    checks.append(Check("prometheus", ok, detail))
    hey = shutil.which("hey")
    checks.append(Check("hey", hey is not None, hey or "missing: apt-get install hey"))
    checks.append(_opa_check())
    return checks


def _nginx_checks() -> list[Check]:
    ok, detail = version_of(["nginx", "-v"])
    lua = LUA_MODULE.is_file()
    return [
        Check("nginx", ok, detail),
        Check(
            "nginx lua module",
            lua,
            str(LUA_MODULE) if lua else "missing: apt-get install libnginx-mod-http-lua",
        ),
    ]


def _opa_check() -> Check:
    opa = find_opa()
    if opa is None:
        return Check(
            "opa",
            False,
            "not found: `make setup` builds it with Go; without Go, put a release "
            "binary of OPA v1.x on PATH as `opa`",
        )
    ok, detail = version_of([opa, "version"])
    source = Path(opa).with_name("opa.source")
    where = source.read_text().strip() if source.is_file() else opa
    return Check("opa", ok, f"{detail} ({where})")


def processes_of(loaded: LoadedManifest) -> list[dict[str, object]]:
    """The project's platform processes and their states (none known when the runtime's
    client is not installed: `run_checks` says so)."""
    try:
        manager = backend(loaded.manifest.runtime).process_manager(loaded)
    except BadInputError:
        return []
    return [p.__dict__ for p in manager.processes()]
