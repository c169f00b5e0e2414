"""Readout: ADC conversion of the sampled node voltages and the time-average estimators.

The accumulator receives samples of the node voltages (volts, original basis), converts them
through the ADC (rounding and clipping at the rails), and keeps running sums for

* the time-averaged mean (linear solve), with a batch-means standard error: the ``N`` samples
  are cut into ``n_batches`` contiguous batches whose means are nearly independent when a batch
  is much longer than the correlation time, so ``stderr^2 = var(batch means) / n_batches``;
* the time-averaged second moment ``(1/N) sum x x^T`` (inversion, ``b = 0``).

When the ADC's step is fine against the thermal noise (the dither condition) and the rails are
far, the conversion is, to the precision stated below, the reading plus an independent error
(:class:`QuantizationNoise`): the estimators can then be drawn from their laws
(:func:`readout_law_refusal` says when; :mod:`thermo.covariance_law`, the solver's window average).

**The dither condition.** Widrow's quantization theorem: a step-``Delta`` quantizer's errors on a
set of readings ``z`` are independent, uniform on ``[-Delta/2, Delta/2]`` and uncorrelated with ``z``
exactly when the characteristic function of ``z`` vanishes at every non-zero point of the lattice
``(2 pi / Delta) Z^m``; the moments up to fourth order that the estimators' means and variances
involve deviate from that model by terms of the size of the characteristic function there. For
the chip's Gaussian readings ``|phi(omega)| = exp(-Var(omega^T z) / 2)`` whatever their mean.
Each reading vector is ``x_t = Phi x_{t-1} + eta_t`` with fresh noise of covariance
``V diag(s_j (1 - rho_j^2)) V^T >= q_min I``, ``q_min = kT (1 - exp(-2 lam_max h)) / lam_max``
(:func:`min_innovation_variance`), so ``Var(sum_t omega_t^T x_t) >= q_min sum_s |g_s|^2`` with
``g_s = sum_{t>=s} Phi^(t-s) omega_t``; since ``omega_s = g_s - Phi g_{s+1}`` and ``|Phi| <= 1``,
``|omega|^2 <= 4 |g|^2``. Every lattice point has ``|omega| >= 2 pi / Delta``, hence
``|phi| <= exp(-pi^2 q_min / (2 Delta^2))``, whichever readings (units, times) are involved. The
condition ``Delta <= DITHER_STEP_FRACTION sqrt(q_min)`` (one half) makes that
``<= exp(-2 pi^2) = 2.7e-9``. It is on the per-sample fresh noise, not on the stationary spread
``std(x_i)`` (which it implies, ``q_min <= kT (A_hat^-1)_ii``): a slow mode barely moves between
readings, and if ``Delta`` exceeded its step-to-step motion the errors of successive readings
would be nearly equal and would not average out. Stochastic rounding is unbiased and
independent given the readings exactly; the condition then only makes the fractional part
uniform, which sets its variance ``Delta^2 / 6``.

**Rails.** Clipping is left to the path unless every unit's reading stays within
``RAIL_SIGMAS = 6`` standard deviations (stationary, an upper bound from a deterministic start)
of the rails beyond its largest mean: the probability of a clipped reading is then at most
``2e-9`` and its effect on the second moment ``~1e-7`` relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .backends import Array, ArrayBackend, RandomSource
from .quantize import Quantizer

DITHER_STEP_FRACTION = 0.5
"""Largest ADC step, as a fraction of ``sqrt(q_min)`` (module docstring), for the noise model."""

RAIL_SIGMAS = 6.0
"""Smallest distance of the rails from every unit's peak mean, in its standard deviations."""


@dataclass(frozen=True)
class QuantizationNoise:
    """The ADC's rounding error as independent noise (dither condition, module docstring):
    ``variance = E e^2`` (V^2: ``Delta^2 / 12`` nearest, ``Delta^2 / 6`` stochastic) and
    ``square_variance = Var(e^2)`` (V^4: ``Delta^4 / 180`` nearest, uniform errors;
    ``7 Delta^4 / 180`` stochastic, where ``e`` is ``(1 - f) Delta`` with probability ``f`` and
    ``-f Delta`` otherwise, ``f`` uniform). Zero mean, white in time and across units."""

    variance: float
    square_variance: float

    @classmethod
    def of(cls, adc: Quantizer) -> "QuantizationNoise":
        step = adc.step
        if adc.rounding == "stochastic":
            return cls(step**2 / 6.0, 7.0 * step**4 / 180.0)
        return cls(step**2 / 12.0, step**4 / 180.0)


def min_innovation_variance(eigenvalues: np.ndarray, kT: float, h: float) -> float:
    """``q_min = kT (1 - exp(-2 lam_max h)) / lam_max`` (V^2): the smallest variance of the fresh
    thermal noise a reading carries over the previous one (overdamped modes, interval ``h`` tau)."""
    lam_max = float(np.max(eigenvalues))
    return kT * -math.expm1(-2.0 * lam_max * h) / lam_max


def readout_law_refusal(
    adc: Quantizer, innovation_variance: float, unit_std: np.ndarray, peak_mean: np.ndarray | float = 0.0
) -> str | None:
    """Why the readout of this run cannot enter an estimator's law (``None`` when it can): an ADC
    step above ``DITHER_STEP_FRACTION sqrt(q_min)``, or rails closer than ``RAIL_SIGMAS`` standard
    deviations (``unit_std``, ``(d,)`` V) beyond a unit's largest ``|mean|`` (``peak_mean``,
    ``(d,)`` or ``(d, c)`` V). An ideal converter without rails always can."""
    if adc.bits is not None:
        allowed = DITHER_STEP_FRACTION * math.sqrt(innovation_variance)
        if adc.step > allowed:
            return (f"the ADC step {adc.step:.3g} V exceeds the dither condition's {allowed:.3g} V "
                    f"({DITHER_STEP_FRACTION:g} sqrt of the fresh noise per reading, {innovation_variance:.3g} V^2)")
    if adc.clips:
        peak = np.asarray(peak_mean, dtype=np.float64)
        reach = peak + RAIL_SIGMAS * (np.asarray(unit_std, dtype=np.float64) if peak.ndim < 2 else np.asarray(unit_std)[:, None])
        if float(np.max(reach)) > adc.full_scale:
            return (f"the readings come within {RAIL_SIGMAS:g} standard deviations of the rails "
                    f"(+-{adc.full_scale:g} V; furthest reach {float(np.max(reach)):.3g} V)")
    return None


class SampleAccumulator:
    """Running sums of ``n_total`` ADC-converted samples of shape ``(d, c)``."""

    def __init__(
        self,
        backend: ArrayBackend,
        dtype: str,
        d: int,
        c: int,
        n_total: int,
        adc: Quantizer,
        rng: RandomSource,
        *,
        second_moment: bool = False,
        n_batches: int = 16,
    ) -> None:
        self.backend, self.dtype = backend, dtype
        self.d, self.c, self.n_total = d, c, n_total
        self.adc, self.rng = adc, rng
        self.n_batches = max(1, min(n_batches, n_total))
        self.batch_sums = backend.zeros((self.n_batches, d, c), dtype)
        self.second = backend.zeros((d, d), dtype) if second_moment else None
        self.seen = 0
        self.clipped = 0

    def _convert(self, x: Array) -> Array:
        if self.adc.bits is None and not self.adc.clips:
            return x
        out, n_clipped = self.adc.apply(x, self.backend, self.rng)
        self.clipped += n_clipped
        return out

    def add(self, samples: Array) -> None:
        """Add ``m`` consecutive samples, shape ``(m, d, c)`` or a single ``(d, c)``."""
        if samples.ndim == 2:
            samples = samples[None]
        samples = self._convert(samples)
        m = samples.shape[0]
        start = 0
        while start < m:
            index = self.seen + start
            batch = index * self.n_batches // self.n_total
            stop = min(m, start + self._batch_start(batch + 1) - index)
            self.batch_sums[batch] += samples[start:stop].sum(0)
            start = stop
        if self.second is not None:
            flat = samples.permute(1, 0, 2) if self.backend.name == "torch" else samples.transpose(1, 0, 2)
            flat = flat.reshape(self.d, -1)
            self.backend.addmm_(self.second, flat, flat.T)
        self.seen += m

    def _batch_start(self, k: int) -> int:
        """Index of the first sample of batch ``k``: ``ceil(k n_total / n_batches)``, the inverse
        of the assignment ``batch = index * n_batches // n_total``."""
        return -(-k * self.n_total // self.n_batches)

    @property
    def clip_fraction(self) -> float:
        """Fraction of converted values that hit the rails."""
        return self.clipped / max(1, self.seen * self.d * self.c)

    def mean(self) -> Array:
        """Time-averaged readout, shape ``(d, c)`` (volts)."""
        return self.batch_sums.sum(0) / self.seen

    def stderr(self) -> Array | None:
        """Batch-means standard error of :meth:`mean`, ``(d, c)``; None with fewer than 4 batches."""
        if self.n_batches < 4 or self.seen < self.n_total:
            return None
        sizes = [self._batch_start(k + 1) - self._batch_start(k) for k in range(self.n_batches)]
        size = self.backend.asarray(sizes, self.dtype)[:, None, None]
        means = self.batch_sums / size
        centered = means - means.mean(0)
        var = (centered * centered).sum(0) / (self.n_batches - 1)
        return self.backend.sqrt(var / self.n_batches)

    def second_moment(self) -> Array:
        """Time-averaged ``x x^T`` over all samples and chains, ``(d, d)`` (V^2)."""
        if self.second is None:
            raise RuntimeError("this accumulator does not keep the second moment")
        return self.second / (self.seen * self.c)
