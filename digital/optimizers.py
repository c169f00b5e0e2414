"""Optimizers by name under one training loop: first-order baselines from torch (``sgd``,
``adam``, ``adamw``) and the second-order methods of this package (``kfac``, ``ngd``, ``tngd``)
whose linear algebra goes through a pluggable solver.

:data:`OPTIMIZERS` is the one list: :func:`make_optimizer` looks names up in it (any case), the
training loop asks an entry whether it takes a solver, and the CLI's choices and help read it.
A new optimizer is its own module plus one :func:`register_optimizer` line below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from thermo.registry import Registry

from .errors import UnsupportedConfigurationError, require_model
from .kfac import KFAC
from .ngd import NGD
from .solvers import LinearSolver
from .tngd import TNGD

OptimizerFactory = Callable[..., torch.optim.Optimizer]
"""``factory(model, *, lr, loss, solver, solver_options, **options) -> torch.optim.Optimizer``;
``loss`` is ``cross_entropy`` or ``mse``, ``solver``/``solver_options`` the linear-algebra
backend (only passed on by factories whose entry takes a solver)."""


@dataclass(frozen=True)
class OptimizerKind:
    """What callers need to know about one registered optimizer."""

    factory: OptimizerFactory
    second_order: bool
    """Preconditions with curvature (K-FAC, NGD, TNGD) rather than first-order statistics."""
    takes_solver: bool
    """Its linear algebra goes through ``solver``/``solver_options`` (``TrainConfig.solver``)."""
    summary: str
    takes_hardware: bool = False
    """Runs on the simulated device itself and takes ``hardware=...`` among its own options
    (TNGD), not through a solver."""


OPTIMIZERS: Registry[OptimizerKind] = Registry("optimizer", UnsupportedConfigurationError)
"""Every optimizer :func:`make_optimizer` builds, in registration order; ``name in OPTIMIZERS``
ignores case and iterating yields the names (so ``argparse`` takes it as ``choices``)."""


def register_optimizer(
    name: str,
    factory: OptimizerFactory,
    summary: str,
    *,
    second_order: bool,
    takes_solver: bool,
    takes_hardware: bool = False,
) -> OptimizerKind:
    """Add optimizer ``name`` to :data:`OPTIMIZERS` (a name taken in any case is refused with
    UnsupportedConfigurationError); returns its entry."""
    kind = OptimizerKind(factory, second_order, takes_solver, summary, takes_hardware)
    return OPTIMIZERS.add(name, kind, summary)


def first_order_optimizers() -> tuple[str, ...]:
    """Names of the registered first-order optimizers, in registration order."""
    return tuple(e.name for e in OPTIMIZERS.entries() if not e.value.second_order)


def second_order_optimizers() -> tuple[str, ...]:
    """Names of the registered second-order optimizers, in registration order."""
    return tuple(e.name for e in OPTIMIZERS.entries() if e.value.second_order)


def _torch_first_order(cls: type[torch.optim.Optimizer]) -> OptimizerFactory:
    """A factory for a torch optimizer over the model's trainable parameters (it uses neither the
    loss nor a solver)."""

    def build(model: nn.Module, *, lr: float, loss: str, solver: Any, solver_options: Any, **options: Any) -> torch.optim.Optimizer:
        return cls([p for p in model.parameters() if p.requires_grad], lr=lr, **options)

    return build


def _on_device(cls: Callable[..., torch.optim.Optimizer]) -> OptimizerFactory:
    """A factory for an optimizer that runs on the simulated device (its hardware is an option)
    and so takes no solver."""

    def build(model: nn.Module, *, lr: float, loss: str, solver: Any, solver_options: Any, **options: Any) -> torch.optim.Optimizer:
        return cls(model, lr=lr, loss=loss, **options)

    return build


register_optimizer("sgd", _torch_first_order(torch.optim.SGD), "stochastic gradient descent (torch.optim.SGD)",
                   second_order=False, takes_solver=False)
register_optimizer("adam", _torch_first_order(torch.optim.Adam), "Adam (torch.optim.Adam)",
                   second_order=False, takes_solver=False)
register_optimizer("adamw", _torch_first_order(torch.optim.AdamW), "Adam with decoupled weight decay (torch.optim.AdamW)",
                   second_order=False, takes_solver=False)
register_optimizer("kfac", KFAC, "K-FAC, Kronecker-factored curvature; its inversions and solves go through the solver",
                   second_order=True, takes_solver=True)
register_optimizer("ngd", NGD, "natural-gradient descent with the batch GGN; its systems go through the solver",
                   second_order=True, takes_solver=True)
register_optimizer("tngd", _on_device(TNGD), "thermodynamic NGD, the natural gradient from the simulated device (hardware=...)",
                   second_order=True, takes_solver=False, takes_hardware=True)


def _refuse_solver(name: str, kind: OptimizerKind) -> None:
    """The message for a solver given to an optimizer whose entry takes none."""
    if kind.takes_hardware:
        raise UnsupportedConfigurationError(f"{name} runs on the simulated device: give hardware=... instead of a solver")
    if not kind.second_order:
        raise UnsupportedConfigurationError(f"{name!r} is a first-order optimizer: it takes no solver")
    raise UnsupportedConfigurationError(f"{name!r} takes no solver")


def make_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    loss: str = "cross_entropy",
    solver: str | LinearSolver = "exact",
    solver_options: dict[str, Any] | None = None,
    **options: Any,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (any case, see :data:`OPTIMIZERS`) for ``model``.

    ``loss`` (``cross_entropy`` or ``mse``) tells the curvature-based methods which loss Hessian
    to use; ``solver``/``solver_options`` select their backend (``tngd`` runs on the simulated
    device itself and takes its hardware in ``options``). Other ``options`` go to the
    optimizer's constructor (``momentum``, ``damping``, ``betas``, ``fisher_type``...).
    """
    require_model(model, "make_optimizer", "it builds each optimizer from the model (K-FAC hooks its layers, NGD "
                  "and TNGD differentiate it)", call=f"make_optimizer({name!r}, model, lr=...)")
    kind = OPTIMIZERS.get(name)
    default_solver = isinstance(solver, str) and solver.lower() == "exact"
    if not kind.takes_solver and (not default_solver or solver_options):
        _refuse_solver(name, kind)
    try:
        return kind.factory(model, lr=lr, loss=loss, solver=solver, solver_options=solver_options, **options)
    except TypeError as err:  # an option the optimizer does not take
        raise UnsupportedConfigurationError(f"bad options for optimizer {name!r}: {err}") from None
