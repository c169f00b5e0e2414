"""One registry per kind of named thing (hardware and device presets, links, GPUs, optimizers,
solvers, tasks, studies): the single list that lookups, the CLI's choices and its help text read.

Every registry follows one rule: names are stored as registered and matched without regard to
case (``Published`` finds ``published``); an unknown name raises the registry's own error class
with the list of names, and a second entry under a name already taken is refused. A kind is
added to by registering in the module that defines it (``PRESETS.add("name", factory,
"one-line summary")``); nothing else lists it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(LookupError):
    """A name that no entry of a registry carries (the registry's own error is raised instead
    when it names one)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name as registered, the thing, and a one-line summary."""

    name: str
    value: T
    summary: str = ""


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    ``kind`` names the kind in messages (``"hardware preset"``); ``error`` is the exception an
    unknown or duplicate name raises (a subclass of ``Exception`` taking one message).
    """

    def __init__(self, kind: str, error: type[Exception] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, Entry[T]] = {}

    # --- filling ------------------------------------------------------------------------------
    def add(self, name: str, value: T, summary: str = "") -> T:
        """Register ``value`` under ``name``; returns ``value``."""
        if not isinstance(name, str) or not name.strip():
            raise self.error(f"a {self.kind} name must be a non-empty string, got {name!r}")
        key = name.lower()
        if key in self._entries and self._entries[key].value is not value:
            raise self.error(f"a {self.kind} named {self._entries[key].name!r} is already registered")
        self._entries[key] = Entry(name, value, summary)
        return value

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(value: T) -> T:
            return self.add(name, value, summary)

        return decorate

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Within the block, register freely; on leaving, the registry holds what it held before
        (for tests and examples that register a kind of their own)."""
        saved = dict(self._entries)
        try:
            yield
        finally:
            self._entries.clear()
            self._entries.update(saved)

    # --- lookup -------------------------------------------------------------------------------
    def entry(self, name: object) -> Entry[T]:
        """The entry called ``name`` (any case); an unknown name raises ``error`` listing the names."""
        found = self._entries.get(name.lower()) if isinstance(name, str) else None
        if found is None:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return found

    def get(self, name: object) -> T:
        """The thing called ``name`` (any case)."""
        return self.entry(name).value

    def canonical(self, name: object) -> str:
        """``name`` spelt as registered (``"PUBLISHED"`` -> ``"published"``)."""
        return self.entry(name).name

    def names(self) -> tuple[str, ...]:
        """Registered names, in registration order: the CLI's choices."""
        return tuple(e.name for e in self._entries.values())

    def entries(self) -> tuple[Entry[T], ...]:
        return tuple(self._entries.values())

    def help(self) -> str:
        """``"a: summary; b: summary"`` for help texts (names alone where there is no summary)."""
        return "; ".join(f"{e.name}: {e.summary}" if e.summary else e.name for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
