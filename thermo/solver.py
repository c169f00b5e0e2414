"""The thermodynamic solver: ``solve(A, b)`` from the time-averaged mean and ``inverse(A)`` from
the time-averaged second moment of a simulated Langevin chip, with every hardware non-ideality
of a :class:`~thermo.hardware.HardwareSpec`.

A call (1) validates the inputs, (2) programs the chip: scales ``A`` and ``b`` into the DAC
ranges, quantizes them and applies the chip's mismatch, (3) plans burn-in and window from the
timing model unless given, (4) runs the dynamics with the exact eigenbasis integrator when the
realized dynamics are linear and symmetric, else stepwise, (5) reads samples through the ADC into
the estimators, retrying with a smaller input when the readout clips ("bound management"), and
(6) undoes the scaling. Matrices larger than the chip are block-iterated (:mod:`thermo.tiling`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from . import cost, covariance_law, exact, planning, stepwise
from .backends import Array, ArrayBackend, get_backend
from .capabilities import Nonideality, UnmodelledHardwareError, first_covering, refusal, unmodelled
from .errors import InputError, NotPositiveDefiniteError, ShapeMismatchError
from .exact import EigenOU, ModeState, eigen_plan_bytes
from .device import DeviceSpec, as_device
from .hardware import HardwareSpec
from .memory import check_memory
from .program import ProgrammedInputs, ProgrammedMatrix, program_inputs, program_matrix
from .quantize import Quantizer
from .readout import QuantizationNoise, SampleAccumulator, min_innovation_variance, readout_law_refusal
from .stepwise import DriftProcess, StepwiseLangevin, spectral_abscissa_bound, stepwise_plan_bytes
from .tiling import tiled_inverse, tiled_solve
from .validation import check_count, check_finite, check_system, to_host


# The solver's integrators in the order it prefers them (exact in law first); each covers the
# non-idealities its module declares (thermo.capabilities).
INTEGRATORS: tuple[tuple[str, frozenset[Nonideality]], ...] = (
    ("exact", exact.MODELS),
    ("stepwise", stepwise.MODELS),
)


class ThermoWarning(UserWarning):
    """A run finished but its result is less accurate than asked (capped samples, clipping)."""


@dataclass(frozen=True)
class SolverConfig:
    """How the simulator runs a primitive. Times are in units of the hardware ``tau``."""

    method: Literal["auto", "exact", "stepwise"] = "auto"
    """``exact`` eigenbasis integrator, ``stepwise`` integrator, or ``auto`` (exact if possible)."""
    integrator: Literal["auto", "euler_maruyama", "exact_step"] = "auto"
    """Stepwise integrator; ``auto`` takes ``exact_step`` for static linear dynamics."""
    dt_tau: float | None = None
    """Stepwise time step (tau); default ``min(sample interval, 0.05 / |lambda|_max)`` for EM."""
    target_rel_error: float = 1e-2
    """Accuracy that the planned burn-in and window aim at (relative, rms: the planning figure
    that ``Diagnostics.predicted_rel_error`` reports; the run's 95% bound is
    ``Diagnostics.estimated_rel_error``)."""
    burn_in_tau: float | None = None
    """Burn-in before sampling (tau); None plans it from the smallest eigenvalue."""
    window_tau: float | None = None
    """Sampling window (tau); None plans it from the target error."""
    max_samples: int = 1_000_000
    """Cap on readout samples of a run whose readout is sampled along its path (simulation
    cost); a capped run warns. A readout drawn from its law (``closed_form``) draws the planned
    samples whatever their number."""
    max_analog_time_tau: float = 1e10
    """Longest planned analog time (burn-in plus window, tau) of one chip run; a plan above it
    is refused with an error naming the fix (10^4 s of device time at a 1 us tau)."""
    closed_form: bool = True
    """Draw the readout estimators from their exact laws where they are declared accurate,
    instead of sampling a path: the solve's window average (ideal readout, or an ADC under the
    dither condition with the rails far, :func:`thermo.readout.readout_law_refusal`) and the
    inverse's covariance (overdamped, enough effective samples, :mod:`thermo.covariance_law`).
    ``False`` samples every reading (the reference)."""
    input_scaling: Literal["fit_output", "absmax"] = "fit_output"
    """How ``b`` is scaled onto the input DAC. ``absmax``: ``b_hat`` fills the input range and
    only bound management reacts to clipping. ``fit_output``: the host's estimate of the solution
    (here the exact solution of the programmed system, an idealized digital estimate; in a
    training loop the warm start plays this role) sets the input amplitude so that the solution
    fills ``output_fill`` of the rails, trading thermal SNR against clipping."""
    output_fill: float = 0.5
    bound_management: bool = True
    """Retry a solve with half the input amplitude when the readout clips too often."""
    max_bound_retries: int = 4
    """Retries of bound management (0: none)."""
    clip_tolerance: float = 1e-3
    """Largest acceptable fraction of clipped readout values."""
    backend: Literal["numpy", "torch"] = "numpy"
    device: str | None = None
    dtype: Literal["float32", "float64"] = "float64"
    symmetry_rtol: float = 1e-8
    chunk_samples: int = 512
    n_batches: int = 16

    def __post_init__(self) -> None:
        if self.method not in ("auto", "exact", "stepwise"):
            raise InputError(f"SolverConfig.method must be auto, exact or stepwise, got {self.method!r}")
        if self.integrator not in ("auto", "euler_maruyama", "exact_step"):
            raise InputError(f"SolverConfig.integrator is unknown: {self.integrator!r}")
        if not 0 < self.target_rel_error < 1:
            raise InputError(f"SolverConfig.target_rel_error must be in (0, 1), got {self.target_rel_error!r}")
        for name in ("dt_tau", "window_tau", "max_analog_time_tau"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise InputError(f"SolverConfig.{name} must be None or > 0, got {value!r}")
        if self.burn_in_tau is not None and not (math.isfinite(self.burn_in_tau) and self.burn_in_tau >= 0):
            raise InputError(f"SolverConfig.burn_in_tau must be None or >= 0, got {self.burn_in_tau!r}")
        if not 0 < self.output_fill <= 1:
            raise InputError(f"SolverConfig.output_fill must be in (0, 1], got {self.output_fill!r}")
        if self.input_scaling not in ("fit_output", "absmax"):
            raise InputError(f"SolverConfig.input_scaling must be fit_output or absmax, got {self.input_scaling!r}")
        for name in ("max_samples", "chunk_samples", "n_batches"):
            check_count(getattr(self, name), f"SolverConfig.{name}")
        check_count(self.max_bound_retries, "SolverConfig.max_bound_retries", minimum=0)
        for name in ("closed_form", "bound_management"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"SolverConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("clip_tolerance", "symmetry_rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                raise InputError(f"SolverConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.dtype not in ("float32", "float64"):
            raise InputError(f"SolverConfig.dtype must be float32 or float64, got {self.dtype!r}")


@dataclass(frozen=True)
class Diagnostics:
    """What a primitive cost and how far to trust it. Times in seconds and in tau."""

    method: str
    integrator: str | None
    analog_time_s: float
    analog_time_tau: float
    burn_in_tau: float
    window_tau: float
    n_samples: int
    estimated_rel_error: float | None
    """A calibrated 95% bound on this run's relative error (the actual error is below it with
    probability >= 0.95 over the thermal noise), relative to the solution of the matrix the chip
    realized (converter and mismatch errors are reported apart, ``dac_*``, ``realized_*``).
    Solve (largest over right-hand sides, see ``error_bound_per_rhs``): the 95% quantile of the
    norm of the window average's Gaussian noise (exact law of the realized spectrum; batch
    means with a Student-t factor where the dynamics have no closed form) plus the bound on the
    transient left after burn-in, averaged over the window, plus the ADC rounding bound.
    Inverse: the quantile of the Frobenius error plus the burn-in bias. Tiled solve: the digital
    a-posteriori bound ``|A x - b| / (lambda_min(A) |x|)``. See docs/physics.md."""
    predicted_rel_error: float | None
    """The rms relative error the OU theory predicts for the planned window (thermal noise only,
    from stationarity): the planning figure that ``target_rel_error`` aims at, not a bound."""
    matrix_scale: float
    rhs_scale: np.ndarray | None
    dac_A_rel_error: float
    dac_b_rel_error: float
    realized_A_rel_error: float
    adc_clip_fraction: float
    bound_retries: int
    realized_condition_number: float | None
    n_tiles: int = 1
    device_time: cost.TimingBreakdown | None = None
    notes: tuple[str, ...] = ()
    error_bound_per_rhs: np.ndarray | None = None
    """Solve: the 95% bound of each right-hand side, ``(k,)`` (``estimated_rel_error`` is its max)."""
    readout_law: bool = False
    """Whether the readout estimator was drawn from its closed-form law (the solve's window
    average, the inverse's covariance: ``SolverConfig.closed_form``) rather than sampled reading
    by reading; ``notes`` says why a run that could not was sampled."""


@dataclass(frozen=True)
class AnalogState:
    """The chip's node voltages at the end of a run, in the units of the solution (for warm
    starts): ``x`` is ``(d,)`` or ``(d, k)``; ``velocity`` (underdamped) in solution units per tau."""

    x: np.ndarray
    velocity: np.ndarray | None = None


@dataclass(frozen=True)
class SolveResult:
    x: Array
    """Estimate of ``A^-1 b``, same shape and array type as ``b``."""
    stderr: np.ndarray | None
    """Estimated standard error of each entry of ``x`` (host array), when available."""
    state: AnalogState
    diagnostics: Diagnostics


@dataclass(frozen=True)
class InverseResult:
    inverse: Array
    """Estimate of ``A^-1`` (symmetric), same array type as ``A``."""
    diagnostics: Diagnostics


@dataclass
class _Run:
    """Mutable bookkeeping of one primitive call."""

    analog_tau: float = 0.0
    retries: int = 0
    notes: list[str] = field(default_factory=list)


class ThermodynamicSolver:
    """Simulated thermodynamic co-processor.

    ``seed`` makes every random draw (thermal noise, stochastic rounding, drift) reproducible;
    the chip's static mismatch follows ``hardware.chip_seed`` instead, so one chip keeps its
    pattern across calls. Successive calls continue the random stream.
    """

    def __init__(
        self, hardware: HardwareSpec | DeviceSpec | None = None, config: SolverConfig | None = None, seed: int = 0
    ) -> None:
        self.device = as_device(hardware if hardware is not None else HardwareSpec.ideal())
        """The device: chips, link and knobs (a bare HardwareSpec is one chip on the default link)."""
        self.hw = self.device.chip
        """One chip's physics, which the simulation integrates."""
        self._programmed: dict[int, str] = {}  # chip -> digest of the couplings it holds
        self.config = config if config is not None else SolverConfig()
        self.backend: ArrayBackend = get_backend(self.config.backend, self.config.device)
        self.rng = self.backend.random(seed)
        self._seed = seed
        self._calls = 0

    # ------------------------------------------------------------------------------------------
    def solve(self, A: Array, b: Array, x0: Array | AnalogState | None = None) -> SolveResult:
        """Estimate ``A^-1 b`` for symmetric positive definite ``A`` (``d x d``) and ``b`` of shape
        ``(d,)`` or ``(d, k)`` (``k`` right-hand sides run as parallel chains).

        ``x0`` warm-starts the analog state (solution units, or the ``state`` of a previous
        result); otherwise the chip starts from zero volts.
        """
        a = to_host(A, "A")
        bh = to_host(b, "b")
        check_system(a, bh, self.config.symmetry_rtol)
        if not bh.any():
            raise InputError("b is zero: the solution is zero, there is nothing to run on the chip")
        vector = bh.ndim == 1
        b2 = bh[:, None] if vector else bh
        x0h, v0h = self._warm_start(x0, b2.shape)
        self._check_plan(a.shape[0], b2.shape[1], "solve")
        a += a.T
        a *= 0.5
        if self.hw.n_units is not None and a.shape[0] > self.hw.n_units:
            with self._readout_of(self.hw.n_units):
                x, stderr, diag = tiled_solve(self._tile_block, a, b2, x0h, **self._tile_plan())
            state = AnalogState(x[:, 0] if vector else x.copy())
            if vector:
                x, stderr = x[:, 0], stderr[:, 0]
            return SolveResult(_like(x, b), stderr, state, diag)
        with self._readout_of(a.shape[0]):
            x, stderr, state, diag = self._solve_block(a, b2, x0h, v0h)
        if vector:
            x, stderr = x[:, 0], (None if stderr is None else stderr[:, 0])
            state = AnalogState(state.x[:, 0], None if state.velocity is None else state.velocity[:, 0])
        return SolveResult(_like(x, b), stderr, state, diag)

    def inverse(self, A: Array) -> InverseResult:
        """Estimate ``A^-1`` from the stationary covariance ``kT A_hat^-1`` (``b = 0``)."""
        a = to_host(A, "A")
        check_system(a, None, self.config.symmetry_rtol)
        self._check_plan(a.shape[0], 1, "inverse")
        a += a.T
        a *= 0.5
        if self.hw.n_units is not None and a.shape[0] > self.hw.n_units:
            with self._readout_of(self.hw.n_units):
                inv, diag = tiled_inverse(self._tile_block, a, **self._tile_plan())
            return InverseResult(_like(inv, A), diag)
        if self.hw.kT == 0:
            raise InputError("inversion reads the thermal covariance: HardwareSpec.kT must be > 0")
        with self._readout_of(a.shape[0]):
            inv, diag = self._inverse_block(a)
        return InverseResult(_like(inv, A), diag)

    @contextlib.contextmanager
    def _readout_of(self, units: int) -> Iterator[None]:
        """Within the block the simulated chip samples as fast as its ADC channels can read
        ``units`` node voltages (``DeviceSpec.sample_interval_s``; the chip's own rate with one
        channel per unit), so the simulated window and the priced one agree."""
        interval = self.device.sample_interval_s(units)
        if interval <= self.device.chip.sample_interval_s:
            yield
            return
        self.hw = self.device.chip.replace(sample_rate_hz=1.0 / interval)
        try:
            yield
        finally:
            self.hw = self.device.chip

    def _tile_block(self, a: np.ndarray, rhs: np.ndarray, x0: np.ndarray, chip_index: int) -> tuple[np.ndarray, np.ndarray | None, Diagnostics]:
        """One block solve of a tiled run (:mod:`thermo.tiling`) on chip ``chip_index``."""
        x, err, _, diag = self._solve_block(a, rhs, x0, None, chip_index=chip_index)
        return x, err, diag

    def _resident(self, a: np.ndarray, chip_index: int) -> bool:
        """Whether chip ``chip_index`` already holds the couplings of ``a`` (priced without a
        programming phase when the device keeps them, ``DeviceSpec.resident_couplings``);
        records ``a`` as the chip's couplings. A device that does not keep its couplings is
        never resident: nothing is hashed for it (the hash reads the whole matrix)."""
        if not self.device.resident_couplings:
            return False
        digest = hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest()
        resident = self._programmed.get(chip_index) == digest
        self._programmed[chip_index] = digest
        return resident

    def _tile_plan(self) -> dict[str, object]:
        assert self.hw.n_units is not None
        return dict(n_units=self.hw.n_units, n_chips=self.device.n_chips, tau_s=self.hw.tau_s,
                    target_rel_error=self.config.target_rel_error)

    # ------------------------------------------------------------------------------------------
    def _warm_start(self, x0: object, shape: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        if x0 is None:
            return None, None
        velocity = None
        if isinstance(x0, AnalogState):
            velocity = None if x0.velocity is None else to_host(x0.velocity, "x0.velocity")
            if velocity is not None:
                check_finite(velocity, "x0.velocity")
            x0 = x0.x
        xh = to_host(x0, "x0")
        check_finite(xh, "x0")
        if xh.ndim == 1:
            xh = xh[:, None]
        if xh.shape != shape:
            raise ShapeMismatchError(f"x0 must match b: expected shape {shape}, got {xh.shape}")
        if velocity is not None and velocity.ndim == 1:
            velocity = velocity[:, None]
        if velocity is not None and velocity.shape != shape:
            raise ShapeMismatchError(f"x0.velocity must match b: expected shape {shape}, got {velocity.shape}")
        return xh, velocity

    # ------------------------------------------------------------------------------------------
    def planned_bytes(self, d: int, n_rhs: int, primitive: Literal["solve", "inverse"] = "solve") -> int:
        """Peak bytes a ``solve`` with ``n_rhs`` right-hand sides (or an ``inverse``) of a
        ``d x d`` matrix would allocate: the host's programming arrays, the integrator's
        matrices, the chains and the samples kept per chunk. Tiled plans count one chip-sized
        block plus the host's full-size iterates (an inverse runs ``d`` chains)."""
        hw, cfg = self.hw, self.config
        item = 4 if cfg.dtype == "float32" else 8
        tiled = hw.n_units is not None and d > hw.n_units
        block = min(d, hw.n_units) if tiled else d
        chains = (d if primitive == "inverse" else n_rhs) if tiled else (1 if primitive == "inverse" else n_rhs)
        host = 6 * 8 * block * block + 4 * 8 * d * chains + (8 * d * d if tiled else 0)
        ideal_readout = hw.bits_adc is None and not math.isfinite(hw.v_range_v)
        if first_covering(self._candidates(), hw, block) == "exact":
            kept = 0 if (primitive == "solve" and ideal_readout and cfg.closed_form) else cfg.chunk_samples
            dyn = eigen_plan_bytes(block, chains, samples_kept=kept, itemsize=item, mass=hw.mass_tau2)
            if primitive == "inverse" and cfg.closed_form and hw.mass_tau2 == 0:  # the law may be drawn instead
                dyn = max(dyn, eigen_plan_bytes(block, chains, samples_kept=0, itemsize=item) + covariance_law.law_bytes(block, item))
        else:
            integrator = self._stepwise_integrator(block)
            dyn = stepwise_plan_bytes(block, chains, itemsize=item, mass=hw.mass_tau2, integrator=integrator)
        readout = item * (cfg.n_batches * block * chains + (block * block if primitive == "inverse" and not tiled else 0))
        return int(host + dyn + readout)

    def _check_plan(self, d: int, n_rhs: int, primitive: Literal["solve", "inverse"]) -> None:
        """Refuse, before anything is allocated, a plan above the memory budget."""
        tiled = self.hw.n_units is not None and d > self.hw.n_units
        what = (
            f"the chip simulator's {primitive} of a {d} x {d} matrix"
            + (f" with {n_rhs} right-hand sides" if primitive == "solve" else "")
            + (f" (tiled over {self.hw.n_units}-unit chips)" if tiled else "")
        )
        alternative = (
            "fewer right-hand sides per call, a smaller matrix, dtype='float32', or, for K-FAC/NGD "
            "curvature, the exact low-rank device (thermo.lowrank)"
            if primitive == "solve"
            else "a smaller matrix, dtype='float32', solves of the needed columns instead of the full "
            "inverse, or the exact low-rank device (thermo.lowrank)"
        )
        check_memory(self.planned_bytes(d, n_rhs, primitive), what, alternative)

    def _realize(self, a: np.ndarray, chip_index: int) -> tuple[ProgrammedMatrix, str, EigenOU | None, np.ndarray]:
        """Program ``a`` onto chip ``chip_index``; choose the method; return the programmed matrix,
        the method, the exact integrator (None for stepwise) and the realized eigenvalues."""
        programmed = program_matrix(a, self.hw, self.rng, self.backend, chip_index)
        method = self._method(programmed)
        ou = self._make_ou(programmed, method)
        return programmed, method, ou, self._spectrum(programmed.realized, ou)

    def _candidates(self) -> tuple[tuple[str, frozenset[Nonideality]], ...]:
        """The integrators ``config.method`` allows (``auto``: all), in the order of preference."""
        return tuple((name, models) for name, models in INTEGRATORS if self.config.method in ("auto", name))

    def _method(self, programmed: ProgrammedMatrix) -> str:
        """The first allowed integrator whose ``MODELS`` covers what the hardware requires of
        this block (:func:`thermo.capabilities.required`; a block fits its chip, so tiling is not
        asked of it); a method asked for that does not cover it is refused, naming what is missing."""
        size, candidates = programmed.realized.shape[0], self._candidates()
        method = first_covering(candidates, self.hw, size)
        if method is None:  # name what the last allowed (the most general) integrator lacks
            name, models = candidates[-1]
            alternative = "use method='stepwise'" if name != "stepwise" else "no integrator of the solver models it"
            missing = unmodelled(self.hw, models, size)
            raise UnmodelledHardwareError(refusal(self.hw, missing, f"the solver's method={name!r}", alternative, size))
        return method

    def _spectrum(self, realized: np.ndarray, ou: EigenOU | None) -> np.ndarray:
        if ou is not None:
            return ou.eigenvalues
        sym = 0.5 * (realized + realized.T)
        lam = np.linalg.eigvalsh(sym)
        if not lam[0] > 0:
            raise NotPositiveDefiniteError(
                f"the realized coupling matrix lost definiteness (smallest eigenvalue of its "
                f"symmetric part {lam[0]:.3e}) through quantization or mismatch: use more "
                "coupling bits, less mismatch or more damping"
            )
        return lam

    def _make_ou(self, programmed: ProgrammedMatrix, method: str) -> EigenOU | None:
        if method != "exact":
            return None
        try:
            return EigenOU(
                self.backend.asarray(programmed.realized, self.config.dtype),
                self.hw.kT,
                self.hw.mass_tau2,
                self.backend,
                self.config.dtype,
            )
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                f"{exc}. The user matrix is positive definite, so quantization (bits_A="
                f"{self.hw.bits_A}) or mismatch (sigma={self.hw.mismatch_sigma}) destroyed it: use "
                "more coupling bits, less mismatch or more damping"
            ) from None

    def _stepwise_integrator(self, size: int) -> str:
        """``config.integrator``, or for ``auto`` the first stepwise integrator whose ``MODELS``
        covers the hardware (:data:`thermo.stepwise.INTEGRATOR_MODELS`: ``exact_step`` unless
        drift or rails inside the dynamics need ``euler_maruyama``, the most general one)."""
        if self.config.integrator != "auto":
            return self.config.integrator
        return first_covering(tuple(stepwise.INTEGRATOR_MODELS.items()), self.hw, size) or "euler_maruyama"

    def _stepwise(self, programmed: ProgrammedMatrix, b_hat: Array, lam_max: float) -> StepwiseLangevin:
        cfg, hw = self.config, self.hw
        integrator = self._stepwise_integrator(programmed.realized.shape[0])
        h = hw.sample_interval_tau
        dt = cfg.dt_tau
        if dt is None:
            dt = h if integrator == "exact_step" else min(h, 0.05 / lam_max)
        drift = None
        if hw.drift_sigma > 0:
            drift = DriftProcess(hw.drift_sigma, hw.drift_timescale_tau, hw.mismatch_symmetric, self._seed + self._calls)
        return StepwiseLangevin(
            programmed.realized,
            b_hat,
            kT=hw.kT,
            mass=hw.mass_tau2,
            dt=dt,
            integrator=integrator,
            backend=self.backend,
            dtype=cfg.dtype,
            clip=hw.v_range_v if hw.clip_in_dynamics else None,
            drift=drift,
        )

    def _schedule(self, burn_in: float, window: float, primitive: str, spectrum: planning.SpectrumInfo) -> tuple[float, int, int]:
        """Sample interval ``h`` (tau), burn-in in samples and the planned number of window
        samples (uncapped: :meth:`_cap` applies ``max_samples`` to a sampled path). A plan above
        ``max_analog_time_tau`` is refused."""
        h = self.hw.sample_interval_tau
        n = max(1, int(math.ceil(window / h - 1e-9)))
        n_burn = max(0, int(math.ceil(burn_in / h - 1e-9)))
        total = (n_burn + n) * h
        limit = self.config.max_analog_time_tau
        if total > limit:
            raise InputError(
                f"the planned {primitive} needs {total:.3g} tau of analog time ({n} samples, condition number "
                f"{spectrum.condition_number:.3g}), above SolverConfig.max_analog_time_tau={limit:.3g}: raise "
                "max_analog_time_tau, loosen target_rel_error or give burn_in_tau/window_tau, or precondition the matrix"
            )
        return h, n_burn, n

    def _cap(self, n: int) -> int:
        """``n`` sampled readings capped at ``max_samples`` (a capped run warns)."""
        if n > self.config.max_samples:
            warnings.warn(
                f"the planned window needs {n} samples; capped at max_samples={self.config.max_samples}: "
                "the result is less accurate than target_rel_error",
                ThermoWarning,
                stacklevel=4,
            )
            n = self.config.max_samples
        return n

    # ------------------------------------------------------------------------------------------
    def _solve_block(
        self,
        a: np.ndarray,
        b: np.ndarray,
        x0: np.ndarray | None,
        v0: np.ndarray | None,
        chip_index: int = 0,
    ) -> tuple[np.ndarray, np.ndarray | None, AnalogState, Diagnostics]:
        """One chip-sized solve on host float64 arrays ``a (d, d)`` and ``b (d, c)``.

        Columns of ``b`` that are exactly zero have the solution zero: the host keeps them off
        the chip (block Gauss-Seidel produces such columns).
        """
        nonzero = np.any(b != 0, axis=0)
        if not nonzero.all() and nonzero.any():
            x, stderr, state, diag = self._solve_block(a, b[:, nonzero], None if x0 is None else x0[:, nonzero], None if v0 is None else v0[:, nonzero], chip_index)
            return (
                _scatter(x, nonzero),
                None if stderr is None else _scatter(stderr, nonzero),
                AnalogState(_scatter(state.x, nonzero), None if state.velocity is None else _scatter(state.velocity, nonzero)),
                dataclasses.replace(
                    diag,
                    rhs_scale=_scatter(diag.rhs_scale[None, :], nonzero)[0],
                    error_bound_per_rhs=None if diag.error_bound_per_rhs is None else _scatter(diag.error_bound_per_rhs[None, :], nonzero)[0],
                ),
            )
        self._calls += 1
        cfg, hw, be = self.config, self.hw, self.backend
        d, c = b.shape
        programmed, method, ou, lam = self._realize(a, chip_index)
        resident = self._resident(a, chip_index)
        spectrum = planning.SpectrumInfo.from_eigenvalues(lam)
        # Plan in chip units: the solution norm is that of the scaled problem.
        run = _Run()
        headroom = np.ones(c)
        if cfg.input_scaling == "fit_output" and math.isfinite(hw.v_range_v):
            probe = program_inputs(b, hw, self.rng, be, cfg.dtype, headroom)
            peak = np.abs(_chip_solution(programmed, probe, be)).max(axis=0)
            headroom = np.minimum(1.0, cfg.output_fill * hw.v_range_v / np.maximum(peak, 1e-300))
        adc = Quantizer(hw.bits_adc, hw.v_range_v, hw.rounding)
        while True:
            inputs = program_inputs(b, hw, self.rng, be, cfg.dtype, headroom)
            x_star_hat = _chip_solution(programmed, inputs, be)
            raw_norms = np.linalg.norm(x_star_hat, axis=0)
            if not np.all(raw_norms > 0):
                lost = [int(i) for i in np.flatnonzero(~(raw_norms > 0))[:5]]
                raise InputError(
                    f"the input DAC ({hw.bits_b} bits over +-{hw.input_range_v:g} V, the input scaled to "
                    f"{float(headroom.min()):.3g} of its range to keep the solution inside the rails) rounded column(s) "
                    f"{lost} of b to zero, so the chip's solution there is zero; use more input bits (bits_b), wider "
                    "rails (v_range_v) or more damping"
                )
            sol_norms = np.maximum(raw_norms, 1e-300)
            sol_norm = float(sol_norms.min())
            x0_hat = None if x0 is None else x0 * (programmed.alpha / inputs.beta)
            init_ratios = np.ones(c) if x0_hat is None else np.linalg.norm(x0_hat - x_star_hat, axis=0) / sol_norms
            init_ratio = float(init_ratios.max())
            burn_in = cfg.burn_in_tau
            if burn_in is None:
                burn_in = planning.equilibration_time_tau(
                    spectrum, cfg.target_rel_error, initial_error_ratio=init_ratio, mass_tau2=hw.mass_tau2
                )
            window = cfg.window_tau
            if window is None:
                window = planning.solve_window_tau(
                    spectrum, hw.kT, cfg.target_rel_error, sol_norm,
                    sample_interval_tau=hw.sample_interval_tau, mass_tau2=hw.mass_tau2,
                )
            h, n_burn, n = self._schedule(burn_in, window, "solve", spectrum)
            law_readout, quantization = False, None
            if method == "exact" and cfg.closed_form:
                law_readout, quantization, why = self._solve_readout_law(ou, adc, x_star_hat, x0_hat, n_burn * h)
                if why is not None and why not in run.notes:
                    run.notes.append(why)
            if not law_readout:
                n = self._cap(n)
            accumulator = SampleAccumulator(be, cfg.dtype, d, c, n, adc, self.rng, n_batches=cfg.n_batches)
            v0_hat = None if v0 is None else v0 * (programmed.alpha / inputs.beta)
            if method == "exact":
                mean_hat, var_hat, final_x, final_v = self._exact_solve(
                    ou, inputs.b_hat, x0_hat, v0_hat, n_burn * h, h, n, accumulator, law_readout, quantization
                )
                integrator = None
            else:
                stepper = self._stepwise(programmed, inputs.b_hat, float(lam[-1]) if programmed.symmetric else spectral_abscissa_bound(programmed.realized))
                mean_hat, var_hat, final_x, final_v = self._stepwise_run(
                    stepper, x0_hat, v0_hat, h, n_burn, n, accumulator, d, c
                )
                integrator = stepper.integrator
            run.analog_tau += (n_burn + n) * h
            if (
                accumulator.clip_fraction > cfg.clip_tolerance
                and cfg.bound_management
                and run.retries < cfg.max_bound_retries
            ):
                run.retries += 1
                headroom = headroom / 2
                continue
            break
        if accumulator.clip_fraction > cfg.clip_tolerance:
            msg = f"{accumulator.clip_fraction:.2%} of readout values clipped at the rails"
            run.notes.append(msg)
            warnings.warn(msg + ": the result is biased", ThermoWarning, stacklevel=3)
        scale = inputs.beta / programmed.alpha  # x = scale * x_hat, per column
        x = mean_hat * scale
        stderr = None if var_hat is None else np.sqrt(var_hat) * scale
        # the noise law is known in closed form for symmetric static linear dynamics: exactly
        # for the eigenbasis and exact-step integrators, up to Euler-Maruyama's variance factor
        static_symmetric = not unmodelled(hw, exact.MODELS, d)  # what the eigenbasis represents
        em_dt = None
        if method == "exact" or (static_symmetric and integrator == "exact_step"):
            law = "exact"
        elif static_symmetric and integrator == "euler_maruyama" and hw.mass_tau2 == 0:
            law, em_dt = "euler_maruyama", stepper.dt
        else:
            law = "approximate"
        bounds = self._solve_bounds(
            spectrum, n_burn * h, h, n, sol_norms, init_ratios, law, em_dt,
            None if var_hat is None else var_hat.sum(0), d,
        )
        est = None if bounds is None else float(bounds.max())
        predicted = planning.solve_relative_error(
            spectrum, hw.kT, window=n * h, solution_norm=sol_norm, sample_interval_tau=h, mass_tau2=hw.mass_tau2
        )
        state = AnalogState(final_x * scale, None if final_v is None else final_v * scale)
        diag = Diagnostics(
            method=method,
            integrator=integrator,
            analog_time_s=run.analog_tau * hw.tau_s,
            analog_time_tau=run.analog_tau,
            burn_in_tau=n_burn * h,
            window_tau=n * h,
            n_samples=n,
            estimated_rel_error=est,
            predicted_rel_error=predicted,
            matrix_scale=programmed.alpha,
            rhs_scale=inputs.beta,
            dac_A_rel_error=programmed.dac_rel_error,
            dac_b_rel_error=inputs.dac_rel_error,
            realized_A_rel_error=programmed.total_rel_error,
            adc_clip_fraction=accumulator.clip_fraction,
            bound_retries=run.retries,
            realized_condition_number=float(lam[-1] / lam[0]),
            device_time=cost.estimate_solve(
                self.device, spectrum, target_rel_error=cfg.target_rel_error, solution_norm=sol_norm, n_rhs=c,
                initial_error_ratio=init_ratio, resident=resident,
            ),
            notes=tuple(run.notes),
            error_bound_per_rhs=bounds,
            readout_law=law_readout,
        )
        return x, stderr, state, diag

    def _unit_std(self, ou: EigenOU) -> np.ndarray:
        """Stationary standard deviation of every unit's reading, ``sqrt(kT (A_hat^-1)_ii)``, ``(d,)``
        (V; the variance from a deterministic start grows to it)."""
        be, v = self.backend, ou.eigenvectors
        inv_lam = be.asarray((1.0 / ou.eigenvalues)[:, None], self.config.dtype)
        var = be.to_numpy(be.matmul(v * v, inv_lam))[:, 0].astype(np.float64)
        return np.sqrt(np.maximum(self.hw.kT * var, 0.0))

    def _solve_readout_law(
        self, ou: EigenOU, adc: Quantizer, x_star_hat: np.ndarray, x0_hat: np.ndarray | None, burn_in: float
    ) -> tuple[bool, QuantizationNoise | None, str | None]:
        """Whether the window average is drawn from its law (with the ADC's noise model, None
        for an ideal one), and why not. An ideal readout always is; an ADC or rails need
        overdamped dynamics, the dither condition and rails beyond every reading's reach: the
        window's means lie within ``|x*_i| + sum_j |V_ij| e^{-lam_j t0} |(V^T (x_0 - x*))_j|`` (every
        mode's transient decays monotonically from the window's start ``t0``)."""
        hw = self.hw
        if adc.bits is None and not adc.clips:
            return True, None, None
        if hw.mass_tau2 > 0:
            return False, None, "readout sampled along its path: the ADC's noise model in the law covers overdamped dynamics"
        be = self.backend
        v = be.to_numpy(ou.eigenvectors).astype(np.float64)
        start = np.zeros_like(x_star_hat) if x0_hat is None else x0_hat
        transient = np.abs(v) @ (np.exp(-ou.eigenvalues * burn_in)[:, None] * np.abs(v.T @ (start - x_star_hat)))
        why = readout_law_refusal(
            adc, min_innovation_variance(ou.eigenvalues, hw.kT, hw.sample_interval_tau), self._unit_std(ou),
            np.abs(x_star_hat) + transient,
        )
        if why is not None:
            return False, None, f"readout sampled along its path: {why}"
        return True, (QuantizationNoise.of(adc) if adc.bits is not None else None), None

    def _solve_bounds(
        self,
        spectrum: planning.SpectrumInfo,
        burn_in: float,
        h: float,
        n: int,
        sol_norms: np.ndarray,
        init_ratios: np.ndarray,
        law: str,
        em_dt: float | None,
        batch_trace: np.ndarray | None,
        d: int,
    ) -> np.ndarray | None:
        """The 95% bound of each right-hand side's relative error, ``(c,)`` (chip units).

        Noise: with linear symmetric static dynamics (``law`` ``"exact"``) the window average's
        noise is Gaussian with known mode variances (:func:`planning.solve_error_bound`);
        overdamped Euler-Maruyama (``"euler_maruyama"``, step ``em_dt``) samples an AR(1) of
        stationary variance ``kT / (lam (1 - lam dt / 2))`` and lag correlation
        ``(1 - lam dt)^(h/dt) <= e^{-lam h}``, so the exact variances times ``1 / (1 - lam dt/2)``
        bound it. Otherwise (non-symmetric mismatch, drift, rails in the dynamics:
        ``"approximate"``) no law is known: the larger of the symmetric part's closed form and
        the batch means' bound, where only the trace ``tr C`` (``batch_trace``, ``(c,)``) is
        estimated and the worst case over the unknown correlations (one dominant direction)
        makes ``|n| / sqrt(tr C_hat)`` a Student t with ``n_batches - 1`` degrees of freedom
        (batches shorter than the correlation time make it optimistic, hence the floor). Plus the window-averaged transient (deterministic, per column) and the ADC's rounding
        (each sample's error at most half a step with nearest rounding, a step stochastic, so
        the average's error at most that per entry: ``sqrt(d)`` of it in norm).
        """
        from scipy.stats import t as student_t

        hw = self.hw
        var = planning.solve_noise_variances(spectrum, hw.kT, n_samples=n, sample_interval_tau=h, mass_tau2=hw.mass_tau2)
        if em_dt is not None:
            var = var / (1.0 - 0.5 * np.asarray(spectrum.eigenvalues) * em_dt)
        noise = math.sqrt(planning.weighted_chi2_quantile(var)) / sol_norms
        if law == "approximate" and batch_trace is not None:
            dof = max(1, min(self.config.n_batches, n) - 1)
            factor = float(student_t.ppf(0.5 + planning.BOUND_PROBABILITY / 2, dof))
            noise = np.maximum(noise, factor * np.sqrt(np.maximum(batch_trace, 0.0)) / sol_norms)
        transient = np.array([
            planning.window_transient_rel_error(
                spectrum, burn_in, sample_interval_tau=h, n_samples=n, initial_error_ratio=float(r0), mass_tau2=hw.mass_tau2
            )
            for r0 in init_ratios
        ])
        adc = Quantizer(hw.bits_adc, hw.v_range_v, hw.rounding)
        rounding = adc.step * (0.5 if hw.rounding == "nearest" else 1.0) * math.sqrt(d) / sol_norms
        return noise + transient + rounding

    def _exact_solve(
        self,
        ou: EigenOU,
        b_hat: Array,
        x0_hat: np.ndarray | None,
        v0_hat: np.ndarray | None,
        burn_in: float,
        h: float,
        n: int,
        accumulator: SampleAccumulator,
        law_readout: bool,
        quantization: QuantizationNoise | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        """The exact dynamics' window average: drawn from its law (``law_readout``; a quantizing
        ADC under the dither condition adds its independent error, ``N(0, E e^2 / N)`` per unit and
        column) or from the sampled path through the ADC."""
        be, dt = self.backend, self.config.dtype
        shape = tuple(b_hat.shape)
        x_init = be.zeros(shape, dt) if x0_hat is None else be.asarray(x0_hat, dt)
        v_init = None if v0_hat is None else be.asarray(v0_hat, dt)
        mu = ou.mode_mean(b_hat)
        state = ou.propagate(ou.state_from_x(x_init, mu, v_init), burn_in, self.rng)
        if law_readout:
            ubar, final, var_modes = ou.window_average(state, h, n, self.rng)
            mean_hat = be.to_numpy(ou.x_from_state(ModeState(ubar, None), mu)).astype(np.float64)
            v = be.to_numpy(ou.eigenvectors).astype(np.float64)
            var_hat = np.repeat(((v * v) @ var_modes)[:, None], shape[1], axis=1)
            if quantization is not None and quantization.variance > 0:
                # the readings' rounding errors, independent and white: their average is Gaussian (CLT)
                noise = be.to_numpy(self.rng.normal(shape, dt)).astype(np.float64)
                mean_hat += noise * math.sqrt(quantization.variance / n)
                var_hat += quantization.variance / n
            accumulator.seen = n  # no sample went through the (ideal) ADC; keeps the counts consistent
        else:
            final = state
            for chunk, final in ou.sample_chunks(state, h, n, self.rng, self.config.chunk_samples):
                accumulator.add(ou.from_modes(chunk + mu))
            mean_hat, var_hat = _read_mean(be, accumulator)
        final_x = be.to_numpy(ou.x_from_state(final, mu)).astype(np.float64)
        final_v = None if final.w is None else be.to_numpy(ou.from_modes(final.w)).astype(np.float64)
        return mean_hat, var_hat, final_x, final_v

    def _stepwise_run(
        self,
        stepper: StepwiseLangevin,
        x0_hat: np.ndarray | None,
        v0_hat: np.ndarray | None,
        h: float,
        n_burn: int,
        n: int,
        accumulator: SampleAccumulator,
        d: int,
        c: int,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
        be, dt = self.backend, self.config.dtype
        steps = max(1, int(round(h / stepper.dt)))
        x = be.zeros((d, c), dt) if x0_hat is None else be.asarray(x0_hat, dt)
        v = None if v0_hat is None else be.asarray(v0_hat, dt)
        x, v = stepper.run(x, v, steps, n_burn, self.rng)
        x, v = stepper.run(x, v, steps, n, self.rng, on_sample=accumulator.add)
        mean_hat, var_hat = _read_mean(be, accumulator)
        final_v = None if v is None else be.to_numpy(v).astype(np.float64)
        return mean_hat, var_hat, be.to_numpy(x).astype(np.float64), final_v

    # ------------------------------------------------------------------------------------------
    def _inverse_block(self, a: np.ndarray, chip_index: int = 0) -> tuple[np.ndarray, Diagnostics]:
        self._calls += 1
        cfg, hw, be = self.config, self.hw, self.backend
        d = a.shape[0]
        programmed, method, ou, lam = self._realize(a, chip_index)
        resident = self._resident(a, chip_index)
        spectrum = planning.SpectrumInfo.from_eigenvalues(lam)
        # The covariance relaxes at twice the slowest rate; start from zero volts.
        burn_in = cfg.burn_in_tau
        if burn_in is None:
            burn_in = planning.inverse_equilibration_time_tau(spectrum, cfg.target_rel_error, mass_tau2=hw.mass_tau2)
        window = cfg.window_tau
        if window is None:
            n_needed = planning.inverse_samples(
                spectrum, cfg.target_rel_error, sample_interval_tau=hw.sample_interval_tau, mass_tau2=hw.mass_tau2
            )
            window = n_needed * hw.sample_interval_tau
        h, n_burn, n = self._schedule(burn_in, window, "inverse", spectrum)
        adc = Quantizer(hw.bits_adc, hw.v_range_v, hw.rounding)
        ideal_readout = hw.bits_adc is None and not math.isfinite(hw.v_range_v)
        notes: list[str] = []
        law, clip_fraction = None, 0.0
        if method == "exact" and cfg.closed_form:
            law, why = self._inverse_law(ou, adc, h, n_burn, n)
            if why is not None:
                notes.append(why)
        if law is None:
            n = self._cap(n)
        zeros = be.zeros((d, 1), cfg.dtype)
        accumulator = SampleAccumulator(be, cfg.dtype, d, 1, n, adc, self.rng, second_moment=True, n_batches=1)
        if law is not None:
            # a state at the window's start is not needed: only the estimator is returned
            second = covariance_law.draw_second_moment(law, ou.eigenvectors, be, self.rng, cfg.dtype)
            integrator = None
        elif method == "exact":
            mu = ou.mode_mean(zeros)
            state = ou.propagate(ou.state_from_x(zeros, mu), n_burn * h, self.rng)
            for chunk, state in ou.sample_chunks(state, h, n, self.rng, self.config.chunk_samples):
                # Ideal readout: accumulate in the eigenbasis and rotate once at the end.
                accumulator.add(chunk if ideal_readout else ou.from_modes(chunk))
            second = accumulator.second_moment()
            if ideal_readout:
                second = ou.from_modes(ou.from_modes(second).T)  # V (V S)^T = V S V^T, S symmetric
            integrator = None
        else:
            stepper = self._stepwise(programmed, zeros, spectral_abscissa_bound(programmed.realized))
            steps = max(1, int(round(h / stepper.dt)))
            x, v = stepper.run(zeros, None, steps, n_burn, self.rng)
            stepper.run(x, v, steps, n, self.rng, on_sample=accumulator.add)
            second = accumulator.second_moment()
            integrator = stepper.integrator
        if law is None:
            clip_fraction = accumulator.clip_fraction
        second = be.to_numpy(second).astype(np.float64)
        inv = 0.5 * (second + second.T) / (hw.kT * programmed.alpha)
        if clip_fraction > cfg.clip_tolerance:
            warnings.warn(
                f"{clip_fraction:.2%} of readout values clipped: the noise (kT) is too "
                "large for the rails; the inverse is biased low",
                ThermoWarning,
                stacklevel=3,
            )
        analog = (n_burn + n) * h
        predicted = planning.inverse_relative_error(spectrum, n, sample_interval_tau=h, mass_tau2=hw.mass_tau2)
        # exact for linear symmetric dynamics; with a non-symmetric or drifting matrix the
        # spectrum of the symmetric part stands in (documented as approximate)
        bound = planning.inverse_error_bound(spectrum, n, sample_interval_tau=h, burn_in_tau=n_burn * h, mass_tau2=hw.mass_tau2)
        diag = Diagnostics(
            method=method,
            integrator=integrator,
            analog_time_s=analog * hw.tau_s,
            analog_time_tau=analog,
            burn_in_tau=n_burn * h,
            window_tau=n * h,
            n_samples=n,
            estimated_rel_error=bound,
            predicted_rel_error=predicted,
            matrix_scale=programmed.alpha,
            rhs_scale=None,
            dac_A_rel_error=programmed.dac_rel_error,
            dac_b_rel_error=0.0,
            realized_A_rel_error=programmed.total_rel_error,
            adc_clip_fraction=clip_fraction,
            bound_retries=0,
            realized_condition_number=float(lam[-1] / lam[0]),
            device_time=cost.estimate_inverse(self.device, spectrum, target_rel_error=cfg.target_rel_error,
                                              resident=resident),
            notes=tuple(notes),
            readout_law=law is not None,
        )
        return inv, diag

    def _inverse_law(
        self, ou: EigenOU, adc: Quantizer, h: float, n_burn: int, n: int
    ) -> tuple[covariance_law.CovarianceLaw | None, str | None]:
        """The covariance readout's law for this plan (:mod:`thermo.covariance_law`), or None and
        why the path is sampled instead: underdamped modes, too few effective samples of the
        slowest mode, an ADC outside the dither condition or rails within reach (b = 0: the
        readings' means are zero)."""
        hw = self.hw
        prefix = "covariance readout sampled along its path: "
        if hw.mass_tau2 > 0:
            return None, prefix + "the covariance law covers overdamped dynamics (underdamped modes are two-dimensional)"
        lam = ou.eigenvalues
        why = covariance_law.accuracy_refusal(lam, hw.kT, h, n_burn, n)
        if why is None and (adc.bits is not None or adc.clips):
            why = readout_law_refusal(adc, min_innovation_variance(lam, hw.kT, h), self._unit_std(ou))
        if why is not None:
            return None, prefix + why
        quantization = QuantizationNoise.of(adc) if adc.bits is not None else None
        return covariance_law.covariance_law(lam, hw.kT, h, n_burn, n, quantization), None


def _read_mean(be: ArrayBackend, accumulator: SampleAccumulator) -> tuple[np.ndarray, np.ndarray | None]:
    """Time-averaged readout and its batch-means variance (host float64, ``(d, c)``)."""
    err = accumulator.stderr()
    mean = be.to_numpy(accumulator.mean()).astype(np.float64)
    return mean, None if err is None else be.to_numpy(err).astype(np.float64) ** 2


def _scatter(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Place ``values (r, k)`` into the ``columns`` (boolean mask) of a zero ``(r, c)`` array."""
    out = np.zeros((values.shape[0], columns.size))
    out[:, columns] = values
    return out


def _chip_solution(programmed: ProgrammedMatrix, inputs: ProgrammedInputs, be: ArrayBackend) -> np.ndarray:
    """``A_realized^-1 b_hat`` on the host (the fixed point the chip relaxes to), ``(d, c)``."""
    return np.linalg.solve(programmed.realized, be.to_numpy(inputs.b_hat).astype(np.float64))


def _like(x: np.ndarray, reference: object) -> Array:
    """Return ``x`` as the array type (and device) of ``reference``."""
    try:
        import torch

        if isinstance(reference, torch.Tensor):
            return torch.as_tensor(x, dtype=reference.dtype if reference.is_floating_point() else torch.float64, device=reference.device)
    except ImportError:  # pragma: no cover
        pass
    return x
