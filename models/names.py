"""Registries by name (models, classifiers, generators, slot layers): a name is given once.

Each registry is a plain ``dict`` filled through `register`, which refuses a name that is
already there: a second entry under a name would otherwise silently replace a table row's
model. Entries are keyword arguments, so a name repeated within one call is a ``SyntaxError``.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class DuplicateNameError(ValueError):
    """A name registered twice in the same registry."""


def register(registry: dict[str, T], what: str, /, **entries: T) -> dict[str, T]:
    """Add ``name=value`` entries to ``registry`` and return it; `DuplicateNameError` (naming
    ``what`` the registry holds) for a name it already has, before anything is added."""
    for name in entries:
        if name in registry:
            raise DuplicateNameError(f"{what} name {name!r} is registered twice")
    registry.update(entries)
    return registry
