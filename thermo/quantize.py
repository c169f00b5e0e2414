"""Uniform quantizers for the coupling DAC, the input DAC and the readout ADC.

A ``bits``-bit converter over ``[-full_scale, full_scale]`` is modelled as a symmetric mid-tread
grid: levels ``k * step`` with integer ``|k| <= 2**(bits-1) - 1`` and
``step = full_scale / (2**(bits-1) - 1)``, so zero and both rails are exact levels (a signed,
offset-free converter; ``2**bits - 1`` levels). Values beyond the rails saturate and are counted.

Rounding is ``nearest`` (deterministic, error uniform in ``[-step/2, step/2]`` for a busy
signal, variance ``step**2 / 12``) or ``stochastic`` (round up with probability equal to the
fractional part: unbiased, ``E[q(x)] = x`` inside the range, variance at most ``step**2 / 4``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .backends import Array, ArrayBackend, RandomSource
from .errors import HardwareSpecError


@dataclass(frozen=True)
class Quantizer:
    """A converter: ``bits`` of resolution (``None`` = ideal) over ``+-full_scale``."""

    bits: int | None
    full_scale: float
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        if self.bits is not None and not (isinstance(self.bits, int) and 2 <= self.bits <= 32):
            raise HardwareSpecError(f"Quantizer.bits must be None or in [2, 32], got {self.bits!r}")
        if not (self.full_scale > 0):
            raise HardwareSpecError(f"Quantizer.full_scale must be > 0, got {self.full_scale!r}")
        if self.rounding not in ("nearest", "stochastic"):
            raise HardwareSpecError(f"Quantizer.rounding must be nearest or stochastic, got {self.rounding!r}")

    @property
    def step(self) -> float:
        """Distance between adjacent levels (0 for an ideal converter)."""
        if self.bits is None:
            return 0.0
        return self.full_scale / (2 ** (self.bits - 1) - 1)

    @property
    def clips(self) -> bool:
        return math.isfinite(self.full_scale)

    def apply(
        self, x: Array, backend: ArrayBackend, rng: RandomSource | None = None
    ) -> tuple[Array, int]:
        """Quantize ``x`` (any shape); return the converted array and how many entries clipped.

        ``rng`` is needed for stochastic rounding. An ideal converter with finite rails still
        clips.
        """
        n_clipped = 0
        if self.clips:
            n_clipped = backend.count(abs(x) > self.full_scale)
            if n_clipped:
                x = backend.clip_(backend.copy(x), -self.full_scale, self.full_scale)
        if self.bits is None:
            return x, n_clipped
        scaled = x / self.step
        if self.rounding == "stochastic":
            if rng is None:
                raise ValueError("stochastic rounding needs a random source")
            low = backend.floor(scaled)
            frac = scaled - low
            up = rng.uniform(tuple(x.shape), _dtype_of(x)) < frac
            levels = low + up
        else:
            levels = backend.round(scaled)
        return levels * self.step, n_clipped


def _dtype_of(x: Array) -> str:
    return "float32" if "float32" in str(x.dtype) else "float64"
