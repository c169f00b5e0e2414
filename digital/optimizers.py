"""Optimizers by name under one training loop: first-order baselines from torch (``sgd``,
``adam``, ``adamw``) and the second-order methods of this package (``kfac``, ``ngd``, ``tngd``)
whose linear algebra goes through a pluggable solver."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import UnsupportedConfigurationError, require_model
from .solvers import LinearSolver

FIRST_ORDER = ("sgd", "adam", "adamw")
SECOND_ORDER = ("kfac", "ngd", "tngd")
OPTIMIZERS = FIRST_ORDER + SECOND_ORDER


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
    """Build optimizer ``name`` for ``model``.

    ``loss`` (``cross_entropy`` or ``mse``) tells the curvature-based methods which loss Hessian
    to use; ``solver``/``solver_options`` select their backend (``tngd`` runs on the simulated
    device itself and takes its hardware in ``options``). Other ``options`` go to the
    optimizer's constructor (``momentum``, ``damping``, ``betas``, ``fisher_type``...).
    """
    require_model(model, "make_optimizer", "it builds each optimizer from the model (K-FAC hooks its layers, NGD "
                  "and TNGD differentiate it)", call=f"make_optimizer({name!r}, model, lr=...)")
    key = name.lower()
    params = [p for p in model.parameters() if p.requires_grad]
    if key in FIRST_ORDER and (solver != "exact" or solver_options):
        raise UnsupportedConfigurationError(f"{name!r} is a first-order optimizer: it takes no solver")
    try:
        if key == "sgd":
            return torch.optim.SGD(params, lr=lr, **options)
        if key == "adam":
            return torch.optim.Adam(params, lr=lr, **options)
        if key == "adamw":
            return torch.optim.AdamW(params, lr=lr, **options)
        if key == "kfac":
            from .kfac import KFAC

            return KFAC(model, lr=lr, loss=loss, solver=solver, solver_options=solver_options, **options)
        if key == "ngd":
            from .ngd import NGD

            return NGD(model, lr=lr, loss=loss, solver=solver, solver_options=solver_options, **options)
        if key == "tngd":
            from .tngd import TNGD

            if solver != "exact" or solver_options:
                raise UnsupportedConfigurationError("tngd runs on the simulated device: give hardware=... instead of a solver")
            return TNGD(model, lr=lr, loss=loss, **options)
    except TypeError as err:  # an option the optimizer does not take
        raise UnsupportedConfigurationError(f"bad options for optimizer {name!r}: {err}") from None
    raise UnsupportedConfigurationError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")
