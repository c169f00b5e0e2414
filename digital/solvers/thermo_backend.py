"""The thermodynamic backend: solves and inversions run on the simulated analog chip of
:mod:`thermo`, with any hardware preset or :class:`~thermo.hardware.HardwareSpec`.

Damping is added digitally before programming (on hardware it is a set of extra resistors to
ground, the same matrix). Results come back as tensors on the caller's device and dtype; the
diagnostics carry the analog time and the simulator's own error estimate, and the full
:class:`thermo.Diagnostics` under ``extra["thermo"]``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from thermo import AnalogState, DeviceSpec, HardwareSpec, SolverConfig, ThermodynamicSolver, as_device, preset
from thermo.errors import UnsupportedInputError

from .base import LinearSolver, SolverDiagnostics
from .registry import register_solver


@register_solver(summary="the simulated thermodynamic device (thermo): any hardware preset, chip or DeviceSpec")
class ThermoSolver(LinearSolver):
    """``hardware``: a hardware preset name (``ideal``, ``published``, ``noisy``...), a chip
    (:class:`thermo.HardwareSpec`, one chip on the default link) or a whole device
    (:class:`thermo.DeviceSpec`: chips, link and knobs, which price each call's device time);
    ``config``: a :class:`thermo.SolverConfig`, or its fields as keyword options
    (``target_rel_error=1e-3``); ``seed`` makes the thermal noise reproducible."""

    name = "thermo"

    def __init__(
        self,
        hardware: str | HardwareSpec | DeviceSpec = "ideal",
        config: SolverConfig | None = None,
        seed: int = 0,
        check_inputs: bool = True,
        symmetry_rtol: float = 1e-6,
        **config_options: Any,
    ) -> None:
        super().__init__(check_inputs=check_inputs, symmetry_rtol=symmetry_rtol)
        device = as_device(preset(hardware) if isinstance(hardware, str) else hardware)
        if config is None:
            config = SolverConfig(**config_options)
        elif config_options:
            raise TypeError("give either config or its fields as options, not both")
        self.device = device
        self.hardware = device.chip
        self.simulator = ThermodynamicSolver(device, config, seed=seed)

    def state_dict(self) -> dict[str, Any]:
        """The simulator's random streams (thermal noise, stochastic rounding, drift)."""
        return {"rng": copy.deepcopy(self.simulator.rng), "calls": self.simulator._calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.simulator.rng = copy.deepcopy(state["rng"])
        self.simulator._calls = int(state["calls"])

    def _solve(self, A: Tensor, B: Tensor, damping: float, x0: Any) -> tuple[Tensor, SolverDiagnostics, Any]:
        a = _host(A)
        a[np.diag_indices_from(a)] += damping
        if isinstance(x0, Tensor):
            x0 = _host(x0)
        result = self.simulator.solve(a, _host(B), x0=x0)
        x = torch.as_tensor(np.asarray(result.x), dtype=B.dtype, device=B.device)
        return x, _diagnostics(self.name, result.diagnostics), result.state

    def _inverse(self, A: Tensor, damping: float) -> tuple[Tensor, SolverDiagnostics]:
        a = _host(A)
        a[np.diag_indices_from(a)] += damping
        result = self.simulator.inverse(a)
        inv = torch.as_tensor(np.asarray(result.inverse), dtype=A.dtype, device=A.device)
        return inv, _diagnostics(self.name, result.diagnostics)


def _host(t: Tensor | np.ndarray | AnalogState) -> Any:
    if isinstance(t, np.ndarray) and t.dtype.kind not in "fiu":
        raise UnsupportedInputError(f"x0 has dtype {t.dtype}: pass a real float array or a torch tensor")
    if isinstance(t, Tensor):
        return t.detach().to("cpu", torch.float64).numpy().copy()
    return t


def _diagnostics(name: str, d: Any) -> SolverDiagnostics:
    return SolverDiagnostics(
        backend=name,
        wall_time_s=0.0,
        analog_time_s=d.analog_time_s,
        estimated_rel_error=d.estimated_rel_error,
        notes=tuple(d.notes),
        extra={"thermo": d},
    )
