"""Backends by name: ``get_solver("exact")``, ``get_solver("thermo", hardware="published")``.

A new backend is one small module: subclass :class:`~digital.solvers.base.LinearSolver`, set
``name`` and decorate the class with :func:`register_solver`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import UnknownSolverError, UnsupportedConfigurationError
from .base import LinearSolver

_REGISTRY: dict[str, type[LinearSolver]] = {}

S = TypeVar("S", bound=type[LinearSolver])


def register_solver(cls: S) -> S:
    """Class decorator adding a backend under its ``name`` (names are unique)."""
    name = cls.name
    if not name or name == LinearSolver.name:
        raise UnsupportedConfigurationError(f"{cls.__name__} must set a class attribute 'name'")
    if name != name.lower():  # get_solver looks names up in lower case
        raise UnsupportedConfigurationError(f"solver names are lower case: {cls.__name__}.name = {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise UnsupportedConfigurationError(f"a solver named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def available_solvers() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get_solver(spec: str | LinearSolver | type[LinearSolver], **options: Any) -> LinearSolver:
    """A backend from its name (options go to its constructor), its class, or an instance."""
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
    try:
        cls = _REGISTRY[spec.lower()]
    except KeyError:
        raise UnknownSolverError(
            f"unknown solver {spec!r}; available: {', '.join(available_solvers())}"
        ) from None
    try:
        return cls(**options)
    except TypeError as err:  # an option the backend does not take
        raise UnsupportedConfigurationError(f"bad options for solver {spec!r}: {err}") from None
