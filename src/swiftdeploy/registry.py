"""Pluggable parts looked up by name: an unknown name is an error listing the known ones.
May import: errors only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from swiftdeploy.errors import BadInputError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], kind: str, name: str) -> T:
    """`registry[name]`, or a BadInputError naming the `kind` of part and the choices."""
    try:
        return registry[name]
    except KeyError:
        raise BadInputError(
            f"unknown {kind} {name!r}", hint=f"choose one of: {', '.join(registry)}"
        ) from None
