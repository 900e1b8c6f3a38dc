"""Pluggable parts looked up by name: the built-in ones and any installed distribution's.
May import: errors only.

A `Registry` is one kind of part (runtimes, routers, metrics providers, policy engines).
Its built-ins are `module:attribute` references and a third party's are Python entry
points in the registry's group (a plugin's pyproject.toml:
`[project.entry-points."swiftdeploy.runtimes"] fake = "my_pkg.fake"`); both are imported
only when asked for, so a part's clients load only for the projects that use it. An
unknown name is an error listing every known one, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from swiftdeploy.errors import BadInputError, OperationalError

T = TypeVar("T")


class Registry(Generic[T]):
    """The parts of one `kind`, by name; `get` imports the one asked for."""

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group  # the entry point group third parties register under
        self._builtins = {name: EntryPoint(name, ref, group) for name, ref in builtins.items()}

    def _entries(self) -> dict[str, EntryPoint]:
        # Read on every call (a handful per command): a plugin installed after start-up is
        # seen, and a plugin cannot take a built-in's name.
        plugins = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._builtins | {n: ep for n, ep in plugins.items() if n not in self._builtins}

    def names(self) -> list[str]:
        """The built-ins in their order, then the plugins'."""
        return list(self._entries())

    def __contains__(self, name: object) -> bool:
        return name in self._entries()

    def get(self, name: str) -> T:
        """The part called `name`, or a BadInputError naming the choices."""
        entries = self._entries()
        entry = entries.get(name)
        if entry is None:
            raise BadInputError(
                f"unknown {self.kind} {name!r}",
                hint=f"choose one of: {', '.join(entries)}; a plugin adds one under the"
                f" entry point group {self.group}",
            )
        try:
            return cast(T, entry.load())
        except (ImportError, AttributeError) as exc:
            if name in self._builtins:
                raise  # the package itself is broken: a bug, with its traceback
            raise OperationalError(
                f"the {self.kind} plugin {name!r} ({entry.value}) could not be loaded: {exc}",
                hint=f"check the distribution that registers it under {self.group}",
            ) from None


def plugin_names(group: str) -> list[str]:
    """The names third parties' installed distributions register under `group`."""
    return [ep.name for ep in entry_points(group=group)]


def missing_extra(extra: str) -> BadInputError:
    """What importing a built-in part raises when its client, an optional extra, is not
    installed (`pip install swiftdeploy` is the local runtime only)."""
    return BadInputError(
        f"runtime {extra} needs the {extra} client, which this install lacks",
        hint=f"pip install 'swiftdeploy[{extra}]'",
    )
