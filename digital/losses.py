"""The training losses and their conventions, in one place: the optimizers' curvature (loss
Hessians), the tasks and the training loop all use these definitions."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from thermo.errors import ShapeMismatchError

from .errors import UnsupportedConfigurationError

LOSSES = ("cross_entropy", "mse")


def check_loss(loss: str) -> str:
    """``loss`` if it is one of :data:`LOSSES`, else a clear error."""
    if loss not in LOSSES:
        raise UnsupportedConfigurationError(f"unknown loss {loss!r}; supported: {', '.join(LOSSES)}")
    return loss



def _mse(outputs: Tensor, targets: Tensor) -> Tensor:
    if outputs.shape != targets.shape:
        raise ShapeMismatchError(
            f"mse needs outputs and targets of one shape, got {tuple(outputs.shape)} and {tuple(targets.shape)}"
        )
    return 0.5 * (outputs - targets).pow(2).reshape(outputs.shape[0], -1).sum(dim=1).mean()


def loss_function(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Mean-reduced training loss ``(outputs (B, d), targets) -> scalar``.

    - ``cross_entropy``: ``F.cross_entropy`` (targets long ``(B,)``), averaged over the batch.
    - ``mse``: ``0.5 * sum_j (outputs_j - targets_j)^2`` summed over the outputs and averaged
      over the batch (targets float ``(B, d)``); the ``0.5`` makes its Hessian with respect to
      the outputs the identity (per example), the convention the K-FAC code assumes.
    """
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse":
        return _mse
    raise UnsupportedConfigurationError(f"unknown loss {name!r}; supported: {', '.join(LOSSES)}")


@torch.no_grad()
def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of examples whose ``argmax`` output matches the label.

    ``targets`` long ``(B,)`` labels, or float ``(B, d)`` (e.g. one-hot regression targets) in
    which case the label is ``targets.argmax(-1)``. Returns a Python float in [0, 1].
    """
    if targets.dim() == outputs.dim() and targets.is_floating_point():
        labels = targets.argmax(dim=-1)
    else:
        labels = targets
    if labels.shape != outputs.shape[:-1]:
        raise ShapeMismatchError(
            f"accuracy needs labels of shape {tuple(outputs.shape[:-1])}, got {tuple(labels.shape)}"
        )
    if labels.numel() == 0:
        return float("nan")
    return (outputs.argmax(dim=-1) == labels).float().mean().item()
