"""The analog side of the hybrid (thermodynamic natural-gradient) loop, simulated exactly.

Between two uploads the device holds a constant ``A = U U^T + lam I`` (``U`` ``(N, r)``, given by
its products, see :mod:`thermo.lowrank`) and a constant input ``g``; its node voltages follow

    dx = -(A x - g) dt + sqrt(2 kappa) dW        (t in units of tau),

so every transition is Gaussian with a closed form (:class:`thermo.lowrank.LowRankOU`), or its
Lanczos approximation when the rank is too large for an eigendecomposition. The device here
adds what the hardware does around that law (:class:`LowRankDeviceSpec`):

- the coupling DAC programs the curvature's arrays (:func:`program_arrays`): the paper's device
  holds ``J_f`` (``b d_z x N``), ``H_L`` (``b d_z x b d_z``) and ``J_f^T`` in resistor arrays, each
  quantized to ``bits_coupling`` with its full scale auto-ranged to its own largest entry (as
  :func:`thermo.program.program_matrix` ranges the dense chip's couplings); the realized
  ``A_q = J_q^T H_q J_q / b + lam I`` is low rank with a core (:class:`~thermo.lowrank.LowRankCurvature`);
- the input DAC converts ``g`` (``bits_in`` over ``+-input_range``; ``None`` range: the
  converter is ranged to the largest ``|g_i|`` of each upload);
- the state is read by ``n_readout`` samples every ``sample_interval_tau`` ending at the end of
  the run, averaged, and converted by the ADC (``bits_out`` over ``+-output_range``, the same
  auto-ranging rule);
- between reading and the next upload the device keeps running on the previous upload for a
  delay ``t_d`` (:meth:`LowRankDevice.idle`): the digital side is computing the next gradient;
- the state is kept across uploads (warm start) unless :meth:`LowRankDevice.reset` is called.

Times are in tau; ``LowRankDeviceSpec.tau_s`` converts them to seconds. This module knows
nothing about training: it takes a curvature operator and a vector.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from .backends import TorchBackend, get_backend
from .errors import (
    HardwareSpecError,
    InputError,
    NonFiniteInputError,
    ShapeMismatchError,
)
from .hardware import HardwareSpec
from .lowrank import KrylovOU, LowRankCurvature, LowRankOU
from .quantize import Quantizer

Tensor = torch.Tensor
Method = Literal["auto", "eigen", "krylov"]


@dataclass(frozen=True)
class LowRankDeviceSpec:
    """What the hybrid loop's device is: its time constant, noise, converters and readout.

    ``kappa`` is the noise strength of the dynamics in the units of ``x`` (the stationary
    covariance is ``kappa A^-1``; the paper's ``kappa_0``). ``method``: ``eigen`` (exact, one
    ``eigh`` of the ``r x r`` Gram per upload), ``krylov`` (``krylov_steps`` Lanczos steps of
    GGN-vector products per application) or ``auto`` (eigen up to ``max_eigen_rank``).
    ``bits_coupling`` (``None``: ideal) and ``rounding`` are the coupling DAC that programs the
    arrays (:func:`program_arrays`), ``coupling_range`` its full scale in DAC units.
    """

    tau_s: float = 1e-6
    kappa: float = 0.0
    bits_in: int | None = None
    input_range: float | None = None
    bits_out: int | None = None
    output_range: float | None = None
    n_readout: int = 1
    sample_interval_tau: float = 0.1
    method: Method = "auto"
    max_eigen_rank: int = 4096
    krylov_steps: int = 40
    bits_coupling: int | None = None
    rounding: str = "nearest"
    coupling_range: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau_s) and self.tau_s > 0):
            raise HardwareSpecError(f"tau_s must be a positive number of seconds, got {self.tau_s!r}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise HardwareSpecError(f"kappa must be finite and >= 0, got {self.kappa!r}")
        for name in ("bits_in", "bits_out", "bits_coupling"):
            bits = getattr(self, name)
            if bits is not None and not (isinstance(bits, int) and 2 <= bits <= 32):
                raise HardwareSpecError(f"{name} must be None or an integer in [2, 32], got {bits!r}")
        for name in ("input_range", "output_range"):
            value = getattr(self, name)
            if value is not None and not (value > 0):
                raise HardwareSpecError(f"{name} must be None (auto-ranged) or > 0, got {value!r}")
        if not (isinstance(self.n_readout, int) and self.n_readout >= 1):
            raise HardwareSpecError(f"n_readout must be an integer >= 1, got {self.n_readout!r}")
        if not (math.isfinite(self.sample_interval_tau) and self.sample_interval_tau > 0):
            raise HardwareSpecError(f"sample_interval_tau must be > 0, got {self.sample_interval_tau!r}")
        if self.method not in ("auto", "eigen", "krylov"):
            raise HardwareSpecError(f"method must be auto, eigen or krylov, got {self.method!r}")
        if self.max_eigen_rank < 1 or self.krylov_steps < 1:
            raise HardwareSpecError("max_eigen_rank and krylov_steps must be >= 1")
        if self.rounding not in ("nearest", "stochastic"):
            raise HardwareSpecError(f"rounding must be 'nearest' or 'stochastic', got {self.rounding!r}")
        if not (math.isfinite(self.coupling_range) and self.coupling_range > 0):
            raise HardwareSpecError(f"coupling_range must be finite and > 0, got {self.coupling_range!r}")

    @classmethod
    def from_hardware(cls, hw: HardwareSpec, **overrides: object) -> LowRankDeviceSpec:
        """The hybrid device of a :class:`HardwareSpec`: its ``tau_s``, ``kT`` as ``kappa``, the
        coupling DAC (``bits_A``, ``rounding``, ``coupling_range``), the input DAC's ``bits_b``,
        the ADC's ``bits_adc`` and the readout sample interval.

        The converters are auto-ranged (``input_range = output_range = None``): the loop of the
        paper works in the units of ``x`` and states no scaling of ``g`` into volts, so the
        hardware's voltage ranges have no counterpart here; give ranges (units of ``x``) to model
        fixed rails."""
        fields = dict(tau_s=hw.tau_s, kappa=hw.kT, bits_in=hw.bits_b, bits_out=hw.bits_adc,
                      sample_interval_tau=hw.sample_interval_tau, bits_coupling=hw.bits_A, rounding=hw.rounding,
                      coupling_range=hw.coupling_range)
        return cls(**{**fields, **overrides})

    def replace(self, **changes: object) -> LowRankDeviceSpec:
        return dataclasses.replace(self, **changes)


def convert(x: Tensor, bits: int | None, full_scale: float | None) -> Tensor:
    """A converter: ``x`` rounded to ``bits`` over ``+-full_scale`` (``None``: ranged to
    ``max|x|``), saturating at the rails; ``bits=None`` with a range only clips."""
    if bits is None and full_scale is None:
        return x
    scale = float(x.abs().max()) if full_scale is None else full_scale
    if scale == 0:
        return x
    out, _ = Quantizer(bits, scale).apply(x, get_backend("torch"))
    return out


@dataclass(frozen=True)
class ProgrammedArrays:
    """The TNGD device's resistor arrays as the coupling DAC realized them (units of ``J`` and ``H``).

    ``jacobian`` ``J_q`` ``(r, N)`` (``r = b d_z``; row ``n d_z + k`` is ``dz_{n,k} / dtheta``) is
    what the ``J_f`` array holds; the ``J_f^T`` array holds the same codes (the host computes
    each value's code once and writes it to both arrays), so the realized operator stays
    symmetric. ``hessian`` ``H_q`` ``(b, d_z, d_z)`` are the diagonal blocks of the ``H_L`` array
    (its off-diagonal blocks are zeros, which every DAC represents exactly). ``*_scale`` is the
    auto-range ``alpha = max|entry| / coupling_range`` of each array, ``*_rel_error`` its
    Frobenius relative quantization error.
    """

    jacobian: Tensor
    hessian: Tensor
    jacobian_scale: float
    hessian_scale: float
    jacobian_rel_error: float
    hessian_rel_error: float

    @property
    def batch_size(self) -> int:
        return self.hessian.shape[0]

    def curvature(self, damping: float) -> LowRankCurvature:
        """``A_q = J_q^T H_q J_q / b + damping I`` as a low-rank curvature: ``U = J_q^T / sqrt(b)``
        (products are GEMMs with the formed ``J_q``), Gram ``J_q J_q^T / b``, core the
        block-diagonal ``H_q``. Same normalisation as the GGN ``G = J_f^T H_L J_f / b``."""
        jq, b = self.jacobian, self.batch_size
        scale = 1.0 / math.sqrt(b)
        gram = (jq @ jq.mT) / b
        return LowRankCurvature(
            apply_u=lambda c: (jq.mT @ c) * scale,
            apply_ut=lambda v: (jq @ v) * scale,
            gram=gram,
            damping=damping,
            n=jq.shape[1],
            core=torch.block_diag(*self.hessian),
        )


def _program(x: Tensor, dac: Quantizer, seed: int | None) -> tuple[Tensor, float, float]:
    """One array through the coupling DAC, auto-ranged as :func:`thermo.program.program_matrix`
    does: ``alpha = max|x| / coupling_range``, ``x_q = alpha * Q(x / alpha)``. Returns
    ``(x_q, alpha, ||x_q - x||_F / ||x||_F)``."""
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak == 0 or dac.bits is None:
        return x, (peak / dac.full_scale if peak else 1.0), 0.0
    alpha = peak / dac.full_scale
    backend = TorchBackend(x.device)
    rng = backend.random(0 if seed is None else seed) if dac.rounding == "stochastic" else None
    # the grid alpha * (levels of +-coupling_range) is the grid of a DAC over +-peak in x's units:
    # quantizing x there skips two full passes over J_f (x / alpha and back)
    xq, _ = Quantizer(dac.bits, peak, dac.rounding).apply(x, backend, rng)
    err = float(torch.linalg.vector_norm(xq - x) / torch.linalg.vector_norm(x))
    return xq, alpha, err


def _all_finite(x: Tensor) -> bool:
    """No NaN or infinity in ``x``: a NaN or inf entry makes the sum non-finite, so a finite sum
    settles it in one reduction; only an overflowing sum needs the elementwise check."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def program_arrays(
    jacobian: Tensor,
    hessian: Tensor,
    bits: int | None,
    rounding: str = "nearest",
    coupling_range: float = 1.0,
    seed: int | None = None,
) -> ProgrammedArrays:
    """Program the TNGD arrays ``J_f`` ``(b d_z, N)`` and ``H_L`` (its blocks ``(b, d_z, d_z)``,
    each symmetric) through a ``bits``-bit coupling DAC (:class:`~thermo.quantize.Quantizer`
    over ``+-coupling_range``, ``nearest`` or ``stochastic`` rounding seeded by ``seed``).

    Each array is auto-ranged to its own largest entry; ``J_f^T`` shares ``J_f``'s codes and a
    stochastic ``H_L`` draws one code per symmetric pair (upper triangle mirrored), so
    ``A_q = J_q^T H_q J_q / b + lam I`` is symmetric. ``bits=None`` programs the arrays exactly.
    """
    if jacobian.ndim != 2 or hessian.ndim != 3 or hessian.shape[1] != hessian.shape[2]:
        raise ShapeMismatchError(
            f"program_arrays needs J_f (b d_z, N) and H_L blocks (b, d_z, d_z), got {tuple(jacobian.shape)} and "
            f"{tuple(hessian.shape)}"
        )
    if hessian.shape[0] * hessian.shape[1] != jacobian.shape[0]:
        raise ShapeMismatchError(
            f"J_f has {jacobian.shape[0]} rows but the H_L blocks {tuple(hessian.shape)} need b d_z = "
            f"{hessian.shape[0] * hessian.shape[1]}"
        )
    for name, x in (("J_f", jacobian), ("H_L", hessian)):
        if not _all_finite(x):
            raise NonFiniteInputError(f"the {name} array to program contains NaN or infinity")
    dac = Quantizer(bits, coupling_range, rounding)
    jq, j_scale, j_err = _program(jacobian, dac, seed)
    hq, h_scale, h_err = _program(hessian, dac, None if seed is None else seed + 1)
    if rounding == "stochastic" and bits is not None:
        hq = torch.triu(hq) + torch.triu(hq, 1).mT
    return ProgrammedArrays(jq, hq, j_scale, h_scale, j_err, h_err)


class LowRankDevice:
    """The device of the hybrid loop, its state kept across uploads.

    Usage per training step: ``idle(t_d)`` (the previous upload runs on while the digital side
    works), ``upload(curvature, g)``, optionally ``reset(x0)``, then ``run(t)`` returns the
    converted readout. ``analog_time_tau`` accumulates the device time.
    """

    def __init__(self, spec: LowRankDeviceSpec, generator: torch.Generator | None = None) -> None:
        self.spec = spec
        self.generator = generator
        self.state: Tensor | None = None
        self.g: Tensor | None = None
        self.process: LowRankOU | KrylovOU | None = None
        self.analog_time_tau = 0.0

    def upload(self, curvature: LowRankCurvature, g: Tensor) -> None:
        """Program ``A = U U^T + lam I`` and the input ``g`` ``(N,)`` (through the input DAC)."""
        if g.ndim != 1 or g.shape[0] != curvature.n:
            raise InputError(f"g must have shape ({curvature.n},), got {tuple(g.shape)}")
        if not bool(torch.isfinite(g).all()):
            raise InputError("g contains NaN or infinity")
        spec = self.spec
        use_krylov = spec.method == "krylov" or (spec.method == "auto" and curvature.rank > spec.max_eigen_rank)
        if not bool(torch.isfinite(curvature.gram).all()):
            raise NonFiniteInputError("the Gram matrix of the curvature contains NaN or infinity")
        if use_krylov:
            self.process = KrylovOU.from_curvature(curvature, spec.kappa, max_steps=spec.krylov_steps)
        else:
            try:
                self.process = LowRankOU(curvature, spec.kappa)
            except torch.linalg.LinAlgError as err:
                scale = float(curvature.gram.abs().max())
                raise NonFiniteInputError(
                    f"the Gram matrix (max |K| = {scale:.3g}) cannot be diagonalized: {err} (a diverging model?)"
                ) from err
        self.g = convert(g, spec.bits_in, spec.input_range)

    def reset(self, x0: Tensor | None) -> None:
        """Set the state (``None``: zero volts)."""
        if x0 is not None and x0.ndim != 1:
            raise InputError(f"the state must be a vector, got shape {tuple(x0.shape)}")
        self.state = None if x0 is None else x0.clone()

    def _start(self) -> Tensor:
        if self.process is None or self.g is None:
            raise InputError("nothing uploaded: call upload(curvature, g) first")
        return torch.zeros_like(self.g) if self.state is None else self.state

    def idle(self, t_d: float) -> None:
        """Let the device run ``t_d`` tau on the current upload without reading (no-op before
        the first upload)."""
        if t_d < 0 or not math.isfinite(t_d):
            raise InputError(f"the delay must be finite and >= 0, got {t_d!r}")
        if t_d == 0 or self.process is None:
            return
        self.state = self.process.sample(self._start(), self.g, t_d, self.generator)
        self.analog_time_tau += t_d

    def run(self, t: float) -> Tensor:
        """Run ``t`` tau from the state and return the converted average of the last
        ``n_readout`` samples (``t = 0``: the state as it is). The state becomes ``x(t)``."""
        if t < 0 or not math.isfinite(t):
            raise InputError(f"the analog time must be finite and >= 0, got {t!r}")
        x0 = self._start()
        spec = self.spec
        if t == 0:
            read, final = x0.clone(), x0
        else:
            n = min(spec.n_readout, int(t / spec.sample_interval_tau + 1e-9) + 1)
            read, final = self.process.readout(x0, self.g, t, n, spec.sample_interval_tau, self.generator)
        if not bool(torch.isfinite(read).all() and torch.isfinite(final).all()):
            raise NonFiniteInputError(
                "the device state is not finite: the uploaded curvature is too ill-conditioned for its "
                "eigendecomposition (a diverging model?)"
            )
        self.state = final
        self.analog_time_tau += t
        return convert(read, spec.bits_out, spec.output_range)
