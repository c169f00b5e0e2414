"""Test support: undo registrations a test makes (:meth:`thermo.registry.Registry.restored` for
several registries at once)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from thermo.registry import Registry


@contextmanager
def registries_restored(*registries: Registry[Any]) -> Iterator[None]:
    """Within the block, register freely; on leaving, every registry holds what it held before."""
    with ExitStack() as stack:
        for registry in registries:
            stack.enter_context(registry.restored())
        yield
