"""Which hardware non-idealities each integrator models, and the routing and refusals read from it.

Every non-ideality a :class:`~thermo.hardware.HardwareSpec` can switch on is one
:class:`Nonideality`; :func:`required` says which of them a given hardware (and problem size)
needs modelled. Each integrator module declares, in one ``MODELS: frozenset[Nonideality]``, what
a run through it represents exactly:

* :data:`thermo.exact.MODELS`, the eigenbasis integrator of the dense chip simulator;
* :data:`thermo.stepwise.MODELS`, its stepwise integrators (per integrator:
  :data:`thermo.stepwise.INTEGRATOR_MODELS`);
* :data:`thermo.lowrank.MODELS`, the exact low-rank (and Lanczos) propagation of TNGD, and
  :data:`thermo.lowrank_device.MODELS`, that propagation with the device's converters around it.

Routing and refusal only read these lists: the dense solver takes the first integrator whose
``MODELS`` covers :func:`required` (eigenbasis before stepwise, :func:`first_covering`); the
low-rank device and TNGD refuse, with one :class:`UnmodelledHardwareError` naming each
unmodelled non-ideality, the field that switches it on and how to turn it off
(:func:`check_modelled`).

Which fields are not non-idealities: ``tau_s``, ``kT``, ``coupling_range``, ``input_range_v`` and
``sample_rate_hz`` are parameters of the ideal device (every integrator takes them);
``mass_s2``, ``chip_seed`` and ``drift_timescale_s`` parametrize a member below; ``readout``,
the converter timing and energy fields cost time and energy but do not change the dynamics (nor
do the device's chip count, link and knobs, :mod:`thermo.device`, which only the cost model
reads).

Adding a non-ideality means: a :class:`HardwareSpec` field that switches it (off by default),
one :class:`Nonideality` member, its line in :func:`required` (and its entries in the
``_LABELS`` and :data:`TURN_OFF` tables, which a test keeps complete), and the integrators that
model it add it to their ``MODELS``. Nothing else changes: the routing and the refusals pick it
up from the lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from enum import Enum

from .errors import HardwareSpecError, InputError
from .hardware import HardwareSpec


class Nonideality(str, Enum):
    """A departure from the ideal linear Langevin chip that a :class:`HardwareSpec` can switch on
    (the value is a stable identifier; :func:`describe` gives the words for messages)."""

    COUPLING_QUANTIZATION = "coupling_quantization"
    """The coupling DAC rounds ``A`` to ``bits_A`` bits."""
    INPUT_QUANTIZATION = "input_quantization"
    """The input DAC rounds ``b`` to ``bits_b`` bits."""
    ADC_QUANTIZATION = "adc_quantization"
    """The readout ADC rounds every sample to ``bits_adc`` bits."""
    STOCHASTIC_ROUNDING = "stochastic_rounding"
    """The converters round stochastically (``rounding="stochastic"`` with any converter quantized)."""
    READOUT_CLIPPING = "readout_clipping"
    """Finite rails ``v_range_v``: readings saturate there."""
    DYNAMICS_CLIPPING = "dynamics_clipping"
    """The node voltages themselves saturate at the rails (``clip_in_dynamics``): non-linear dynamics."""
    SYMMETRIC_MISMATCH = "symmetric_mismatch"
    """Static relative error of each coupling, one element per pair (``mismatch_sigma > 0``,
    ``mismatch_symmetric``): the realized matrix stays symmetric."""
    ASYMMETRIC_MISMATCH = "asymmetric_mismatch"
    """Static mismatch with ``A_ij`` and ``A_ji`` independent: a non-symmetric realized matrix."""
    DRIFT = "drift"
    """Slow Ornstein-Uhlenbeck drift of the couplings during the run (``drift_sigma > 0``)."""
    UNDERDAMPED = "underdamped"
    """RLC nodes with inertia (``regime="underdamped"``, ``mass_s2``)."""
    TILING = "tiling"
    """The problem is larger than one chip (``n_units``): it must be tiled or block-iterated."""


def required(hw: HardwareSpec, size: int | None = None) -> frozenset[Nonideality]:
    """The non-idealities ``hw`` switches on, which a faithful run must model.

    ``size`` is the dimension of the problem put on the chip (``N``); :attr:`Nonideality.TILING`
    is required when it exceeds ``hw.n_units``. ``None`` leaves the chip size out: the caller
    places blocks that fit (the dense solver tiles before its integrators see a block).
    """
    need: set[Nonideality] = set()
    if hw.bits_A is not None:
        need.add(Nonideality.COUPLING_QUANTIZATION)
    if hw.bits_b is not None:
        need.add(Nonideality.INPUT_QUANTIZATION)
    if hw.bits_adc is not None:
        need.add(Nonideality.ADC_QUANTIZATION)
    if hw.rounding == "stochastic" and hw.has_quantization:
        need.add(Nonideality.STOCHASTIC_ROUNDING)
    if math.isfinite(hw.v_range_v):
        need.add(Nonideality.READOUT_CLIPPING)
    if hw.clip_in_dynamics:
        need.add(Nonideality.DYNAMICS_CLIPPING)
    if hw.mismatch_sigma > 0:
        need.add(Nonideality.SYMMETRIC_MISMATCH if hw.mismatch_symmetric else Nonideality.ASYMMETRIC_MISMATCH)
    if hw.drift_sigma > 0:
        need.add(Nonideality.DRIFT)
    if hw.regime == "underdamped":
        need.add(Nonideality.UNDERDAMPED)
    if size is not None and hw.n_units is not None and size > hw.n_units:
        need.add(Nonideality.TILING)
    return frozenset(need)


def unmodelled(
    hw: HardwareSpec, models: frozenset[Nonideality], size: int | None = None
) -> list[Nonideality]:
    """What ``hw`` requires (:func:`required`) and ``models`` lacks, in declaration order."""
    need = required(hw, size)
    return [feature for feature in Nonideality if feature in need and feature not in models]


def first_covering(
    candidates: Sequence[tuple[str, frozenset[Nonideality]]], hw: HardwareSpec, size: int | None = None
) -> str | None:
    """The name of the first ``(name, MODELS)`` candidate that models everything ``hw`` requires;
    ``None`` when none does."""
    return next((name for name, models in candidates if not unmodelled(hw, models, size)), None)


# the words for a message, with the field values that switch each feature on
_LABELS: dict[Nonideality, Callable[[HardwareSpec, int | None], str]] = {
    Nonideality.COUPLING_QUANTIZATION: lambda hw, n: f"coupling quantization (bits_A={hw.bits_A})",
    Nonideality.INPUT_QUANTIZATION: lambda hw, n: f"input quantization (bits_b={hw.bits_b})",
    Nonideality.ADC_QUANTIZATION: lambda hw, n: f"ADC quantization (bits_adc={hw.bits_adc})",
    Nonideality.STOCHASTIC_ROUNDING: lambda hw, n: "stochastic rounding (rounding='stochastic')",
    Nonideality.READOUT_CLIPPING: lambda hw, n: f"rails clipping the readout (v_range_v={hw.v_range_v:g})",
    Nonideality.DYNAMICS_CLIPPING: lambda hw, n: "clipping inside the dynamics (clip_in_dynamics=True)",
    Nonideality.SYMMETRIC_MISMATCH: lambda hw, n: f"mismatch (mismatch_sigma={hw.mismatch_sigma:g}, symmetric)",
    Nonideality.ASYMMETRIC_MISMATCH: lambda hw, n: (
        f"mismatch (mismatch_sigma={hw.mismatch_sigma:g}, asymmetric: mismatch_symmetric=False)"
    ),
    Nonideality.DRIFT: lambda hw, n: f"drift (drift_sigma={hw.drift_sigma:g})",
    Nonideality.UNDERDAMPED: lambda hw, n: "underdamped nodes (regime='underdamped')",
    Nonideality.TILING: lambda hw, n: f"finite chip size (n_units={hw.n_units} < N={n}: needs tiling)",
}

TURN_OFF: dict[Nonideality, dict[str, object]] = {
    Nonideality.COUPLING_QUANTIZATION: {"bits_A": None},
    Nonideality.INPUT_QUANTIZATION: {"bits_b": None},
    Nonideality.ADC_QUANTIZATION: {"bits_adc": None},
    Nonideality.STOCHASTIC_ROUNDING: {"rounding": "nearest"},
    Nonideality.READOUT_CLIPPING: {"v_range_v": math.inf},
    Nonideality.DYNAMICS_CLIPPING: {"clip_in_dynamics": False},
    Nonideality.SYMMETRIC_MISMATCH: {"mismatch_sigma": 0.0},
    Nonideality.ASYMMETRIC_MISMATCH: {"mismatch_sigma": 0.0},
    Nonideality.DRIFT: {"drift_sigma": 0.0},
    Nonideality.UNDERDAMPED: {"regime": "overdamped"},
    Nonideality.TILING: {"n_units": None},
}
"""For each member, the ``HardwareSpec.replace`` arguments that switch it off (removing the rails
also needs ``bits_adc=None`` and ``clip_in_dynamics=False``, which depend on them)."""


def describe(feature: Nonideality, hw: HardwareSpec, size: int | None = None) -> str:
    """``feature`` in words, with the field value of ``hw`` that switches it on."""
    return _LABELS[feature](hw, size)


class UnmodelledHardwareError(HardwareSpecError, InputError):
    """A path was asked to run hardware with a non-ideality it does not model; the message names
    each one, the field that switches it on and how to turn it off. Both a hardware error and an
    input error (the method asked for does not fit the hardware given)."""


def refusal(
    hw: HardwareSpec, features: Iterable[Nonideality], what: str, alternative: str, size: int | None = None
) -> str:
    """The message of a refusal: ``what`` cannot model ``features`` of ``hw``; ``alternative``
    (e.g. "use the dense simulator") or turn them off."""
    features = list(features)
    changes: dict[str, object] = {}
    for feature in features:  # both mismatch kinds share one switch
        changes.update(TURN_OFF[feature])
    off = ", ".join(f"{name}={'math.inf' if value == math.inf else repr(value)}" for name, value in changes.items())
    return (
        f"{what} cannot model {', '.join(describe(f, hw, size) for f in features)}; "
        f"{alternative}, or turn {'it' if len(features) == 1 else 'them'} off (hardware.replace({off}))"
    )


def check_modelled(
    hw: HardwareSpec, models: frozenset[Nonideality], what: str, alternative: str, size: int | None = None
) -> None:
    """Raise :class:`UnmodelledHardwareError` (:func:`refusal`) unless ``models`` covers
    everything ``hw`` requires at problem size ``size``."""
    missing = unmodelled(hw, models, size)
    if missing:
        raise UnmodelledHardwareError(refusal(hw, missing, what, alternative, size))
