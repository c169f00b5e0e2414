"""Structural options of the K-FAC optimizer (hyperparameters that schedulers change, such as
the learning rate and damping, live in ``param_groups`` instead)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..errors import UnsupportedConfigurationError
from ..losses import LOSSES

FISHER_TYPES = ("empirical", "mc", "type-2")
DAMPING_MODES = ("pi", "factored", "eigenbasis")
MODES = ("inverse", "solve")


@dataclass(frozen=True)
class KFACConfig:
    fisher_type: Literal["empirical", "mc", "type-2"] = "mc"
    """How ``G`` is built: ``empirical`` from the training loss's own output gradients (no extra
    pass); ``mc`` from gradients of the loss at labels sampled from the model (the Fisher, one
    extra backward per sample); ``type-2`` from the columns of the loss Hessian's square root
    (the exact GGN's factor, ``d_z`` extra backwards). ``mc`` and ``type-2`` need the batch:
    call ``optimizer.set_batch(inputs, targets)`` before ``step``."""
    mc_samples: int = 1
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    """The training loss, mean-reduced over the batch; ``mse`` is ``0.5 * sum`` over outputs."""
    weight_sharing: Literal["expand", "reduce"] = "expand"
    """Approximation for layers applied at several positions per example (tokens, patches,
    nodes, convolution locations); ``per_module`` overrides it by module name."""
    per_module: tuple[tuple[str, str], ...] = ()
    ema_decay: float = 0.95
    """``factor <- decay * factor + (1 - decay) * new``; the first estimate is taken as is."""
    factor_update_steps: int = 1
    inv_update_steps: int = 10
    damping_mode: Literal["pi", "factored", "eigenbasis"] = "pi"
    """``pi``: ``(G + sqrt(lambda)/pi I)^-1 grad (A + pi sqrt(lambda) I)^-1`` with Martens and
    Grosse's ``pi = sqrt((tr A / dim A) / (tr G / dim G))`` (DESIGN.md writes the same rule with
    ``1/pi``); ``factored``: the same with ``pi = 1``; ``eigenbasis``: divide by
    ``lambda_G lambda_A + lambda`` in the factors' eigenbasis (needs a backend with ``eigh``)."""
    min_damping: float = 1e-8
    mode: Literal["inverse", "solve"] = "inverse"
    """``inverse``: invert the damped factors every ``inv_update_steps`` and multiply;
    ``solve``: two solves with matrix right-hand sides every step (warm-started)."""
    solver_fallback: Literal["exact", "none"] = "exact"
    """On a solver failure (diverged or indefinite realized matrix, non-finite result), redo
    the operation with the exact backend and count it, or re-raise (``none``)."""
    seed: int = 0
    """Seed of the label sampling of ``mc``."""
    verbose: bool = False
    """Print the registration table at construction (it is always printed when some parameters
    fall back to first-order updates)."""

    def __post_init__(self) -> None:
        if self.fisher_type not in FISHER_TYPES:
            raise UnsupportedConfigurationError(f"fisher_type must be one of {FISHER_TYPES}, got {self.fisher_type!r}")
        if self.loss not in LOSSES:
            raise UnsupportedConfigurationError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.weight_sharing not in ("expand", "reduce"):
            raise UnsupportedConfigurationError(f"weight_sharing must be expand or reduce, got {self.weight_sharing!r}")
        for name, approx in self.per_module:
            if approx not in ("expand", "reduce"):
                raise UnsupportedConfigurationError(f"per_module[{name!r}] must be expand or reduce, got {approx!r}")
        if self.damping_mode not in DAMPING_MODES:
            raise UnsupportedConfigurationError(f"damping_mode must be one of {DAMPING_MODES}, got {self.damping_mode!r}")
        if self.mode not in MODES:
            raise UnsupportedConfigurationError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "solve" and self.damping_mode == "eigenbasis":
            raise UnsupportedConfigurationError("damping_mode='eigenbasis' works on eigendecompositions: use mode='inverse'")
        if not 0 <= self.ema_decay < 1:
            raise UnsupportedConfigurationError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        for name in ("factor_update_steps", "inv_update_steps", "mc_samples"):
            if int(getattr(self, name)) < 1:
                raise UnsupportedConfigurationError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.inv_update_steps % self.factor_update_steps:
            raise UnsupportedConfigurationError(
                "inv_update_steps must be a multiple of factor_update_steps "
                f"(got {self.inv_update_steps} and {self.factor_update_steps})"
            )
        if not (math.isfinite(self.min_damping) and self.min_damping >= 0):
            raise UnsupportedConfigurationError(f"min_damping must be >= 0, got {self.min_damping!r}")
        if self.solver_fallback not in ("exact", "none"):
            raise UnsupportedConfigurationError(f"solver_fallback must be exact or none, got {self.solver_fallback!r}")

    def approximation_for(self, module_name: str) -> str:
        return dict(self.per_module).get(module_name, self.weight_sharing)
