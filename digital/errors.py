"""Exceptions raised by the digital training side.

Input problems derive from :class:`thermo.errors.InputError` (itself a ``ValueError``), so one
handler catches a bad matrix whether the solver or the optimizer found it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from thermo.errors import InputError, NonFiniteInputError


class UnknownSolverError(InputError, KeyError):
    """A solver was asked for by a name that no backend registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedConfigurationError(InputError):
    """A combination of options the optimizer or the solver cannot honour."""


class UnsupportedOperationError(UnsupportedConfigurationError):
    """A backend was asked for an operation it does not provide (e.g. ``eigh`` on ``cg``)."""


class NonFiniteGradientError(NonFiniteInputError):
    """A gradient, loss or curvature factor contains NaN or infinity."""


class NotAModelError(UnsupportedConfigurationError):
    """An optimizer that needs the network itself was given ``model.parameters()`` (or another
    non-module): K-FAC hooks the layers, NGD and TNGD differentiate the model."""


def require_model(model: Any, owner: str, why: str, call: str | None = None) -> None:
    """Raise :class:`NotAModelError` unless ``model`` is an ``nn.Module``.

    ``owner`` names the constructor (``"KFAC"``), ``why`` says what it does with the model and
    ``call`` shows the right call (default ``"<owner>(model, lr=...)"``)."""
    from torch import nn

    if isinstance(model, nn.Module):
        return
    call = call or f"{owner}(model, lr=...)"
    if isinstance(model, (Iterator, list, tuple)):  # model.parameters() or a list of tensors
        raise NotAModelError(f"{owner} needs the model itself ({call}), not model.parameters(): {why}")
    raise NotAModelError(
        f"{owner} needs the model itself ({call}), an nn.Module; got {type(model).__name__}: {why}"
    )


class TrainingStopped(RuntimeError):
    """Training stopped early: a non-finite loss, gradient or update (``on_nonfinite="stop"``),
    or a diverging loss (:class:`TrainingDiverged`). The message names the step, the value and
    the fix; ``result`` is the :class:`~digital.train.TrainResult` of every step recorded so far
    (its ``status`` says why it stopped), so the caller can still write the history."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class TrainingDiverged(TrainingStopped):
    """The smoothed training loss grew past ``TrainConfig.divergence_factor`` times its best."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another ``KeyboardInterrupt``) during :func:`~digital.train.train`. It is a
    ``KeyboardInterrupt``, so code that does not know it still stops; ``result`` holds every step
    recorded so far (status ``"interrupted"``) and ``checkpoint_step`` the step the checkpoint
    holds (None without one)."""

    def __init__(self, message: str, result: Any = None, checkpoint_step: int | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.checkpoint_step = checkpoint_step

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoEvaluationError(RuntimeError):
    """A result was asked for its final evaluation but no step of it was evaluated (a run that
    stopped or was interrupted before its first evaluation)."""
