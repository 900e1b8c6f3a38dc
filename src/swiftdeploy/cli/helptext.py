"""The help every command shows, made uniform once the commands are registered: an
example per command (its epilog), flags without a `<bool>` type, positionals named as
click and most CLIs do (`VERSION`, `[VERSION]` when optional), and docstring paragraphs
that reflow to the terminal instead of breaking where the source did."""

from __future__ import annotations

import os
from typing import Any

import typer
import typer.core
import typer.rich_utils

# One example per command, by its path; tests/cli/test_conventions.py walks the app and
# fails on a command missing here.
EXAMPLES = {
    "init": "swiftdeploy init shop --runtime docker",
    "validate": "swiftdeploy -f shop/swiftdeploy.yaml validate",
    "schema": "swiftdeploy schema > swiftdeploy.schema.json",
    "doctor": "swiftdeploy doctor --json",
    "deploy": "swiftdeploy deploy v1",
    "status": "swiftdeploy status --watch --window 1m",
    "chaos": "swiftdeploy chaos --track canary --error-rate 0.05 --duration 1m30s",
    "metrics": "swiftdeploy metrics --track canary --window 1m30s",
    "teardown": "swiftdeploy teardown",
    "demo-image": "swiftdeploy demo-image v1 v2",
    "canary": "swiftdeploy canary v2 --weight 10",
    "weight": "swiftdeploy weight 50 --force --reason 'load test'",
    "promote": "swiftdeploy promote --all",
    "rollout": "swiftdeploy rollout v2 --plan",
    "attach": "swiftdeploy attach --wait",
    "resume": "swiftdeploy resume",
    "pause": "swiftdeploy pause --reason 'waiting for the DBA'",
    "abort": "swiftdeploy abort --reason 'wrong build'",
    "rollback": "swiftdeploy rollback",
    "drive": "swiftdeploy drive --controller",
    "events": "swiftdeploy events --follow --since 10m",
    "driver-image": "swiftdeploy driver-image",
    "audit verify": "swiftdeploy audit verify --checkpoint head.json",
    "audit checkpoint": "swiftdeploy audit checkpoint -o head.json",
    "audit adopt": "swiftdeploy audit adopt",
    "audit report": "swiftdeploy audit report --out report/",
    "audit why": "swiftdeploy audit why",
    "audit export": "swiftdeploy audit export --format csv -o trail.csv",
    "ci github": 'swiftdeploy ci github v2 --out "$RUNNER_TEMP/swiftdeploy"',
    "judge init": "swiftdeploy judge init judge/",
    "judge serve": "swiftdeploy judge serve -c judge/judge.yaml",
    "judge install": "swiftdeploy judge install -c judge/judge.yaml --print",
    "judge replay": "swiftdeploy judge replay -c judge/judge.yaml",
    "kube rbac": "swiftdeploy kube rbac --subject Group/release-managers",
    "kube install": "swiftdeploy kube install --print > driver.yaml",
    "policy test": "swiftdeploy policy test",
    "policy check": "swiftdeploy policy check",
    "policy eval": "swiftdeploy policy eval --input look.json",
}


def no_color() -> bool:
    """https://no-color.org: set and not empty, no colour and no other styling either."""
    return bool(os.environ.get("NO_COLOR"))


def polished(app: typer.Typer) -> Any:
    """The app's click command, each command with its example, flags shown without a
    type, and paragraphs on one line each."""
    if no_color():  # typer's own help console: no escapes, bold and italic included
        typer.rich_utils.COLOR_SYSTEM = None
    root = typer.main.get_command(app)
    _polish(root, "")
    return root


def _polish(command: Any, path: str) -> None:
    command.help = _reflowed(command.help)
    if path in EXAMPLES:
        command.epilog = f"Example: {EXAMPLES[path]}"
    help_option = command.get_help_option(command.context_class(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # a flag takes no value: no `<bool>` beside it
        param.help = _reflowed(param.help)
        if isinstance(param, typer.core.TyperArgument):
            param.__class__ = _Positional  # only how it is shown changes
            param.metavar = param.metavar or (param.name or "").upper()
    for name, sub in getattr(command, "commands", {}).items():
        _polish(sub, f"{path} {name}".strip())


class _Positional(typer.core.TyperArgument):
    """A positional shown by its upper-case name alone: `PERCENT` in the usage when
    required, `[VERSION]` when not (typer writes `{percent}`), and no `<str>` or
    `<int range>` beside it (its help says what it takes)."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name if self.nargs == 1 else f"{name}..."

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _get_number_range_help_str(self) -> str | None:
        return None


def _reflowed(text: str | None) -> str | None:
    """Single line breaks inside a paragraph become spaces (the source's wrap is not the
    terminal's); blank lines between paragraphs stay."""
    if not text:
        return text
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(paragraphs)
