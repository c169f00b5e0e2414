"""Exceptions raised by the digital training side.

Input problems derive from :class:`thermo.errors.InputError` (itself a ``ValueError``), so one
handler catches a bad matrix whether the solver or the optimizer found it.
"""

from __future__ import annotations

from thermo.errors import InputError, NonFiniteInputError


class UnknownSolverError(InputError, KeyError):
    """A solver was asked for by a name that no backend registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedConfigurationError(InputError):
    """A combination of options the optimizer or the solver cannot honour."""


class UnsupportedOperationError(UnsupportedConfigurationError):
    """A backend was asked for an operation it does not provide (e.g. ``eigh`` on ``cg``)."""


class NonFiniteGradientError(NonFiniteInputError):
    """A gradient, loss or curvature factor contains NaN or infinity."""


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite value (``on_nonfinite="stop"``); the message names it."""
