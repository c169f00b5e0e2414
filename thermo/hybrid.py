"""The analog side of the hybrid (thermodynamic natural-gradient) loop, simulated exactly.

Between two uploads the device holds a constant ``A = U U^T + lam I`` (``U`` ``(N, r)``, given by
its products, see :mod:`thermo.lowrank`) and a constant input ``g``; its node voltages follow

    dx = -(A x - g) dt + sqrt(2 kappa) dW        (t in units of tau),

so every transition is Gaussian with a closed form (:class:`thermo.lowrank.LowRankOU`), or its
Lanczos approximation when the rank is too large for an eigendecomposition. The device here
adds what the hardware does around that law (:class:`LowRankDeviceSpec`):

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

from .backends import get_backend
from .errors import HardwareSpecError, InputError, NonFiniteInputError
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

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau_s) and self.tau_s > 0):
            raise HardwareSpecError(f"tau_s must be a positive number of seconds, got {self.tau_s!r}")
        if not (math.isfinite(self.kappa) and self.kappa >= 0):
            raise HardwareSpecError(f"kappa must be finite and >= 0, got {self.kappa!r}")
        for name in ("bits_in", "bits_out"):
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

    @classmethod
    def from_hardware(cls, hw: HardwareSpec, **overrides: object) -> LowRankDeviceSpec:
        """The hybrid device of a :class:`HardwareSpec`: its ``tau_s``, ``kT`` as ``kappa``, the
        input DAC's ``bits_b``, the ADC's ``bits_adc`` and the readout sample interval.

        The converters are auto-ranged (``input_range = output_range = None``): the loop of the
        paper works in the units of ``x`` and states no scaling of ``g`` into volts, so the
        hardware's voltage ranges have no counterpart here; give ranges (units of ``x``) to model
        fixed rails."""
        fields = dict(tau_s=hw.tau_s, kappa=hw.kT, bits_in=hw.bits_b, bits_out=hw.bits_adc,
                      sample_interval_tau=hw.sample_interval_tau)
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
