"""Test support: undo registrations a test makes.

:class:`thermo.registry.Registry` has no public removal (registrations are meant to last the
process), so this restores a registry's entries from a snapshot; it is the one place the tests
reach into ``Registry._entries``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from thermo.registry import Registry


@contextmanager
def registries_restored(*registries: Registry[Any]) -> Iterator[None]:
    """Within the block, register freely; on leaving, every registry holds what it held before."""
    saved = [(registry, dict(registry._entries)) for registry in registries]
    try:
        yield
    finally:
        for registry, entries in saved:
            registry._entries.clear()
            registry._entries.update(entries)
