"""Validation of the studies' configurations: counts, bit widths, fractions, positive reals.

Each check raises :class:`StudyConfigError` (a ``ValueError``, so the CLI's handler reports it)
whose message names the config, the field, the value and what to give instead. The checks that
accept a number written as a float (``4.0`` from a comma-separated list) return it as an ``int``;
a fractional count or bit width (``4.5``) is refused, never truncated.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from typing import Any

from cosim.system import SystemSpec, SystemSpecError
from thermo.errors import ConfigFileError, HardwareSpecError
from digital.tasks import TASKS
from thermo.device import device_preset
from thermo.hardware import preset


class StudyConfigError(ValueError):
    """A study configuration field holds a value the study cannot run with."""


def _fail(owner: str, name: str, value: Any, wanted: str) -> StudyConfigError:
    return StudyConfigError(f"{owner}.{name} must be {wanted}, got {value!r}; pass {name} as {wanted}")


def integer(owner: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum`` (bools, fractions, NaN and text refused)."""
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(owner, name, value, wanted)
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        number = int(value)
    else:
        raise _fail(owner, name, value, wanted)
    if number < minimum:
        raise _fail(owner, name, value, wanted)
    return number


def integers(owner: str, name: str, values: Any, minimum: int = 1, distinct: bool = False) -> tuple[int, ...]:
    """A non-empty tuple of ``int`` >= ``minimum`` (each element as :func:`integer`)."""
    items = _items(owner, name, values)
    out = tuple(integer(owner, f"{name}[{i}]", v, minimum) for i, v in enumerate(items))
    if distinct and len(set(out)) != len(out):
        raise StudyConfigError(f"{owner}.{name} must hold distinct values, got {values!r}; remove the repeats")
    return out


def real(owner: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real in the interval from ``low`` to ``high`` (open ends as flagged)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    wanted = f"a finite number in {interval}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise _fail(owner, name, value, wanted)
    x = float(value)
    if x < low or x > high or (low_open and x == low) or (high_open and x == high):
        raise _fail(owner, name, value, wanted)
    return x


def positive(owner: str, name: str, value: Any) -> float:
    """A finite real > 0."""
    return real(owner, name, value, 0.0, math.inf, low_open=True)


def reals(owner: str, name: str, values: Any, low: float = -math.inf, high: float = math.inf,
          low_open: bool = False, high_open: bool = False) -> tuple[float, ...]:
    """A non-empty tuple of reals, each as :func:`real`."""
    return tuple(real(owner, f"{name}[{i}]", v, low, high, low_open, high_open)
                 for i, v in enumerate(_items(owner, name, values)))


def workers(owner: str, value: Any) -> int | None:
    """``None`` (the sweep's default) or a positive number of worker processes."""
    return None if value is None else integer(owner, "workers", value)


def _items(owner: str, name: str, values: Any) -> list[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise StudyConfigError(f"{owner}.{name} must be a tuple of values, got {values!r}; pass e.g. {name}=(4, 8)")
    items = list(values)
    if not items:
        raise StudyConfigError(f"{owner}.{name} is empty; give it at least one value")
    return items


def store(config: Any, **values: Any) -> None:
    """Write normalized values (ints for integral floats, tuples for lists) into a frozen
    dataclass from its ``__post_init__``."""
    names = {f.name for f in dataclasses.fields(config)}
    for name, value in values.items():
        if name not in names:  # pragma: no cover - a programming error of the caller
            raise AttributeError(f"{type(config).__name__} has no field {name!r}")
        object.__setattr__(config, name, value)


def _readable_preset(owner: str, name: str, value: Any, kind: str, read: Any) -> str:
    """A ``kind`` preset name or ``.toml``/``.yaml`` file that ``read`` loads, read now so that a
    typo stops the study before its first point rather than inside a worker."""
    if not isinstance(value, str):
        raise _fail(owner, name, value, f"a {kind} preset name or the path of a .toml/.yaml {kind} file")
    try:
        read(value)
    except (HardwareSpecError, ConfigFileError) as exc:
        raise StudyConfigError(f"{owner}.{name}: {exc}") from None
    return value


def hardware(owner: str, name: str, value: Any) -> str:
    """A hardware preset name or a ``.toml``/``.yaml`` hardware file (:func:`thermo.preset`)."""
    return _readable_preset(owner, name, value, "hardware", preset)


def task(owner: str, name: str, value: Any) -> str:
    """A registered task (:data:`digital.tasks.TASKS`, any case), returned as registered."""
    if not isinstance(value, str) or value not in TASKS:
        raise StudyConfigError(f"{owner}.{name} must be a built-in task ({', '.join(TASKS)}), got {value!r}")
    return TASKS.canonical(value)


def device(owner: str, name: str, value: Any) -> str:
    """A device preset name or a ``.toml``/``.yaml`` device file (:func:`thermo.device_preset`)."""
    return _readable_preset(owner, name, value, "device", device_preset)


def system_file(owner: str, name: str, value: Any) -> str | None:
    """None, or the path of a ``.toml``/``.yaml`` system file (``cosim.SystemSpec.load``) that
    loads, read now for the same reason as :func:`hardware`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(owner, name, value, "the path of a .toml/.yaml system file")
    try:
        SystemSpec.load(value)
    except (SystemSpecError, ConfigFileError, HardwareSpecError) as exc:
        raise StudyConfigError(f"{owner}.{name}: {exc}") from None
    return value
