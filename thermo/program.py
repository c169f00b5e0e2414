"""Programming the chip: scaling ``A`` and ``b`` into the hardware ranges, DAC quantization and
the chip's static mismatch.

Scaling ("noise management" in the analog-crossbar convention): ``A = alpha * A_hat`` with
``alpha = max|A_ij| / coupling_range`` so the couplings fill the DAC range, and per right-hand
side ``b = beta * b_hat`` with ``beta = max|b| / input_range_v``. The chip's stationary mean is
``A_hat^-1 b_hat``, so the solution is read back as ``x = (beta / alpha) * x_hat`` and the
inverse as ``A^-1 = A_hat^-1 / alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backends import Array, ArrayBackend, RandomSource
from .hardware import HardwareSpec
from .quantize import Quantizer


@dataclass(frozen=True)
class ProgrammedMatrix:
    """The coupling matrix as the chip realizes it.

    ``realized`` is ``(d, d)`` float64 on the host (dimensionless couplings), ``alpha`` the scale
    with ``A = alpha * A_hat``; ``dac_rel_error`` is ``||A_q - A_hat||_F / ||A_hat||_F`` (DAC
    only) and ``total_rel_error`` includes mismatch.
    """

    realized: np.ndarray
    alpha: float
    dac_rel_error: float
    total_rel_error: float
    symmetric: bool


def mismatch_pattern(chip_seed: int, d: int, symmetric: bool) -> np.ndarray:
    """Static relative errors ``E`` (unit variance) of the chip's couplings, ``(d, d)``.

    Row ``i`` is drawn from its own stream seeded by ``(chip_seed, i)``, so a smaller problem
    sees the top-left block of a larger one: the same chip, whatever the problem size.
    With ``symmetric`` the element shared by ``(i, j)`` and ``(j, i)`` carries one error.
    """
    e = np.empty((d, d))
    for i in range(d):
        e[i] = np.random.default_rng(np.random.SeedSequence([chip_seed, i, 0x313A7C])).standard_normal(d)
    if symmetric:
        e = np.triu(e) + np.triu(e, 1).T
    return e


def program_matrix(
    a: np.ndarray, hw: HardwareSpec, rng: RandomSource, backend: ArrayBackend, chip_index: int = 0
) -> ProgrammedMatrix:
    """Scale, quantize and apply the chip's mismatch to ``a`` (host float64, ``(d, d)``)."""
    a = np.asarray(a, dtype=np.float64)
    alpha = float(np.abs(a).max()) / hw.coupling_range
    a_hat = a / alpha
    dac = Quantizer(hw.bits_A, hw.coupling_range, hw.rounding)
    a_q = a_hat
    if hw.bits_A is not None:
        if hw.rounding == "stochastic":
            # One stochastic draw per coupling; a shared element gets a single draw.
            q, _ = dac.apply(backend.asarray(a_hat, "float64"), backend, rng)
            a_q = backend.to_numpy(q).astype(np.float64)
            if hw.mismatch_symmetric:
                a_q = np.triu(a_q) + np.triu(a_q, 1).T
        else:
            a_q = np.clip(np.round(a_hat / dac.step) * dac.step, -hw.coupling_range, hw.coupling_range)
    realized = a_q
    if hw.mismatch_sigma > 0:
        e = mismatch_pattern(hw.chip_seed + chip_index, a.shape[0], hw.mismatch_symmetric)
        realized = a_q * (1.0 + hw.mismatch_sigma * e)
    norm = np.linalg.norm(a_hat)
    return ProgrammedMatrix(
        realized=realized,
        alpha=alpha,
        dac_rel_error=float(np.linalg.norm(a_q - a_hat) / norm),
        total_rel_error=float(np.linalg.norm(realized - a_hat) / norm),
        symmetric=hw.mismatch_sigma == 0 or hw.mismatch_symmetric,
    )


@dataclass(frozen=True)
class ProgrammedInputs:
    """Input voltages ``b_hat`` (``(d, c)`` on the backend) and their scales ``beta`` (``(c,)``)."""

    b_hat: Array
    beta: np.ndarray
    dac_rel_error: float


def program_inputs(
    b: np.ndarray, hw: HardwareSpec, rng: RandomSource, backend: ArrayBackend, dtype: str, headroom: np.ndarray
) -> ProgrammedInputs:
    """Scale each column of ``b`` (host, ``(d, c)``) to ``headroom * input_range_v`` and quantize.

    ``headroom`` (``(c,)``, in (0, 1]) is lowered by bound management when the readout clips.
    """
    b = np.asarray(b, dtype=np.float64)
    peak = np.abs(b).max(axis=0)
    beta = np.where(peak > 0, peak / (hw.input_range_v * headroom), 1.0)
    b_hat = b / beta
    dac = Quantizer(hw.bits_b, hw.input_range_v, hw.rounding)
    b_q, _ = dac.apply(backend.asarray(b_hat, dtype), backend, rng)
    err = np.linalg.norm(backend.to_numpy(b_q) - b_hat) / max(np.linalg.norm(b_hat), 1e-300)
    return ProgrammedInputs(b_hat=b_q, beta=beta, dac_rel_error=float(err))
