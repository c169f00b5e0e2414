"""Readout: ADC conversion of the sampled node voltages and the time-average estimators.

The accumulator receives samples of the node voltages (volts, original basis), converts them
through the ADC (rounding and clipping at the rails), and keeps running sums for

* the time-averaged mean (linear solve), with a batch-means standard error: the ``N`` samples
  are cut into ``n_batches`` contiguous batches whose means are nearly independent when a batch
  is much longer than the correlation time, so ``stderr^2 = var(batch means) / n_batches``;
* the time-averaged second moment ``(1/N) sum x x^T`` (inversion, ``b = 0``).
"""

from __future__ import annotations

from .backends import Array, ArrayBackend, RandomSource
from .quantize import Quantizer


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
