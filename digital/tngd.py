"""Thermodynamic natural-gradient descent (Donatella et al. 2024, arXiv 2405.13817).

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

from thermo import AnalogState, HardwareSpec, SolverConfig, preset

from .errors import UnsupportedConfigurationError
from .ngd import CurvatureOptimizer, check_damping
from .solvers import SolverDiagnostics
from .solvers.thermo_backend import ThermoSolver

INITIAL_STATES = ("gradient", "zero")
_RESERVED = ("burn_in_tau", "window_tau")


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
        solver_config_options: other :class:`thermo.SolverConfig` fields (``closed_form``,
            ``method``, ``input_scaling``...); ``burn_in_tau`` and ``window_tau`` are set here.

    After a step: ``last_diagnostics`` (:class:`SolverDiagnostics` of the device run; the full
    :class:`thermo.Diagnostics` under ``extra["thermo"]``), ``last_stats`` (``analog_time_tau``,
    ``analog_time_s``, ``matrix_time``, wall times...), ``analog_state`` (the
    :class:`thermo.AnalogState` the next step starts from).
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
        defaults = dict(lr=lr, damping=damping, analog_time_tau=analog_time_tau, readout_window_tau=readout_window_tau)
        super().__init__(model, defaults, loss)
        self.hardware = preset(hardware) if isinstance(hardware, str) else hardware
        self.config = SolverConfig(**solver_config_options)
        self.seed = seed
        self.warm_start = warm_start
        self.initial_state = initial_state
        self.analog_state: AnalogState | None = None
        self.last_diagnostics: SolverDiagnostics | None = None
        self._schedule(analog_time_tau, readout_window_tau)  # refuse off-grid times now
        n_units = self.hardware.n_units
        if n_units is not None and self.num_params > n_units:
            # The simulator block-iterates larger matrices (Gauss-Seidel sweeps of block solves):
            # there is no single analog run whose state after time t could be read.
            raise UnsupportedConfigurationError(
                f"TNGD reads the state of one analog run, but N = {self.num_params} parameters exceed the "
                f"chip's n_units = {n_units}; use hardware.replace(n_units=None) (one large chip)"
            )

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
        group = self.param_groups[0]
        damping, t, w = group["damping"], group["analog_time_tau"], group["readout_window_tau"]
        check_damping(damping)
        n_total, n_window = self._schedule(t, w)
        t0 = time.perf_counter()
        loss, g = self._gradient(closure)
        t1 = time.perf_counter()
        U = self._curvature()
        t2 = time.perf_counter()
        if self.warm_start and self.analog_state is not None:
            x0: AnalogState | None = self.analog_state
        elif self.initial_state == "gradient":
            x0 = AnalogState(g.detach().to("cpu", torch.float64).numpy().copy())
        else:
            x0 = None
        x, state, diag = self.relax_on_device(U, g, damping, x0, n_total, n_window)
        t3 = time.perf_counter()
        self._apply(x)
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

        return {
            "step": self._step_count,
            "analog_x": None if state is None else tensor(state.x),
            "analog_velocity": None if state is None else tensor(state.velocity),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._step_count = int(extra["step"])
        x, v = extra["analog_x"], extra["analog_velocity"]
        self.analog_state = None if x is None else AnalogState(
            x.detach().cpu().double().numpy().copy(), None if v is None else v.detach().cpu().double().numpy().copy()
        )
