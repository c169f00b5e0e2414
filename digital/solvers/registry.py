"""Backends by name: ``get_solver("exact")``, ``get_solver("thermo", hardware="published")``.

:data:`SOLVERS` is the one list of backends (a :class:`thermo.registry.Registry`: names kept as
registered, looked up in any case). A new backend is one small module: subclass
:class:`~digital.solvers.base.LinearSolver`, set ``name`` and decorate the class with
:func:`register_solver`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from thermo.registry import Registry

from ..errors import UnknownSolverError, UnsupportedConfigurationError
from .base import LinearSolver

SOLVERS: Registry[type[LinearSolver]] = Registry("solver", UnknownSolverError)
"""Every registered backend class, in registration order; an unknown name raises
:class:`~digital.errors.UnknownSolverError` listing the names."""

S = TypeVar("S", bound=type[LinearSolver])


def _first_line(doc: str | None) -> str:
    """The first line of a docstring, without its final full stop (the backend's summary when it
    gives none)."""
    return doc.strip().splitlines()[0].strip().removesuffix(".") if doc and doc.strip() else ""


@overload
def register_solver(cls: S, *, summary: str | None = None) -> S: ...
@overload
def register_solver(cls: None = None, *, summary: str | None = None) -> Callable[[S], S]: ...


def register_solver(cls: S | None = None, *, summary: str | None = None) -> S | Callable[[S], S]:
    """Class decorator adding a backend under its ``name``: ``@register_solver``, or
    ``@register_solver(summary="one line for help texts")`` (default: the first line of the
    class docstring). Names are unique regardless of case: a second class under a name taken
    raises UnsupportedConfigurationError."""
    if cls is None:
        return lambda c: register_solver(c, summary=summary)
    name = cls.name
    if not isinstance(name, str) or not name.strip() or name == LinearSolver.name:
        raise UnsupportedConfigurationError(f"{cls.__name__} must set a class attribute 'name'")
    if name in SOLVERS and SOLVERS.get(name) is not cls:
        raise UnsupportedConfigurationError(
            f"a solver named {SOLVERS.canonical(name)!r} is already registered ({SOLVERS.get(name).__name__})"
        )
    SOLVERS.add(name, cls, _first_line(cls.__doc__) if summary is None else summary)
    return cls


def available_solvers() -> tuple[str, ...]:
    """Registered backend names, in registration order."""
    return SOLVERS.names()


def get_solver(spec: str | LinearSolver | type[LinearSolver], **options: Any) -> LinearSolver:
    """A backend from its name (any case; options go to its constructor), its class, or an
    instance. An unknown name raises :class:`~digital.errors.UnknownSolverError`."""
    if isinstance(spec, LinearSolver):
        if options:
            raise UnsupportedConfigurationError(
                f"options {sorted(options)} cannot be applied to an existing solver instance"
            )
        return spec
    if isinstance(spec, type) and issubclass(spec, LinearSolver):
        return spec(**options)
    if not isinstance(spec, str):
        raise TypeError(f"a solver is a name, a LinearSolver class or instance, got {type(spec).__name__}")
    cls = SOLVERS.get(spec)
    try:
        return cls(**options)
    except TypeError as err:  # an option the backend does not take
        raise UnsupportedConfigurationError(f"bad options for solver {spec!r}: {err}") from None
