"""`swiftdeploy doctor`: versions and health of every part SwiftDeploy drives."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from swiftdeploy import __version__, proc
from swiftdeploy.errors import CommandFailedError
from swiftdeploy.tools import find_opa

LUA_MODULE = Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")


@dataclass(frozen=True)
class Check:
    part: str
    ok: bool
    detail: str


def _version(argv: list[str], pick: int = 0) -> tuple[bool, str]:
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} not found on PATH"
    try:
        outcome = proc.run(argv, timeout=10)
    except CommandFailedError as exc:
        return False, exc.one_line()
    lines = (outcome.stdout + outcome.stderr).strip().splitlines()
    return outcome.code == 0, lines[pick] if len(lines) > pick else "unknown version"


def run_checks() -> list[Check]:
    checks = [Check("swiftdeploy", True, f"{__version__} on Python {sys.version.split()[0]}")]
    ok, detail = _version(["nginx", "-v"])
    checks.append(Check("nginx", ok, detail))
    checks.append(
        Check(
            "nginx lua module",
            LUA_MODULE.is_file(),
            str(LUA_MODULE)
            if LUA_MODULE.is_file()
            else "missing: apt-get install libnginx-mod-http-lua",
        )
    )
    ok, detail = _version([sys.executable, "-m", "supervisor.supervisord", "--version"])
    checks.append(Check("supervisord", ok, detail))
    ok, detail = _version(["prometheus", "--version"])
    checks.append(Check("prometheus", ok, detail))
    hey = shutil.which("hey")
    checks.append(Check("hey", hey is not None, hey or "missing: apt-get install hey"))
    opa = find_opa()
    if opa:
        ok, detail = _version([opa, "version"])
        source = Path(opa).with_name("opa.source")
        where = source.read_text().strip() if source.is_file() else opa
        checks.append(Check("opa", ok, f"{detail} ({where})"))
    else:
        checks.append(
            Check(
                "opa",
                False,
                "not found: `make setup` builds it with Go; without Go, put a release "
                "binary of OPA v1.x on PATH as `opa`",
            )
        )
    return checks
