"""Thermodynamic natural-gradient descent (Donatella et al. 2024, arXiv 2405.13817).

Two device paths (``method``):

* ``exact`` / ``krylov`` (the default where the hardware allows it): the device of the paper,
  ``dx = -(A x - g) dt + sqrt(2 kappa) dW`` with ``t`` in tau and ``A = U U^T + lambda I`` in its
  own units, propagated exactly between uploads (:mod:`thermo.lowrank_device` on
  :mod:`thermo.lowrank`): one ``eigh`` of the ``r x r`` Gram (assembled layer by layer by
  :class:`digital.ggn.GGNOperator`, never forming ``J_f``), and products with ``U`` (a VJP) and
  ``U^T`` (a JVP). With a coupling DAC the arrays are programmed as below. ``krylov`` replaces
  the ``eigh`` by Lanczos (large ``r``).
* ``simulator``: the chip of :mod:`thermo` with everything it models, on a dense ``N x N``
  ``A`` (described below). ``auto`` takes it only for what the exact path cannot model; its
  planned memory (``N x N`` arrays, the factor, the chains) is checked first
  (:func:`dense_plan_bytes`, :func:`thermo.memory.check_memory`), so a plan beyond the budget is
  refused at construction, naming the size and the alternative.

Which path models what is read from the declared lists of :mod:`thermo.capabilities`:
:data:`thermo.lowrank_device.MODELS` for ``exact``/``krylov``, :data:`SIMULATOR_MODELS` for
``simulator``; ``auto`` takes the first that covers everything the hardware switches on
(:func:`thermo.capabilities.required`, with ``N`` the parameter count) and a path asked for
that does not is refused, naming what it lacks. The exact low-rank path models:

* thermal noise: the noise strength ``kappa`` of the dynamics is the hardware's ``kT`` (the
  ``kappa`` argument replaces it: ``hardware.replace(kT=kappa)``);
* the coupling DAC (``bits_A``, ``rounding``, ``coupling_range``) on the paper's three resistor
  arrays ``J_f`` (``b d_z x N``), ``H_L`` (``b d_z x b d_z``) and ``J_f^T``, each auto-ranged to
  its own largest entry as the dense chip's couplings are (:func:`thermo.lowrank_device.program_arrays`):
  ``J_f`` is formed layer by layer (:func:`digital.ggn.output_jacobian`, ``b d_z N`` entries,
  checked against the memory budget), the realized ``A_q = J_q^T H_q J_q / b + lambda I`` is
  propagated exactly (:class:`thermo.lowrank.LowRankOU` with the core ``H_q``); ``lambda`` is
  exact (its resistors hold one value, which an auto-ranged DAC represents exactly);
* the input DAC ``bits_b`` and the readout ADC ``bits_adc``, rounding as ``rounding``
  (auto-ranged: the rails ``v_range_v`` never clip there);
* the readout: ``n_readout`` samples every ``hardware.sample_interval_tau`` ending at ``t``;
* the delay ``t_d`` (``delay_tau``) on the previous upload, and the warm start.

Only the simulator models static mismatch, drift, clipping inside the dynamics and underdamped
(RLC) nodes. Neither path of TNGD tiles: ``N > n_units`` is refused (TNGD reads the state of one
analog run, which a block-iterated solve does not have).

Each step the digital side computes the gradient ``g`` and the GGN factor ``U``; the analog
device holds ``A = U U^T + lambda I`` and ``g`` and its node voltages follow the
Ornstein-Uhlenbeck process whose mean relaxes towards the natural gradient ``A^-1 g``. The
optimizer reads the state after an analog time ``t`` and updates ``theta <- theta - lr x(t)``.
The state is NOT reset between steps: the next step's dynamics start from where this one
ended (warm start), so with ``x_0 = g`` on the first step ``t = 0`` is SGD and ``t -> inf`` NGD,
and intermediate ``t`` behaves like a momentum method.

"State after time t" on the simulator (:class:`thermo.ThermodynamicSolver`). A solve runs a
burn-in (rounded up to whole sample intervals ``h = hardware.sample_interval_tau``) from the
warm-start state, then a window of ``n >= 1`` samples taken every ``h`` (the first one ``h``
after the burn-in), and returns the window average and the final state. So with
``burn_in_tau = t - w`` and ``window_tau = w`` (``w = readout_window_tau``, at least one sample
interval) the read is the average of the samples in the last ``w`` of the run, the single
sample ``x(t)`` when ``w = 0``, and ``result.state`` is exactly ``x(t)``, drawn from its exact
law (eigenbasis integrator, closed-form window average) for linear symmetric hardware and by
the stepwise integrator otherwise. This is exact when ``t`` and ``w`` lie on the sample grid;
other values are refused (change ``hardware.sample_rate_hz``), and ``t = 0`` reads the state
without running the device.

Time units. The chip realizes ``A_hat = A / alpha`` with ``alpha = max|A_ij| / coupling_range``
(couplings fill their DAC range; ``alpha`` is ``diagnostics.extra["thermo"].matrix_scale``), so
in the units of the solution the mean follows ``x(t) = x* + exp(-A_hat t)(x0 - x*)`` with ``t``
the physical analog time in ``tau``, and the thermal covariance is
``(beta^2 kT / alpha) A^-1 (I - exp(-2 A_hat t))`` with ``beta`` the input scale (``rhs_scale``).
``last_stats["matrix_time"]`` is ``t / alpha``, the time in the units of ``A`` itself.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from thermo import AnalogState, HardwareSpec, SolverConfig, exact, lowrank_device, preset, stepwise
from thermo.capabilities import (
    Nonideality,
    UnmodelledHardwareError,
    check_modelled,
    describe,
    first_covering,
    unmodelled,
)
from thermo.errors import NonFiniteInputError
from thermo.lowrank_device import (
    LowRankDevice,
    LowRankDeviceSpec,
    ProgrammedArrays,
    program_arrays,
)
from thermo.lowrank import PROPAGATORS, LowRankCurvature
from thermo.memory import check_memory

from .curvature import loss_hessian, trainable_params
from .errors import NonFiniteGradientError, UnsupportedConfigurationError
from .ggn import GGNOperator, output_jacobian
from .ngd import CurvatureOptimizer, check_damping
from .solvers import SolverDiagnostics
from .solvers.thermo_backend import ThermoSolver

INITIAL_STATES = ("gradient", "zero")
METHODS = ("auto", "exact", "krylov", "simulator")
_RESERVED = ("burn_in_tau", "window_tau")

SIMULATOR_MODELS: frozenset[Nonideality] = exact.MODELS | stepwise.MODELS
"""What the simulator path models: the chip simulator's integrators. Not the chip size: TNGD
reads the state of one analog run, which a tiled (block-iterated) solve does not have."""

#: TNGD's paths in the order ``auto`` prefers them, with what each models
PATHS: tuple[tuple[str, frozenset[Nonideality]], ...] = (
    ("exact", lowrank_device.MODELS),
    ("simulator", SIMULATOR_MODELS),
)
_PATH_MODELS = {"exact": lowrank_device.MODELS, "krylov": lowrank_device.MODELS, "simulator": SIMULATOR_MODELS}
_PATH_ALTERNATIVE = {
    "exact": "use method='simulator' (the dense chip simulator)",
    "krylov": "use method='simulator' (the dense chip simulator)",
    "simulator": "TNGD reads the state of one analog run, which a tiled (block-iterated) solve does not have",
}


def dense_plan_bytes(n: int, rank: int, hw: HardwareSpec, itemsize: int = 4) -> int:
    """Bytes the simulator path holds at its peak for ``N = n`` parameters and rank ``r``.

    The factor ``U`` and the per-example Jacobian it comes from (``2 r N`` entries of the
    model's ``itemsize``), ``U U^T`` and its symmetrized copy (``2 N^2``, model dtype), and the
    chip's float64 ``N x N`` arrays: the host copy, the scaled, quantized and realized couplings,
    the eigenbasis or the stepwise operator and the eigensolver's workspace (6), plus the
    mismatch pattern (1) and the drift state (2) when the hardware has them; the chains (``N``
    columns of state and readout sums) are ``O(N)``. Measured peak RSS of one step at
    ``N = 4510``: 7.4, 8.4 and 10.8 ``N^2`` float64 (published, + mismatch, + drift) against
    7, 8 and 10 here: a slight underestimate, so a refusal is never spurious."""
    n64 = 6 + (hw.mismatch_sigma > 0) + 2 * (hw.drift_sigma > 0)
    return int(2 * rank * n * itemsize + 2 * n * n * itemsize + n64 * n * n * 8 + 8 * n * 8)


def _propagation_note(process: object, rank: int) -> str:
    """How the device propagated the step, without computing an ``eigh`` for the note."""
    if getattr(process, "decomposed", True):
        return f"numerical rank {getattr(process, 'numerical_rank', rank)}"
    return f"propagated by {getattr(process, 'last_propagation', 'krylov')} on the Gram"


class TNGD(CurvatureOptimizer):
    """Thermodynamic NGD on a simulated analog device.

    Args:
        model: the network; its trainable parameters form the one parameter group.
        lr: learning rate ``eta`` (in ``param_groups``).
        damping: ``lambda`` of ``A = G + lambda I`` (in ``param_groups``; > 0).
        loss: ``cross_entropy`` or ``mse`` (see :mod:`digital.curvature`).
        analog_time_tau: analog run time ``t`` per step, in units of the hardware ``tau``
            (in ``param_groups``); ``0`` or a multiple of the sample interval.
        readout_window_tau: length ``w`` of the readout average at the end of the run (tau,
            in ``param_groups``); ``0`` reads the single sample at ``t``.
        hardware: a preset name (``ideal``, ``published``, ``noisy``) or a
            :class:`~thermo.HardwareSpec`.
        seed: the thermal noise of step ``k`` is drawn from ``(seed, k)``, so a resumed run
            continues with the same noise.
        warm_start: keep the analog state between steps (the method); False restarts every
            step from ``initial_state``.
        initial_state: the first (or every, without ``warm_start``) step starts from
            ``gradient`` (``x0 = g``) or ``zero`` volts.
        method: ``auto`` (``exact`` unless the hardware has something only the simulator
            models, see :data:`PATHS`), ``exact``, ``krylov`` or ``simulator``.
        delay_tau: ``t_d``, analog time the device runs on the previous upload between the read
            and the next upload (tau; exact/krylov paths).
        n_readout: samples averaged by the readout (every ``hardware.sample_interval_tau``,
            ending at ``t``; default from ``readout_window_tau``).
        kappa: noise strength of the exact path: its device runs on ``hardware.replace(kT=kappa)``
            (default: the hardware's ``kT``).
        propagator: how the exact path applies the Gram's matrix functions
            (:class:`thermo.lowrank.LowRankOU`): ``auto`` (block Krylov while its cost rule
            predicts it cheaper than an ``eigh``), ``eigh`` (the reference) or ``krylov``.
        adam: TNGD-Adam: feed the read to Adam with ``beta1 = beta2 = 0``, i.e. step by
            ``lr * x / (|x| + adam_eps)`` elementwise.
        solver_config_options: other :class:`thermo.SolverConfig` fields of the simulator path
            (``closed_form``, ``method``, ``input_scaling``...); ``burn_in_tau`` and ``window_tau``
            are set here.

    After a step: ``last_diagnostics`` (:class:`SolverDiagnostics` of the device run; the full
    :class:`thermo.Diagnostics` under ``extra["thermo"]``), ``last_stats`` (``analog_time_tau``,
    ``analog_time_s``, ``matrix_time``, wall times...), ``analog_state`` (the
    :class:`thermo.AnalogState` the next step starts from), ``programmed`` (the exact path's
    :class:`thermo.lowrank_device.ProgrammedArrays` when the hardware has a coupling DAC).
    """

    _extra_key = "tngd"

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.01,
        damping: float = 0.01,
        loss: str = "cross_entropy",
        analog_time_tau: float = 50.0,
        readout_window_tau: float = 0.0,
        hardware: str | HardwareSpec = "ideal",
        seed: int = 0,
        warm_start: bool = True,
        initial_state: str = "gradient",
        method: str = "auto",
        delay_tau: float = 0.0,
        n_readout: int | None = None,
        kappa: float | None = None,
        adam: bool = False,
        adam_eps: float = 1e-8,
        propagator: str = "auto",
        **solver_config_options: Any,
    ) -> None:
        if initial_state not in INITIAL_STATES:
            raise UnsupportedConfigurationError(
                f"initial_state must be one of {', '.join(INITIAL_STATES)}, got {initial_state!r}"
            )
        reserved = sorted(set(solver_config_options) & set(_RESERVED))
        if reserved:
            raise UnsupportedConfigurationError(
                f"{reserved} are set by TNGD from analog_time_tau and readout_window_tau"
            )
        known = {f.name for f in dataclasses.fields(SolverConfig)}
        unknown = sorted(set(solver_config_options) - known)
        if unknown:
            raise UnsupportedConfigurationError(f"unknown SolverConfig option(s) {unknown}; known: {sorted(known)}")
        if not isinstance(seed, int) or seed < 0:
            raise UnsupportedConfigurationError(f"seed must be an integer >= 0, got {seed!r}")
        check_damping(damping)
        if method not in METHODS:
            raise UnsupportedConfigurationError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if propagator not in PROPAGATORS:
            raise UnsupportedConfigurationError(
                f"propagator must be one of {', '.join(PROPAGATORS)}, got {propagator!r}"
            )
        if not (isinstance(adam_eps, (int, float)) and adam_eps > 0):
            raise UnsupportedConfigurationError(f"adam_eps must be > 0, got {adam_eps!r}")
        defaults = dict(lr=lr, damping=damping, analog_time_tau=analog_time_tau, readout_window_tau=readout_window_tau,
                        delay_tau=delay_tau)
        super().__init__(model, defaults, loss)
        self.hardware = preset(hardware) if isinstance(hardware, str) else hardware
        what = f"TNGD's method={method!r}"
        if method == "auto":  # the first path that models the hardware (none: the simulator's refusal)
            method = first_covering(PATHS, self.hardware, self.num_params) or "simulator"
            what = f"TNGD's method='auto' (here {method!r})"
        try:
            check_modelled(self.hardware, _PATH_MODELS[method], what, _PATH_ALTERNATIVE[method], self.num_params)
        except UnmodelledHardwareError as err:
            raise UnsupportedConfigurationError(str(err)) from err
        if method == "simulator" and delay_tau:
            raise UnsupportedConfigurationError("delay_tau is modelled by the exact and krylov paths only")
        self.method = method
        self.adam, self.adam_eps = bool(adam), float(adam_eps)
        self.device: LowRankDevice | None = None
        #: the arrays of the last step as the coupling DAC programmed them (exact path with ``bits_A``)
        self.programmed: ProgrammedArrays | None = None
        if method != "simulator":
            h = self.hardware.sample_interval_tau
            n_samples = n_readout if n_readout is not None else max(1, round(readout_window_tau / h))
            chip = self.hardware if kappa is None else self.hardware.replace(kT=kappa)
            spec = LowRankDeviceSpec(chip, n_readout=n_samples, method="eigen" if method == "exact" else "krylov",
                                     propagator=propagator)
            self.device = LowRankDevice(spec)
        elif kappa is not None or n_readout is not None or propagator != "auto":
            raise UnsupportedConfigurationError("kappa, n_readout and propagator belong to the exact path; the "
                                                "simulator reads hardware.kT and readout_window_tau")
        self.config = SolverConfig(**solver_config_options)
        self.seed = seed
        self.warm_start = warm_start
        self.initial_state = initial_state
        self.analog_state: AnalogState | None = None
        self.last_diagnostics: SolverDiagnostics | None = None
        if method == "simulator":
            self._schedule(analog_time_tau, readout_window_tau)  # refuse off-grid times now
        if method == "simulator":
            self._check_dense_plan(rank=0)  # the N x N part is known now: refuse before any step

    def _check_dense_plan(self, rank: int) -> None:
        """Refuse a simulator plan beyond the memory budget (:func:`dense_plan_bytes`)."""
        n = self.num_params
        unsupported = [describe(f, self.hardware, n) for f in unmodelled(self.hardware, lowrank_device.MODELS, n)]
        if unsupported:
            alternative = (f"hardware without {', '.join(unsupported)} (hardware.replace(...)), which TNGD propagates "
                           "on the exact low-rank path")
        else:
            alternative = "method='auto' (this hardware runs on the exact low-rank path)"
        itemsize = self.param_groups[0]["params"][0].element_size()
        check_memory(dense_plan_bytes(n, rank, self.hardware, itemsize),
                     f"TNGD's chip simulator (dense N x N couplings, N = {n})", alternative)

    # -- timing ----------------------------------------------------------------------------------
    def _schedule(self, t: float, w: float) -> tuple[int, int]:
        """Samples ``(n_total, n_window)`` of a run of ``t`` tau read over the last ``w`` tau."""
        h = self.hardware.sample_interval_tau
        counts = []
        for name, value in (("analog_time_tau", t), ("readout_window_tau", w)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UnsupportedConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
            n = round(value / h)
            if abs(n * h - value) > 1e-9 * max(1.0, value):
                raise UnsupportedConfigurationError(
                    f"{name}={value!r} is not a multiple of the readout sample interval {h:g} tau: the state "
                    "can only be read on the sample grid (change the value or hardware.sample_rate_hz)"
                )
            counts.append(n)
        n_total, n_window = counts[0], max(1, counts[1])
        if n_total and n_window > n_total:
            raise UnsupportedConfigurationError(
                f"readout_window_tau={w!r} is longer than analog_time_tau={t!r}: the read happens inside the run"
            )
        return n_total, n_window

    def _step_seed(self) -> int:
        """Seed of this step's noise, a function of ``(seed, step)`` only."""
        return int(np.random.SeedSequence([self.seed, self._step_count]).generate_state(1, np.uint32)[0])

    # -- the step --------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One TNGD step on the batch given to :meth:`set_batch`; returns the closure's loss."""
        if self._batch is None:
            raise UnsupportedConfigurationError(
                "TNGD.step() needs the batch its curvature is built from: call optimizer.set_batch(inputs, targets) "
                "before every optimizer.step(closure)"
            )
        if self.device is not None:
            return self._step_lowrank(closure)
        group = self.param_groups[0]
        damping, t, w = group["damping"], group["analog_time_tau"], group["readout_window_tau"]
        check_damping(damping)
        n_total, n_window = self._schedule(t, w)
        t0 = time.perf_counter()
        loss, g = self._gradient(closure)
        t1 = time.perf_counter()
        U = self._curvature()
        self._check_dense_plan(rank=U.shape[1])  # before the N x N arrays are formed
        t2 = time.perf_counter()
        if self.warm_start and self.analog_state is not None:
            x0: AnalogState | None = self.analog_state
        elif self.initial_state == "gradient":
            x0 = AnalogState(g.detach().to("cpu", torch.float64).numpy().copy())
        else:
            x0 = None
        x, state, diag = self.relax_on_device(U, g, damping, x0, n_total, n_window)
        t3 = time.perf_counter()
        self._apply(self._direction(x))
        self.analog_state = state
        self._step_count += 1
        self._batch = None
        self.last_diagnostics = diag
        thermo_diag = diag.extra.get("thermo")
        alpha = thermo_diag.matrix_scale if thermo_diag is not None else float("nan")
        analog_tau = thermo_diag.analog_time_tau if thermo_diag is not None else 0.0
        self.last_stats = {
            "step": self._step_count,
            "N": U.shape[0],
            "rank": U.shape[1],
            "damping": damping,
            "loss": float(loss.detach()) if isinstance(loss, Tensor) else float("nan"),
            "analog_time_tau": analog_tau,
            "analog_time_s": diag.analog_time_s,
            # the relaxation exponent is A t / alpha (bound-management retries excluded)
            "matrix_time": n_total * self.hardware.sample_interval_tau / alpha if thermo_diag is not None else 0.0,
            "gradient_s": t1 - t0,
            "curvature_s": t2 - t1,
            "device_s": t3 - t2,
            "update_s": time.perf_counter() - t3,
        }
        return loss

    def _direction(self, x: Tensor) -> Tensor:
        """The step direction from the read: ``x``, or TNGD-Adam's ``x / (|x| + eps)`` (Adam with
        ``beta1 = beta2 = 0``: its moments are this step's ``x`` and ``x^2``)."""
        return x / (x.abs() + self.adam_eps) if self.adam else x

    def _step_lowrank(self, closure: Callable[[], Tensor] | None) -> Tensor:
        """A step on the exact (or Lanczos) device: the Gram of the batch GGN, one upload, a run
        of ``t``, the read, then ``t_d`` more on this upload while the next gradient is computed."""
        device = self.device
        if device is None or self._batch is None:
            raise UnsupportedConfigurationError(
                "TNGD's low-rank step needs the exact device and a batch: call optimizer.set_batch(inputs, targets) "
                "before optimizer.step(closure)"
            )
        group = self.param_groups[0]
        damping, t, t_d = group["damping"], float(group["analog_time_tau"]), float(group["delay_tau"])
        check_damping(damping)
        for name, value in (("analog_time_tau", t), ("delay_tau", t_d)):
            if not (math.isfinite(value) and value >= 0):
                raise UnsupportedConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        t0 = time.perf_counter()
        loss, g = self._gradient(closure)
        t1 = time.perf_counter()
        inputs = self._batch[0]
        device.generator = torch.Generator(device=g.device).manual_seed(self._step_seed())
        notes: tuple[str, ...] = ()
        chip = device.hardware
        try:  # LowRankCurvature refuses a non-finite Gram; the device a state it cannot propagate
            if chip.bits_A is None:  # ideal arrays: matrix-free, J_f never formed
                op = GGNOperator(self.model, inputs, loss=self.loss, params=trainable_params(self.model),
                                 check=self._step_count == 0, reduced_factor=True)
                curvature = LowRankCurvature(apply_u=op.apply_u, apply_ut=op.apply_ut, gram=op.gram(),
                                             damping=damping, n=op.n)
            else:
                arrays = self._program(inputs)
                curvature = arrays.curvature(damping)
                notes = ((f"coupling DAC {chip.bits_A} bits: J_f rel. error "
                          f"{arrays.jacobian_rel_error:.2e}, H_L {arrays.hessian_rel_error:.2e}"),)
            t2 = time.perf_counter()
            device.upload(curvature, g)
            if not self.warm_start or device.state is None:
                device.reset(g.clone() if self.initial_state == "gradient" else None)
            before = device.analog_time_tau
            x = device.run(t)
            device.idle(t_d)
        except NonFiniteInputError as err:  # the loop's non-finite policy (stop, or fall back) takes it
            raise NonFiniteGradientError(f"TNGD device at step {self._step_count + 1}: {err}") from err
        analog_tau = device.analog_time_tau - before
        t3 = time.perf_counter()
        self._apply(self._direction(x))
        self._step_count += 1
        self._batch = None
        rank = curvature.rank
        self.last_diagnostics = SolverDiagnostics(
            f"tngd-{self.method}", t3 - t2, analog_time_s=analog_tau * chip.tau_s,
            notes=(f"rank {rank}, {_propagation_note(device.process, rank)}", *notes),
        )
        self.last_stats = {
            "step": self._step_count, "N": curvature.n, "rank": rank, "damping": damping,
            "loss": float(loss.detach()) if isinstance(loss, Tensor) else float("nan"),
            "analog_time_tau": analog_tau, "analog_time_s": analog_tau * chip.tau_s, "matrix_time": t,
            "gradient_s": t1 - t0, "curvature_s": t2 - t1, "device_s": t3 - t2, "update_s": time.perf_counter() - t3,
        }
        return loss

    def _program(self, inputs: Any) -> ProgrammedArrays:
        """The batch's ``J_f`` (formed layer by layer) and ``H_L`` through the coupling DAC;
        kept as :attr:`programmed`."""
        assert self.device is not None
        chip = self.device.hardware
        jac, outputs = output_jacobian(self.model, inputs, params=trainable_params(self.model),
                                       check=self._step_count == 0)
        # programming holds the scaled array, its levels and the realized copy beside J_f
        check_memory(3 * jac.numel() * jac.element_size(), f"programming the J_f array ({tuple(jac.shape)})",
                     "hardware with an ideal coupling DAC (hardware.replace(bits_A=None): J_f is never formed)")
        hessian = loss_hessian(outputs, self.loss).to(jac.dtype)
        self.programmed = program_arrays(jac, hessian, chip.bits_A, chip.rounding, chip.coupling_range,
                                         seed=self._step_seed())
        return self.programmed

    def relax_on_device(
        self, U: Tensor, g: Tensor, damping: float, x0: AnalogState | None, n_total: int, n_window: int
    ) -> tuple[Tensor, AnalogState | None, SolverDiagnostics]:
        """The device side of a step: program ``A = U U^T + damping I`` (``N x N``, formed
        densely) and ``g`` (``(N,)``), let the state relax from ``x0`` (``None``: zero volts) for
        ``n_total`` sample intervals and read the average of the last ``n_window`` samples.

        Returns the read ``(N,)`` (dtype and device of ``g``), the final state and the
        diagnostics. ``n_total = 0`` reads ``x0`` without running the device.
        """
        if n_total == 0 or not bool(g.any()):
            # Nothing runs: t = 0 reads the state as it is; a zero gradient (an exact stationary
            # point, where the fixed point is 0 and the input scale undefined) updates nothing.
            note = "analog time 0: state read without running the device" if n_total == 0 else (
                "zero gradient: device not run, parameters unchanged"
            )
            read = torch.zeros_like(g)
            if n_total == 0 and x0 is not None:
                read = torch.as_tensor(x0.x, dtype=g.dtype, device=g.device)
            return read, x0, SolverDiagnostics("thermo", 0.0, notes=(note,))
        h = self.hardware.sample_interval_tau
        config = dataclasses.replace(self.config, burn_in_tau=(n_total - n_window) * h, window_tau=n_window * h)
        device = ThermoSolver(hardware=self.hardware, config=config, seed=self._step_seed())
        G = U @ U.mT
        out = device.solve(0.5 * (G + G.mT), g, damping, x0=x0)
        return out.x, out.state, out.diagnostics

    # -- checkpoints -----------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        state = self.analog_state

        def tensor(a: np.ndarray | None) -> Tensor | None:
            return None if a is None else torch.as_tensor(np.array(a, dtype=np.float64))

        if self.device is not None:
            x = self.device.state
            return {"step": self._step_count, "analog_x": None if x is None else x.detach().clone(),
                    "analog_velocity": None, "analog_time_tau": self.device.analog_time_tau}
        return {
            "step": self._step_count,
            "analog_x": None if state is None else tensor(state.x),
            "analog_velocity": None if state is None else tensor(state.velocity),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._step_count = int(extra["step"])
        x, v = extra["analog_x"], extra["analog_velocity"]
        if self.device is not None:
            self.device.reset(None if x is None else x.detach().clone())
            self.device.analog_time_tau = float(extra.get("analog_time_tau", 0.0))
            return
        self.analog_state = None if x is None else AnalogState(
            x.detach().cpu().double().numpy().copy(), None if v is None else v.detach().cpu().double().numpy().copy()
        )
