"""The Typer app and the one place errors become exit codes.

Every SwiftDeployError is one line on stderr with its exit code; every usage error
(unknown option or command, missing argument, bad value) is one line naming it and
the `--help` to read, exit 2; Ctrl-C is 130; anything unexpected goes to a private
crash log (created fresh with mkstemp: mode 0600, never through a planted link) with
a one-line pointer to it, exit 1. A full disk or read-only filesystem is the machine's
fault, not a crash: one line, exit 1.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from swiftdeploy import __version__
from swiftdeploy.cli.helptext import polished
from swiftdeploy.errors import ExitCode, SwiftDeployError

app = typer.Typer(
    name="swiftdeploy",
    help="Policy-gated progressive delivery: canary releases through nginx, gated by Rego.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"swiftdeploy {__version__}")
        raise typer.Exit()


# Where the manifest is: `-f` after the command, else `-f` before it, else this variable,
# else ./swiftdeploy.yaml (command line > environment > default).
MANIFEST_ENV = "SWIFTDEPLOY_MANIFEST"


def manifest_path(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    """A command's `-f`: its own when given there, else the one given before the command,
    else what click found ($SWIFTDEPLOY_MANIFEST or the default)."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    if source is not None and source.name == "COMMANDLINE":  # typer's own click's enum
        return value
    before = ctx.find_root().params.get("manifest")
    return before if isinstance(before, Path) else value


# `--kube-context` reaches the kubernetes backend through the environment, so it also
# holds for the commands it runs in other processes.
KUBE_CONTEXT_ENV = "SWIFTDEPLOY_KUBE_CONTEXT"


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "-f",
            "--file",
            "--manifest",
            metavar="PATH",
            help=f"The manifest, for the command that follows (else ${MANIFEST_ENV},"
            " else ./swiftdeploy.yaml).",
        ),
    ] = None,
    kube_context: Annotated[
        str | None,
        typer.Option(
            "--kube-context",
            envvar=KUBE_CONTEXT_ENV,
            help="kubeconfig context for runtime kubernetes (default: kubernetes.context,"
            " else the current one).",
        ),
    ] = None,
) -> None:
    """Policy-gated progressive delivery: canary releases through nginx, gated by Rego."""
    if kube_context:
        os.environ[KUBE_CONTEXT_ENV] = kube_context


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; the only place errors become exit codes."""
    try:
        result = polished(app).main(args=argv, standalone_mode=False, prog_name="swiftdeploy")
    except SwiftDeployError as exc:
        print(f"swiftdeploy: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("swiftdeploy: interrupted; state is consistent, re-run to continue", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except TyperException as exc:  # typer's own click: usage errors and the like
        return _usage_error(exc)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _crash()
        # The machine, not our code: a full disk or a read-only filesystem mid-command.
        print(f"swiftdeploy: error: {exc.strerror}: {exc.filename or ''}", file=sys.stderr)
        return int(ExitCode.OPERATIONAL)
    except Exception:
        return _crash()
    return int(result) if isinstance(result, int) else 0


_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


# An option a command no longer takes as its main spelling, given without its value:
# where the value goes now, and whose help to read (click names no command here).
_MOVED = {"--version": ("the version is an argument: `swiftdeploy deploy VERSION`",
                        "swiftdeploy deploy")}  # fmt: skip


def _usage_error(exc: TyperException) -> int:
    code = int(getattr(exc, "exit_code", ExitCode.BAD_INPUT))
    context = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
        typer.echo(context.get_help())  # `swiftdeploy audit` alone: the help is the answer
        return code
    where = getattr(context, "command_path", None) or "swiftdeploy"
    message = " ".join(exc.format_message().split())
    moved = _MOVED.get(getattr(exc, "option_name", None) or "")
    if moved and message.endswith("requires an argument."):
        message, where = f"{message[:-1]}; {moved[0]}", moved[1]
    print(f"swiftdeploy: error: {message} (see `{where} --help`)", file=sys.stderr)
    return code


def _crash() -> int:
    try:
        handle, path = tempfile.mkstemp(prefix="swiftdeploy-crash-", suffix=".log")
        with open(handle, "w", encoding="utf-8") as log:
            log.write(traceback.format_exc())
    except OSError as exc:
        print(f"swiftdeploy: internal error; no crash log ({exc.strerror})", file=sys.stderr)
    else:
        print(f"swiftdeploy: internal error; traceback written to {path}", file=sys.stderr)
    return int(ExitCode.OPERATIONAL)


def main() -> None:
    sys.exit(run())
