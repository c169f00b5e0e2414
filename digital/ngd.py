"""Natural-gradient descent with the batch GGN (the Fisher for cross-entropy), the digital
baseline of thermodynamic NGD: ``theta <- theta - lr (G + lambda I)^-1 g``.

Usage::

    opt = NGD(model, lr=0.1, damping=1e-3, loss="cross_entropy", method="woodbury")
    for inputs, targets in batches:
        opt.set_batch(inputs, targets)           # the curvature needs the batch inputs
        def closure():
            opt.zero_grad()
            loss = batch_loss(model(inputs), targets, "cross_entropy")
            loss.backward()
            return loss
        opt.step(closure)

``G = U U^T`` comes from :func:`digital.curvature.ggn_factor` (``U`` is ``N x r``, ``r = b d_z``);
the three methods compute the same vector ``x = (G + lambda I)^-1 g`` at different costs:

* ``dense``: forms ``G`` (``N x N``) and solves it; ``O(N^3)``, the reference.
* ``woodbury``: ``x = (g - U (lambda I + U^T U)^-1 U^T g) / lambda``; an ``r x r`` solve,
  ``O(r^2 N + r^3)``.
* ``cg``: conjugate gradients on the operator ``v -> U (U^T v) + lambda v``; ``O(c r N)``.

The ``dense`` and ``woodbury`` systems go through any backend of :mod:`digital.solvers`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from thermo.backends import all_finite

from .curvature import (
    Inputs,
    check_loss,
    flatten_params,
    ggn_factor,
    ggn_matvec,
    trainable_params,
)
from .errors import NonFiniteGradientError, UnsupportedConfigurationError, require_model
from .ggn import GGNOperator
from .momentum import heavy_ball
from .solvers import LinearSolver, SolverDiagnostics, get_solver

METHODS = ("dense", "woodbury", "cg")


class CurvatureOptimizer(torch.optim.Optimizer):
    """Shared machinery of the GGN-based optimizers (NGD, TNGD): one parameter group holding
    the model's trainable parameters, the stored batch, the closure-driven gradient with its
    finiteness check, the GGN factor and a step counter that checkpoints with the optimizer."""

    _extra_key = "curvature_optimizer"

    def __init__(self, model: nn.Module, defaults: dict[str, Any], loss: str) -> None:
        require_model(model, type(self).__name__, "it builds the curvature (the batch GGN) from the model's Jacobians")
        for name, value in defaults.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UnsupportedConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise UnsupportedConfigurationError("the model has no trainable parameters")
        super().__init__([p for _, p in named], defaults)
        self.model = model
        self.loss = check_loss(loss)
        self._names = {id(p): n for n, p in named}
        self._batch: tuple[Inputs, Tensor | None] | None = None
        self._step_count = 0
        self.last_stats: dict[str, Any] = {}

    @property
    def num_params(self) -> int:
        """``N``, the number of trainable scalars."""
        return sum(p.numel() for p in self.param_groups[0]["params"])

    def set_batch(self, inputs: Inputs, targets: Tensor | None = None) -> None:
        """Give the batch of the next :meth:`step` (inputs: a tensor or tuple of tensors, batch
        dimension first). A step consumes it: call again before every step."""
        self._batch = (inputs, targets)

    # -- pieces of a step ----------------------------------------------------------------------
    def _gradient(self, closure: Callable[[], Tensor] | None) -> tuple[Tensor, Tensor]:
        """Run the closure and return ``(loss, g)`` with ``g`` the flat gradient ``(N,)``
        (parameters without a gradient contribute zeros)."""
        if closure is None:
            raise UnsupportedConfigurationError(
                f"{type(self).__name__}.step needs a closure that zeroes the gradients, computes the mean loss, "
                "calls backward and returns the loss"
            )
        if self._batch is None:
            raise UnsupportedConfigurationError(
                f"{type(self).__name__} builds the curvature from the batch: call optimizer.set_batch(inputs, targets) "
                "before every step()"
            )
        with torch.enable_grad():
            loss = closure()
        grads = []
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                grads.append(torch.zeros_like(p))
                continue
            if not bool(torch.isfinite(p.grad).all()):
                raise NonFiniteGradientError(
                    f"the gradient of parameter {self._names.get(id(p), '?')!r} {tuple(p.shape)} contains NaN or infinity"
                )
            grads.append(p.grad)
        return loss, flatten_params(grads).detach()

    def _curvature(self) -> Tensor:
        """``U`` (``(N, r)``) of the stored batch at the current parameters."""
        assert self._batch is not None
        inputs = self._batch[0]
        U, _ = ggn_factor(self.model, inputs, self.loss, params=trainable_params(self.model))
        if not bool(torch.isfinite(U).all()):
            raise NonFiniteGradientError("the GGN factor U (Jacobians or loss Hessian) contains NaN or infinity")
        return U

    def _apply(self, direction: Tensor) -> None:
        """``theta <- (1 - lr wd) theta - lr m`` with ``m = direction`` or, with momentum
        ``mu``, the heavy-ball buffer ``m <- mu m + direction`` (decoupled weight decay)."""
        group = self.param_groups[0]
        lr, momentum, wd = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        offset = 0
        for p in group["params"]:
            d = direction[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            if momentum:
                d = heavy_ball(self.state[p], d, momentum)
            if wd:
                p.mul_(1.0 - lr * wd)
            p.add_(d, alpha=-lr)

    # -- checkpoints ---------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {"step": self._step_count}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._step_count = int(extra["step"])

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd[self._extra_key] = self._extra_state()
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop(self._extra_key, None)
        super().load_state_dict(state_dict)
        if extra is not None:
            self._load_extra_state(extra)


class NGD(CurvatureOptimizer):
    """Natural-gradient descent ``theta <- theta - lr (G + damping I)^-1 g`` with the batch GGN.

    Args:
        model: the network; all its trainable parameters form the one parameter group.
        lr: learning rate (in ``param_groups``, so schedulers apply).
        damping: Tikhonov damping ``lambda > 0`` (in ``param_groups``).
        loss: ``cross_entropy`` or ``mse`` (``0.5 ||z - y||^2`` per example, see
            :mod:`digital.curvature`); fixes the loss Hessian in ``G``.
        method: ``dense``, ``woodbury`` or ``cg`` (see the module docstring).
        solver: backend name, class or instance for the ``dense`` and ``woodbury`` systems. For
            ``cg`` the backend must accept operators; the default ``"exact"`` then means the
            ``cg`` backend (given ``solver_options``, e.g. ``{"rtol": 1e-10}``).
        solver_options: keyword options of a backend given by name or class.
        momentum: heavy-ball momentum on the natural gradient.
        weight_decay: decoupled weight decay (``theta <- (1 - lr wd) theta`` before the step).

    After a step, ``last_diagnostics`` is the solve's :class:`SolverDiagnostics` and
    ``last_stats`` a dict: ``step``, ``method``, ``N``, ``rank`` (``r = b d_z``), ``damping``,
    ``loss``, and wall times in seconds ``gradient_s``, ``curvature_s``, ``solve_s``, ``update_s``.
    """

    _extra_key = "ngd"

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.01,
        damping: float = 1e-3,
        loss: str = "cross_entropy",
        method: str = "woodbury",
        solver: str | LinearSolver | type[LinearSolver] = "exact",
        solver_options: dict[str, Any] | None = None,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        if method not in METHODS:
            raise UnsupportedConfigurationError(f"unknown NGD method {method!r}; choose one of {', '.join(METHODS)}")
        check_damping(damping)
        super().__init__(model, dict(lr=lr, damping=damping, momentum=momentum, weight_decay=weight_decay), loss)
        self.method = method
        self.solver = self._make_solver(method, solver, solver_options or {})
        self.last_diagnostics: SolverDiagnostics | None = None

    def _extra_state(self) -> dict[str, Any]:
        # A stochastic backend (``thermo``) checkpoints its random streams so a resumed run
        # draws the same noise; backends without ``state_dict`` keep none.
        solver_state = getattr(self.solver, "state_dict", None)
        return {**super()._extra_state(), "solver": solver_state() if callable(solver_state) else {}}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        load = getattr(self.solver, "load_state_dict", None)
        if callable(load) and extra.get("solver"):
            load(extra["solver"])

    @staticmethod
    def _make_solver(method: str, solver: Any, options: dict[str, Any]) -> LinearSolver:
        if method != "cg":
            return get_solver(solver, **options)
        if isinstance(solver, str) and solver.lower() == "exact":
            return get_solver("cg", **options)
        backend = get_solver(solver, **options)
        if not backend.supports_operator:
            raise UnsupportedConfigurationError(
                f"method='cg' is matrix-free and needs a backend that accepts operators, not {backend.name!r}"
            )
        return backend

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One NGD step on the batch given to :meth:`set_batch`; returns the closure's loss."""
        group = self.param_groups[0]
        damping = group["damping"]
        check_damping(damping)
        t0 = time.perf_counter()
        loss, g = self._gradient(closure)
        t1 = time.perf_counter()
        if self.method == "woodbury":  # matrix-free: the Gram of U, never U itself
            assert self._batch is not None
            op = GGNOperator(self.model, self._batch[0], loss=self.loss, params=trainable_params(self.model),
                             check=self._step_count == 0, reduced_factor=True)
            gram = op.gram()
            if not all_finite(gram):
                raise NonFiniteGradientError("the GGN Gram matrix (Jacobians or loss Hessian) contains NaN or infinity")
            t2 = time.perf_counter()
            x, diag = self.woodbury_step(op, gram, g, damping)
            shape = (op.n, op.rank)
        else:
            U = self._curvature()
            t2 = time.perf_counter()
            x, diag = self.natural_gradient(U, g, damping)
            shape = tuple(U.shape)
        t3 = time.perf_counter()
        self._apply(x)
        self._step_count += 1
        self._batch = None
        self.last_diagnostics = diag
        self.last_stats = {
            "step": self._step_count,
            "method": self.method,
            "N": shape[0],
            "rank": shape[1],
            "damping": damping,
            "loss": float(loss.detach()) if isinstance(loss, Tensor) else float("nan"),
            "gradient_s": t1 - t0,
            "curvature_s": t2 - t1,
            "solve_s": t3 - t2,
            "update_s": time.perf_counter() - t3,
            "analog_time_s": diag.analog_time_s,
        }
        return loss

    def woodbury_step(
        self, op: GGNOperator, gram: Tensor, g: Tensor, damping: float
    ) -> tuple[Tensor, SolverDiagnostics]:
        """``(U U^T + l I)^-1 g = (g - U (l I + K)^-1 U^T g) / l`` with ``K = U^T U`` the Gram of
        the matrix-free operator: one JVP pass, the ``r x r`` solve on this optimizer's backend,
        one VJP pass."""
        out = self.solver.solve(0.5 * (gram + gram.mT), op.apply_ut(g), damping)
        out.diagnostics.extra["system"] = f"woodbury capacitance ({op.rank} x {op.rank}), matrix-free"
        return (g - op.apply_u(out.x)) / damping, out.diagnostics

    def natural_gradient(self, U: Tensor, g: Tensor, damping: float) -> tuple[Tensor, SolverDiagnostics]:
        """``x = (U U^T + damping I)^-1 g`` (``(N,)``) by this optimizer's method, and the
        diagnostics of the linear solve it ran."""
        if self.method == "dense":
            G = U @ U.mT
            out = self.solver.solve(0.5 * (G + G.mT), g, damping)
            return out.x, out.diagnostics
        if self.method == "woodbury":
            # (U U^T + l I)^-1 = (I - U (l I + U^T U)^-1 U^T) / l : only an r x r system is solved.
            K = U.mT @ U
            out = self.solver.solve(0.5 * (K + K.mT), U.mT @ g, damping)
            out.diagnostics.extra["system"] = f"woodbury capacitance ({U.shape[1]} x {U.shape[1]})"
            return (g - U @ out.x) / damping, out.diagnostics
        out = self.solver.solve(ggn_matvec(U), g, damping)
        return out.x, out.diagnostics


def check_damping(damping: float) -> None:
    # The batch GGN has rank <= b d_z < N in general: without damping the system is singular
    # (and Woodbury divides by the damping).
    if not (isinstance(damping, (int, float)) and math.isfinite(damping) and damping > 0):
        raise UnsupportedConfigurationError(f"NGD damping must be a finite number > 0, got {damping!r}")
