"""Exceptions raised by the analog solver.

Every bad input gets its own class so callers can react to the cause (retry with more damping,
more bits, a smaller right-hand side) rather than parse messages. All input problems derive from
``ValueError`` so generic handlers keep working.
"""

from __future__ import annotations


class ThermoError(Exception):
    """Base class of every error raised by :mod:`thermo`."""


class InputError(ThermoError, ValueError):
    """An argument is unusable: wrong shape, non-finite, non-symmetric or not definite."""


class ShapeMismatchError(InputError):
    """Arrays whose shapes do not fit together (e.g. ``A`` is 4x4 and ``b`` has 5 entries)."""


class NonFiniteInputError(InputError):
    """An input contains NaN or infinity."""


class NotSymmetricError(InputError):
    """A matrix that must be symmetric is not (beyond the stated tolerance)."""


class NotPositiveDefiniteError(InputError):
    """A matrix that must be positive definite is indefinite or singular.

    Raised for the user's matrix and also for the matrix the hardware actually realizes, which can
    lose definiteness through DAC quantization or mismatch.
    """


class HardwareSpecError(ThermoError, ValueError):
    """A hardware description asks for something physically impossible or inconsistent."""


class DivergenceError(ThermoError, RuntimeError):
    """The simulated analog state diverged (unstable realized dynamics or a non-finite state).

    The solver raises this rather than return a number computed from a run that blew up.
    """


class MemoryBudgetError(ThermoError, ValueError):
    """A plan whose arrays would exceed the memory budget (:mod:`thermo.memory`); refused before
    anything is allocated. The message names the size, the budget and the alternative."""


class ConfigFileError(ThermoError, ValueError):
    """A hardware or system description file that is missing, unreadable or malformed; the
    message names the file (and the line, where the parser gives one)."""


class UnsupportedInputError(InputError, TypeError):
    """An argument of a type the solver cannot take as it is: complex, sparse, a
    ``LinearOperator``, an object, string or boolean array. The message names the type and the
    conversion that makes it usable. Also a ``TypeError``, since the type is what is wrong."""


class DeviceSpecError(HardwareSpecError):
    """A device description (chips, link, coupling delivery, converter channels) that is
    impossible or inconsistent; the message names the field."""


class LegacyFormatWarning(UserWarning):
    """A description in an older layout that is still read (each old key mapped to its new
    place); the message names the file or section and how to rewrite it."""
