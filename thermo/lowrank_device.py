"""The analog side of the hybrid (thermodynamic natural-gradient) loop, simulated exactly.

Between two uploads the device holds a constant ``A = U U^T + lam I`` (``U`` ``(N, r)``, given by
its products, see :mod:`thermo.lowrank`) and a constant input ``g``; its node voltages follow

    dx = -(A x - g) dt + sqrt(2 kT) dW        (t in units of tau),

so every transition is Gaussian with a closed form (:class:`thermo.lowrank.LowRankOU`), or its
Lanczos approximation when the rank is too large for an eigendecomposition. The chip is a
:class:`~thermo.hardware.HardwareSpec` (every physical quantity is read from it: ``kT`` is the
paper's ``kappa_0``); the device here adds what the hardware does around that law
(:class:`LowRankDeviceSpec` holds the chip and the method's settings):

- the coupling DAC programs the curvature's arrays (:func:`program_arrays`): the paper's device
  holds ``J_f`` (``b d_z x N``), ``H_L`` (``b d_z x b d_z``) and ``J_f^T`` in resistor arrays, each
  quantized to ``bits_A`` with its full scale auto-ranged to its own largest entry (as
  :func:`thermo.program.program_matrix` ranges the dense chip's couplings); the realized
  ``A_q = J_q^T H_q J_q / b + lam I`` is low rank with a core (:class:`~thermo.lowrank.LowRankCurvature`);
- the input DAC converts ``g`` (``bits_b`` over ``+-input_range``; ``None`` range: the
  converter is ranged to the largest ``|g_i|`` of each upload);
- the state is read by ``n_readout`` samples every ``sample_interval_tau`` ending at the end of
  the run, averaged, and converted by the ADC (``bits_adc`` over ``+-output_range``, the same
  auto-ranging rule); the three converters round as ``rounding`` says;
- between reading and the next upload the device keeps running on the previous upload for a
  delay ``t_d`` (:meth:`LowRankDevice.idle`): the digital side is computing the next gradient;
- the state is kept across uploads (warm start) unless :meth:`LowRankDevice.reset` is called.

What it models is the one list :data:`MODELS` (:mod:`thermo.capabilities`); hardware that needs
more (mismatch, drift, clipping inside the dynamics, underdamped nodes, a problem larger than
``n_units``) is refused with :class:`~thermo.capabilities.UnmodelledHardwareError` naming it.

Times are in tau; ``hardware.tau_s`` converts them to seconds. This module knows nothing about
training: it takes a curvature operator and a vector.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from . import lowrank
from .backends import RandomSource, TorchBackend, all_finite
from .capabilities import Nonideality, check_modelled
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

MODELS: frozenset[Nonideality] = lowrank.MODELS | {
    Nonideality.INPUT_QUANTIZATION,
    Nonideality.ADC_QUANTIZATION,
    Nonideality.STOCHASTIC_ROUNDING,
    Nonideality.READOUT_CLIPPING,
}
"""What the low-rank device represents: the propagation's (:data:`thermo.lowrank.MODELS`, the
coupling DAC on the arrays), the input DAC, the ADC, stochastic rounding in all three, and rails
on the readout: the ADC saturates at its range, which sits at ``output_range`` in the units of
``x`` (auto-ranged by default, the host scaling each reading into the rails as the dense solver's
input scaling keeps its readout inside them)."""

_WHAT = "the exact low-rank device (thermo.lowrank_device)"
_ALTERNATIVE = "use the dense chip simulator (thermo.ThermodynamicSolver; TNGD's method='simulator')"


@dataclass(frozen=True)
class LowRankDeviceSpec:
    """The hybrid loop's device: the chip it runs on and the method's settings.

    ``hardware`` is the chip; every physical quantity is read from it: ``tau_s``, ``kT`` (the
    noise strength of the dynamics in the units of ``x``: the stationary covariance is
    ``kT A^-1``, the paper's ``kappa_0``), the coupling DAC (``bits_A``, ``rounding``,
    ``coupling_range``) that programs the arrays (:func:`program_arrays`), the input DAC's
    ``bits_b``, the ADC's ``bits_adc`` (all three rounding as ``rounding``) and the readout's
    ``sample_interval_tau``. It must not need what the device does not model (:data:`MODELS`).

    The rest are choices of the method, not properties of the chip:

    - ``method``: ``eigen`` (exact, through the ``r x r`` Gram), ``krylov`` (``krylov_steps``
      Lanczos steps of GGN-vector products per application) or ``auto`` (eigen up to
      ``max_eigen_rank``);
    - ``propagator``: how the ``eigen`` method applies the Gram's matrix functions
      (:class:`~thermo.lowrank.LowRankOU`): ``eigh`` (one eigendecomposition per upload, the
      reference), ``krylov`` (block Lanczos on the Gram per application, to ``krylov_tol``;
      ``None``: its default) or ``auto`` (Krylov while its cost rule predicts it cheaper than
      the ``eigh``);
    - ``n_readout``: how many samples the host averages per read (the chip's sample rate sets
      their spacing);
    - ``input_range``, ``output_range`` (units of ``x``; ``None``: each conversion is ranged to
      its largest ``|value|``): how the host scales ``g`` onto the input DAC and the read onto
      the ADC. The chip's ranges are volts (``input_range_v``, ``v_range_v``) and the paper's
      loop states no volts-per-unit-of-``x`` scale, so where the rails sit in ``x``'s units is
      the host's scaling policy: auto-ranging is the dense solver's rule of scaling ``b`` to fill
      the input DAC; a fixed range models a host that never rescales, and the ADC saturates there.
    """

    hardware: HardwareSpec
    method: Method = "auto"
    max_eigen_rank: int = 4096
    krylov_steps: int = 40
    propagator: lowrank.Propagator = "auto"
    krylov_tol: float | None = None
    n_readout: int = 1
    input_range: float | None = None
    output_range: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.hardware, HardwareSpec):
            raise HardwareSpecError(f"hardware must be a HardwareSpec, got {type(self.hardware).__name__}")
        for name in ("input_range", "output_range"):
            value = getattr(self, name)
            if value is not None and not (value > 0):
                raise HardwareSpecError(f"{name} must be None (auto-ranged) or > 0, got {value!r}")
        if not (isinstance(self.n_readout, int) and self.n_readout >= 1):
            raise HardwareSpecError(f"n_readout must be an integer >= 1, got {self.n_readout!r}")
        if self.method not in ("auto", "eigen", "krylov"):
            raise HardwareSpecError(f"method must be auto, eigen or krylov, got {self.method!r}")
        if self.propagator not in lowrank.PROPAGATORS:
            raise HardwareSpecError(f"propagator must be one of {', '.join(lowrank.PROPAGATORS)}, got {self.propagator!r}")
        if self.krylov_tol is not None and not (0 < self.krylov_tol < 1):
            raise HardwareSpecError(f"krylov_tol must be None or in (0, 1), got {self.krylov_tol!r}")
        if self.max_eigen_rank < 1 or self.krylov_steps < 1:
            raise HardwareSpecError("max_eigen_rank and krylov_steps must be >= 1")
        # the chip size needs the problem's: checked at each upload
        check_modelled(self.hardware, MODELS, _WHAT, _ALTERNATIVE)

    def replace(self, **changes: object) -> LowRankDeviceSpec:
        return dataclasses.replace(self, **changes)


def convert(
    x: Tensor, bits: int | None, full_scale: float | None, rounding: str = "nearest", rng: RandomSource | None = None
) -> Tensor:
    """A converter: ``x`` rounded (``nearest``, or ``stochastic`` drawing from ``rng``) to
    ``bits`` over ``+-full_scale`` (``None``: ranged to ``max|x|``), saturating at the rails;
    ``bits=None`` with a range only clips."""
    if bits is None and full_scale is None:
        return x
    scale = float(x.abs().max()) if full_scale is None else full_scale
    if scale == 0:
        return x
    out, _ = Quantizer(bits, scale, rounding).apply(x, TorchBackend(x.device), rng)
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
        if not all_finite(x):
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

    @property
    def hardware(self) -> HardwareSpec:
        """The chip (``spec.hardware``)."""
        return self.spec.hardware

    def upload(self, curvature: LowRankCurvature, g: Tensor) -> None:
        """Program ``A = U U^T + lam I`` and the input ``g`` ``(N,)`` (through the input DAC).
        A problem larger than the chip (``N > hardware.n_units``) is refused: this device does
        not tile."""
        if g.ndim != 1 or g.shape[0] != curvature.n:
            raise InputError(f"g must have shape ({curvature.n},), got {tuple(g.shape)}")
        if not all_finite(g):
            raise InputError("g contains NaN or infinity")
        spec, hw = self.spec, self.hardware
        check_modelled(hw, MODELS, _WHAT, _ALTERNATIVE, size=curvature.n)
        use_krylov = spec.method == "krylov" or (spec.method == "auto" and curvature.rank > spec.max_eigen_rank)
        # the Gram is finite and symmetric: LowRankCurvature refused it otherwise at construction
        if use_krylov:
            self.process = KrylovOU.from_curvature(curvature, hw.kT, max_steps=spec.krylov_steps)
        else:
            try:
                self.process = LowRankOU(curvature, hw.kT, propagator=spec.propagator, krylov_tol=spec.krylov_tol)
            except torch.linalg.LinAlgError as err:
                scale = float(curvature.gram.abs().max())
                raise NonFiniteInputError(
                    f"the Gram matrix (max |K| = {scale:.3g}) cannot be diagonalized: {err} (a diverging model?)"
                ) from err
        self.g = self._convert(g, hw.bits_b, spec.input_range)

    def _convert(self, x: Tensor, bits: int | None, full_scale: float | None) -> Tensor:
        """``x`` through a converter of the chip (:func:`convert`); stochastic rounding draws its
        random source's seed from the device's generator."""
        rng = None
        if self.hardware.rounding == "stochastic" and bits is not None:
            device = self.generator.device if self.generator is not None else "cpu"
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=device))
            rng = TorchBackend(x.device).random(seed)
        return convert(x, bits, full_scale, self.hardware.rounding, rng)

    def reset(self, x0: Tensor | None) -> None:
        """Set the state (``None``: zero volts)."""
        if x0 is not None and x0.ndim != 1:
            raise InputError(f"the state must be a vector, got shape {tuple(x0.shape)}")
        self.state = None if x0 is None else x0.clone()

    def _start(self) -> Tensor:
        if self.process is None or self.g is None:
            raise InputError("nothing uploaded: call upload(curvature, g) first")
        return torch.zeros_like(self.g) if self.state is None else self.state

    def _propagate(self, draw):  # type: ignore[no-untyped-def]
        """``draw()``, a propagation of the process; an ``eigh`` it needs (the ``auto``
        propagator's fallback) that fails is the upload's non-finite-curvature error."""
        try:
            return draw()
        except (torch.linalg.LinAlgError, np.linalg.LinAlgError) as err:
            scale = float(self.process.curvature.gram.abs().max()) if hasattr(self.process, "curvature") else float("nan")
            raise NonFiniteInputError(
                f"the Gram matrix (max |K| = {scale:.3g}) cannot be diagonalized: {err} (a diverging model?)"
            ) from err

    def idle(self, t_d: float) -> None:
        """Let the device run ``t_d`` tau on the current upload without reading (no-op before
        the first upload)."""
        if t_d < 0 or not math.isfinite(t_d):
            raise InputError(f"the delay must be finite and >= 0, got {t_d!r}")
        if t_d == 0 or self.process is None:
            return
        self.state = self._propagate(lambda: self.process.sample(self._start(), self.g, t_d, self.generator))
        self.analog_time_tau += t_d

    def run(self, t: float) -> Tensor:
        """Run ``t`` tau from the state and return the converted average of the last
        ``n_readout`` samples (``t = 0``: the state as it is). The state becomes ``x(t)``."""
        if t < 0 or not math.isfinite(t):
            raise InputError(f"the analog time must be finite and >= 0, got {t!r}")
        x0 = self._start()
        spec, h = self.spec, self.hardware.sample_interval_tau
        if t == 0:
            read, final = x0.clone(), x0
        else:
            n = min(spec.n_readout, int(t / h + 1e-9) + 1)
            read, final = self._propagate(lambda: self.process.readout(x0, self.g, t, n, h, self.generator))
        if not (all_finite(read) and all_finite(final)):
            raise NonFiniteInputError(
                "the device state is not finite: the uploaded curvature is too ill-conditioned for its "
                "eigendecomposition (a diverging model?)"
            )
        self.state = final
        self.analog_time_tau += t
        return self._convert(read, self.hardware.bits_adc, spec.output_range)
