"""Simulator of an analog thermodynamic (Langevin) co-processor for linear algebra.

The chip relaxes, under thermal noise, to the Gaussian law ``N(A^-1 b, kT A^-1)``: its
time-averaged mean solves ``A x = b`` and its time-averaged covariance inverts ``A``. This package
simulates it with the hardware's non-idealities (converters, rails, noise, mismatch, drift, chip
size), a description of the whole device (:mod:`thermo.device`) and the one cost model that
prices its operations (:mod:`thermo.cost`). It knows nothing about training (the ``digital`` package builds on it).

Quick start::

    import numpy as np
    from thermo import HardwareSpec, ThermodynamicSolver

    solver = ThermodynamicSolver(HardwareSpec.published(), seed=0)
    result = solver.solve(A, b)          # A symmetric positive definite (d, d), b (d,) or (d, k)
    result.x, result.diagnostics.analog_time_s
"""

from .capabilities import Nonideality, UnmodelledHardwareError, required
from .device import (
    DEVICES,
    LINKS,
    CouplingDelivery,
    DeviceSpec,
    LinkSpec,
    as_device,
    device_preset,
    link_preset,
)
from .errors import (
    DeviceSpecError,
    DivergenceError,
    HardwareSpecError,
    InputError,
    LegacyFormatWarning,
    MemoryBudgetError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
    ThermoError,
)
from .hardware import PRESETS, HardwareSpec, johnson_noise_variance, preset
from .solver import (
    AnalogState,
    Diagnostics,
    InverseResult,
    SolveResult,
    SolverConfig,
    ThermodynamicSolver,
    ThermoWarning,
)

__all__ = [
    "AnalogState",
    "CouplingDelivery",
    "DEVICES",
    "DeviceSpec",
    "DeviceSpecError",
    "Diagnostics",
    "DivergenceError",
    "HardwareSpec",
    "HardwareSpecError",
    "InputError",
    "InverseResult",
    "LINKS",
    "LegacyFormatWarning",
    "LinkSpec",
    "MemoryBudgetError",
    "NonFiniteInputError",
    "Nonideality",
    "NotPositiveDefiniteError",
    "NotSymmetricError",
    "PRESETS",
    "ShapeMismatchError",
    "SolveResult",
    "SolverConfig",
    "ThermoError",
    "ThermoWarning",
    "ThermodynamicSolver",
    "UnmodelledHardwareError",
    "as_device",
    "device_preset",
    "johnson_noise_variance",
    "link_preset",
    "preset",
    "required",
]
