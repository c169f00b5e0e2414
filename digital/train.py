"""The training loop shared by studies and the CLI.

``train(TrainConfig(task="digits-mlp", optimizer="kfac", solver="thermo"))`` builds the task,
the optimizer and its solver, trains for ``steps`` steps and returns per-step metrics: loss,
batch accuracy, wall time per phase (from the optimizer's ``last_stats`` when it has them),
analog time and solver diagnostics; train and test loss and accuracy every ``eval_every``
steps. With a ``checkpoint`` path the run saves itself every ``checkpoint_every`` steps and at
the end, and a later call with the same configuration resumes where it stopped: the batch order
is a pure function of ``(seed, epoch)`` and every random state is in the checkpoint, so on CPU a
resumed run continues exactly as an uninterrupted one.

Non-finite values: ``on_nonfinite="stop"`` raises :class:`~digital.errors.TrainingStopped`
naming the step and the tensor; ``"fallback"`` redoes a step whose solver produced a non-finite
update with the exact backend (a non-finite loss or gradient still stops: no solver can help).
A finite loss that explodes raises :class:`~digital.errors.TrainingDiverged` (see
``TrainConfig.divergence_factor``). Every way out hands back the history: both exceptions carry
``.result``, and Ctrl-C raises :class:`~digital.errors.TrainingInterrupted` (a
``KeyboardInterrupt``) with ``.result``, after saving the checkpoint when one was asked for.
``TrainResult.status`` says how the run ended: ``"completed"``, ``"stopped: <reason>"``,
``"diverged: <reason>"`` or ``"interrupted"``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, final

import torch
from torch import Tensor, nn

from thermo.config_files import is_config_path
from thermo.device import DeviceSpec
from thermo.hardware import PRESETS, HardwareSpec
from thermo.provenance import provenance

from .data import ArrayDataset, batches_per_epoch, epoch_order
from .errors import (
    NoEvaluationError,
    NonFiniteGradientError,
    TrainingDiverged,
    TrainingInterrupted,
    TrainingStopped,
    UnsupportedConfigurationError,
)
from .losses import accuracy, loss_function
from .models import model_inputs_call
from .optimizers import OPTIMIZERS, make_optimizer
from .solvers import SOLVERS, get_solver
from .tasks import TASKS, Task, build_task

DIVERGENCE_SMOOTHING = 0.9
"""Decay of the exponential moving average of the batch loss that the divergence check watches
(a time constant of about ten steps: long enough to average batch-to-batch noise, short enough
that an exploding loss is caught within a few steps)."""

def _is_count(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _hardware_label(hardware: Any) -> str:
    """A preset's name, a hardware file's stem, the preset a spec equals, or ``custom``."""
    if isinstance(hardware, (str, os.PathLike)):
        return Path(hardware).stem if is_config_path(hardware) else str(hardware)
    if isinstance(hardware, HardwareSpec):
        return next((e.name for e in PRESETS.entries() if e.value() == hardware), "custom")
    if isinstance(hardware, DeviceSpec):
        return hardware.name or "custom-device"
    return type(hardware).__name__


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``optimizer_options`` and ``solver_options`` are keyword options of the
    optimizer (``damping``, ``fisher_type``, ``momentum``...) and of the solver backend
    (``hardware``, ``target_rel_error``...)."""

    task: str = "digits-mlp"
    optimizer: str = "kfac"
    lr: float = 0.1
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    solver: str = "exact"
    solver_options: dict[str, Any] = field(default_factory=dict)
    steps: int = 200
    """Optimizer steps to train for (an integer >= 1)."""
    batch_size: int | None = None
    """Examples per step (default: the task's suggestion)."""
    seed: int = 0
    """Seeds the model initialization and the batch order (an integer >= 0)."""
    eval_every: int = 50
    """Evaluate train and test loss/accuracy every so many steps (0: only at the end)."""
    checkpoint_every: int = 50
    """With a checkpoint path, save every so many steps (0: only at the end)."""
    on_nonfinite: Literal["stop", "fallback"] = "stop"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    divergence_factor: float | None = 100.0
    """Stop with :class:`~digital.errors.TrainingDiverged` when the smoothed training loss (an
    exponential moving average of the batch losses, :data:`DIVERGENCE_SMOOTHING`) exceeds this
    factor times its best value so far, the best floored at ``first loss / factor``; None turns
    the check off. Smoothing averages out the batch-to-batch noise, and the floor keeps a run
    that has converged to a tiny loss from tripping on a noisy batch: such a run only counts as
    diverged once its smoothed loss is worse than where it started. The default 100 is far above
    what normal runs reach (on the digits-MLP grids of :mod:`digital.tuning`, SGD, Adam and
    K-FAC, and NGD at lr 0.1, the smoothed loss never exceeds 2.0 times its best) and far below
    what a diverging run reaches within a few steps (lr 1e6 with SGD, Adam or NGD: 1e4 to 4e5
    times its best at the second step)."""

    def __post_init__(self) -> None:
        for name in ("task", "optimizer", "solver", "device"):
            if not isinstance(getattr(self, name), str):
                raise UnsupportedConfigurationError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("optimizer_options", "solver_options"):
            if not isinstance(getattr(self, name), dict):
                raise UnsupportedConfigurationError(
                    f"{name} must be a dict of keyword options, got {type(getattr(self, name)).__name__}"
                )
        # names in any case, stored as registered: "KFAC" and "kfac" are one configuration (and one
        # run name); an unknown task or optimizer raises its registry's error listing the names
        object.__setattr__(self, "task", TASKS.canonical(self.task))
        object.__setattr__(self, "optimizer", OPTIMIZERS.canonical(self.optimizer))
        if self.solver in SOLVERS:  # an unknown solver is reported when the run builds it
            object.__setattr__(self, "solver", SOLVERS.canonical(self.solver))
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise UnsupportedConfigurationError(f"lr must be a finite number > 0, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))  # lr=1 and lr=1.0 are one configuration (and one run name)
        counts = {"steps": 1, "seed": 0, "eval_every": 0, "checkpoint_every": 0}
        if self.batch_size is not None:
            counts["batch_size"] = 1
        meaning = {"steps": "the number of optimizer steps", "seed": "it seeds the model and the batch order",
                   "eval_every": "0 evaluates only at the end", "checkpoint_every": "0 saves only at the end",
                   "batch_size": "None takes the task's suggestion"}
        for name, minimum in counts.items():
            value = getattr(self, name)
            if not (_is_count(value) and value >= minimum):
                raise UnsupportedConfigurationError(
                    f"{name} must be an integer >= {minimum} ({meaning[name]}), got {value!r}"
                )
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints (JSON, hashing)
        if self.on_nonfinite not in ("stop", "fallback"):
            raise UnsupportedConfigurationError(f"on_nonfinite must be stop or fallback, got {self.on_nonfinite!r}")
        if self.dtype not in ("float32", "float64"):
            raise UnsupportedConfigurationError(f"dtype must be float32 or float64, got {self.dtype!r}")
        factor = self.divergence_factor
        if factor is not None:
            if not (_is_number(factor) and math.isfinite(factor) and factor > 1):
                raise UnsupportedConfigurationError(
                    "divergence_factor must be a finite number > 1 (how far the smoothed loss may grow past its "
                    f"best before the run stops) or None to turn the check off, got {factor!r}"
                )
            object.__setattr__(self, "divergence_factor", float(factor))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The configuration :meth:`to_dict` wrote (e.g. read back from a run's JSON sidecar)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnsupportedConfigurationError(
                f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)} (was the file written by another version?)"
            )
        return cls(**data)

    def config_hash(self) -> str:
        """8 hex digits of the SHA-256 of the sorted JSON of :meth:`to_dict`: equal
        configurations share it, configurations that differ in any field (options included)
        get different ones."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def run_name(self) -> str:
        """A readable, collision-free file stem: task, optimizer, the solver for the optimizers
        that take one (kfac, ngd: ``OptimizerKind.takes_solver``), the hardware when one is set,
        lr, seed and :meth:`config_hash`, e.g.
        ``digits-mlp_kfac-thermo-published_lr0.3_seed0_3fa2c1d9``."""
        method = [self.optimizer]
        if OPTIMIZERS.get(self.optimizer).takes_solver:
            method.append(self.solver)
        hardware = self.solver_options.get("hardware", self.optimizer_options.get("hardware"))
        if hardware is not None:
            method.append(_hardware_label(hardware))
        lr = re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{self.lr:g}")  # 1e+06 -> 1e6, 1e-05 -> 1e-5
        parts = [self.task, "-".join(str(m) for m in method), f"lr{lr}", f"seed{self.seed}", self.config_hash()]
        return "_".join(re.sub(r"[^A-Za-z0-9.\-]+", "-", part) for part in parts)


def sidecar_path(csv_path: str | os.PathLike[str]) -> Path:
    """The JSON file :meth:`TrainResult.to_csv` writes beside ``csv_path``: ``run.csv`` ->
    ``run.json`` (a path without the ``.csv`` suffix gets ``.json`` appended)."""
    path = Path(csv_path)
    return path.with_suffix(".json") if path.suffix == ".csv" else path.with_name(path.name + ".json")


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[dict[str, Any]]
    """One row per step (evaluation columns filled on evaluation steps)."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    resumed_from: int = 0
    """Step the run resumed from (0 for a fresh run)."""
    status: str = "completed"
    """How the run ended: ``"completed"``, ``"stopped: <reason>"`` (a non-finite loss, gradient
    or update), ``"diverged: <reason>"`` (see ``TrainConfig.divergence_factor``) or
    ``"interrupted"`` (Ctrl-C)."""

    @property
    def final(self) -> dict[str, Any]:
        """The last evaluated row."""
        for row in reversed(self.history):
            if "train_loss" in row:
                return row
        raise NoEvaluationError(
            f"no step of this run was evaluated (status {self.status!r}, {len(self.history)} steps recorded); "
            "read result.history, or evaluate more often (eval_every)"
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the history to ``path`` (one row per step) and, beside it
        (:func:`sidecar_path`), a JSON file with the configuration, the run name, the status, the
        steps recorded and :func:`thermo.provenance.provenance` (versions, UTC time). Returns
        the CSV's path."""
        path = Path(path)
        columns: list[str] = []
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.history)
        _replace(path, table.getvalue())
        sidecar = {
            "run_name": self.config.run_name(),
            "config": self.config.to_dict(),
            "status": self.status,
            "steps_recorded": len(self.history),
            "last_step": int(self.history[-1]["step"]) if self.history else self.resumed_from,
            "resumed_from": self.resumed_from,
            "csv": path.name,
            "provenance": provenance(),
        }
        _replace(sidecar_path(path), json.dumps(sidecar, indent=2, default=repr) + "\n")
        return path


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: a kill while writing leaves the previous
    file whole."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _setup(config: TrainConfig) -> tuple[Task, nn.Module, torch.optim.Optimizer]:
    task = build_task(config.task, seed=config.seed)
    dtype = getattr(torch, config.dtype)
    model = task.model.to(device=config.device, dtype=dtype)
    optimizer = make_optimizer(
        config.optimizer, model, lr=config.lr, loss=task.loss, solver=config.solver,
        solver_options=dict(config.solver_options), **config.optimizer_options,
    )
    return task, model, optimizer


def _to(batch: Any, device: str, dtype: torch.dtype) -> Any:
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device, dtype) for b in batch)
    batch = batch.to(device)
    return batch.to(dtype) if batch.is_floating_point() else batch


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ArrayDataset, loss: str, batch_size: int = 512) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``dataset`` (in its parameters' dtype/device)."""
    ref = next(model.parameters())
    loss_fn = loss_function(loss)
    total_loss, total_acc, n = 0.0, 0.0, len(dataset)
    for start in range(0, n, batch_size):
        sub = dataset.subset(torch.arange(start, min(n, start + batch_size)))
        inputs, targets = _to(sub.inputs, ref.device, ref.dtype), _to(sub.targets, ref.device, ref.dtype)
        out = model_inputs_call(model, inputs)
        k = out.shape[0]
        total_loss += float(loss_fn(out, targets)) * k
        total_acc += accuracy(out, targets) * k
    return total_loss / n, total_acc / n


def _check_finite(model: nn.Module, loss: Tensor, step: int) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFiniteGradientError(f"step {step}: the loss is {float(loss)}")
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            raise NonFiniteGradientError(f"step {step}: the gradient of parameter {name!r} contains NaN or infinity")


def _params_finite(model: nn.Module) -> str | None:
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return name
    return None


class _DivergenceMonitor:
    """The divergence check of ``TrainConfig.divergence_factor``: an exponential moving average
    of the batch loss (started at the first loss) against its best value so far, the best floored
    at ``first loss / factor``. A pure function of the loss sequence, so a resumed run replays
    its history and trips exactly where an uninterrupted one would."""

    def __init__(self, factor: float | None) -> None:
        self.factor = factor
        self.smoothed: float | None = None
        self.best = math.inf
        self.first = math.nan

    def update(self, step: int, loss: float) -> str | None:
        """Take step ``step``'s batch loss; return the reason the run diverged, or None."""
        if self.smoothed is None:
            self.smoothed, self.first = loss, loss
        else:
            self.smoothed = DIVERGENCE_SMOOTHING * self.smoothed + (1.0 - DIVERGENCE_SMOOTHING) * loss
        self.best = min(self.best, self.smoothed)
        if self.factor is None:
            return None
        floor = abs(self.first) / self.factor
        reference = max(self.best, floor)
        if self.smoothed <= self.factor * reference:
            return None
        best = f"its best {self.best:.4g}" if self.best >= floor else (
            f"its best {self.best:.4g} floored at first loss / factor = {floor:.4g}")
        return (f"step {step}: the smoothed loss {self.smoothed:.4g} (batch loss {loss:.4g}) grew past "
                f"divergence_factor {self.factor:g} x {best}; lower the learning rate, or raise divergence_factor "
                "(None turns the check off)")


@final
class _DeferredInterrupt:
    """Holds a Ctrl-C (SIGINT) until the running step has finished, so that the state the loop
    saves is a whole step's; a second Ctrl-C interrupts at once. Installed only in the main
    thread and only over Python's default handler (a caller's own handler is left alone)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


EVALUATION_HEADER = f"{'step':>6} {'train loss':>11} {'test loss':>10} {'test acc':>9}"
"""The header of :func:`format_evaluation`'s lines."""


def _number(value: float, width: int) -> str:
    return f"{value:>{width}.4f}" if abs(value) < 1e5 else f"{value:>{width}.3e}"  # a diverging loss keeps the column


def format_evaluation(row: dict[str, Any]) -> str:
    """One evaluation as a line aligned under :data:`EVALUATION_HEADER`: step, train loss, test
    loss, test accuracy."""
    return (f"{row['step']:>6} {_number(row['train_loss'], 11)} {_number(row['test_loss'], 10)} "
            f"{row['test_accuracy']:>9.4f}")


def train(
    config: TrainConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    observer: Callable[[int, torch.optim.Optimizer], None] | None = None,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run (or resume) one training run; see the module docstring.

    ``callback(row)`` sees each step's metrics; ``observer(step, optimizer)`` the optimizer right
    after each step (its ``last_diagnostics``, for co-simulation); ``on_evaluation(row)`` each
    evaluated row as soon as it is evaluated. ``progress=True`` shows a tqdm bar whose postfix is
    the batch loss and prints each evaluation as it happens (:func:`format_evaluation`).

    Raises:
        TrainingStopped: a non-finite loss, gradient or update (``on_nonfinite``).
        TrainingDiverged: the smoothed loss grew past ``divergence_factor`` times its best.
        TrainingInterrupted: Ctrl-C; a Ctrl-C during a step takes effect when the step is done.
        All three carry ``.result``, the :class:`TrainResult` of every step recorded so far.
    """
    task, model, optimizer = _setup(config)
    dtype = next(model.parameters()).dtype
    loss_fn = loss_function(task.loss)
    batch_size = config.batch_size or task.batch_size
    n_train = len(task.train)
    per_epoch = batches_per_epoch(n_train, batch_size)
    if per_epoch == 0:
        raise UnsupportedConfigurationError(
            f"batch_size {batch_size} exceeds the {n_train} training examples; use a batch_size <= {n_train}"
        )
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        start, history = _load_checkpoint(ckpt_path, config, model, optimizer)
    resumed_from = start
    saved_step: int | None = start if ckpt_path is not None and ckpt_path.exists() else None
    monitor = _DivergenceMonitor(config.divergence_factor)
    for row in history:  # a resumed run trips where the uninterrupted one would
        monitor.update(int(row["step"]), float(row["loss"]))

    def result(status: str) -> TrainResult:
        return TrainResult(config, history, model, optimizer, resumed_from, status)

    bar = _progress(config, start, progress)
    printed_header = False
    order: Tensor | None = None
    order_epoch = -1
    in_step = False
    try:
        with _DeferredInterrupt() as interrupt:
            for step in range(start, config.steps):
                epoch, index = divmod(step, per_epoch)
                if epoch != order_epoch:
                    order, order_epoch = epoch_order(n_train, config.seed, epoch), epoch
                batch = task.train.subset(order[index * batch_size : (index + 1) * batch_size])
                inputs, targets = _to(batch.inputs, config.device, dtype), _to(batch.targets, config.device, dtype)
                in_step = True
                row = _train_step(config, model, optimizer, loss_fn, inputs, targets, step)
                row.update(step=step + 1, epoch=epoch)
                history.append(row)  # from here the model and the history agree on the step
                in_step = False
                if (config.eval_every and (step + 1) % config.eval_every == 0) or step + 1 == config.steps:
                    row["train_loss"], row["train_accuracy"] = evaluate(model, task.train, task.loss)
                    row["test_loss"], row["test_accuracy"] = evaluate(model, task.test, task.loss)
                    if bar is not None:
                        if not printed_header:
                            bar.write(EVALUATION_HEADER)
                            printed_header = True
                        bar.write(format_evaluation(row))
                    if on_evaluation is not None:
                        on_evaluation(row)
                if observer is not None:
                    observer(step + 1, optimizer)
                if callback is not None:
                    callback(row)
                if bar is not None:
                    bar.update(1)
                    postfix = {"loss": f"{row['loss']:.4g}"}
                    if "test_accuracy" in row:
                        postfix["test_acc"] = f"{row['test_accuracy']:.4f}"
                    bar.set_postfix(postfix)
                diverged = monitor.update(step + 1, row["loss"])
                if diverged is not None:
                    raise TrainingDiverged(f"training diverged at {diverged}")
                if ckpt_path is not None and (
                    (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0) or step + 1 == config.steps
                ):
                    _save_checkpoint(ckpt_path, config, step + 1, model, optimizer, history)
                    saved_step = step + 1
                if interrupt.requested:
                    raise KeyboardInterrupt
    except TrainingDiverged as err:
        err.result = result(f"diverged: {str(err).removeprefix('training diverged at ')}")
        raise
    except TrainingStopped as err:
        err.result = result(f"stopped: {str(err).removeprefix('training stopped: ')}")
        raise
    except KeyboardInterrupt as err:
        done = len(history)
        if ckpt_path is not None and not in_step:
            _save_checkpoint(ckpt_path, config, done, model, optimizer, history)
            saved_step = done
        if ckpt_path is None:
            where = "no checkpoint was asked for (train(..., checkpoint=path) makes a run resumable)"
        elif saved_step is None:
            where = f"interrupted inside step {done + 1} before the first checkpoint: {str(ckpt_path)!r} was not written"
        elif in_step:
            where = (f"interrupted inside step {done + 1}: {str(ckpt_path)!r} keeps step {saved_step}; "
                     "the same call resumes from there")
        else:
            where = f"checkpoint {str(ckpt_path)!r} saved at step {saved_step}; the same call resumes from there"
        raise TrainingInterrupted(
            f"training interrupted after step {done} of {config.steps}; {where}", result("interrupted"), saved_step
        ) from err
    finally:
        if bar is not None:
            bar.close()
    return result("completed")


def _train_step(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Any,
    targets: Tensor,
    step: int,
) -> dict[str, Any]:
    outputs: dict[str, Tensor] = {}

    def closure() -> Tensor:
        optimizer.zero_grad()
        out = model_inputs_call(model, inputs)
        loss = loss_fn(out, targets)
        loss.backward()
        _check_finite(model, loss.detach(), step + 1)
        outputs["out"] = out.detach()
        return loss

    fallback = config.on_nonfinite == "fallback" and hasattr(optimizer, "solver")
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())) if fallback else None
    start = time.perf_counter()
    notes = ""
    try:
        if hasattr(optimizer, "set_batch"):
            optimizer.set_batch(inputs, targets)
        loss = optimizer.step(closure)
        bad = _params_finite(model)
        if bad is not None:
            raise NonFiniteGradientError(f"step {step + 1}: the update made parameter {bad!r} non-finite")
    except NonFiniteGradientError as err:
        what = str(err) if str(err).startswith("step ") else f"step {step + 1}: {err}"
        if "loss is" in str(err) or "gradient of parameter" in str(err):
            raise TrainingStopped(f"training stopped: {what}; lower the learning rate (or raise the damping)") from err
        if saved is None:
            hint = ("set on_nonfinite='fallback' to redo such a step with the exact solver, or lower the learning rate"
                    if hasattr(optimizer, "solver") else "lower the learning rate")
            raise TrainingStopped(f"training stopped: {what}; {hint}") from err
        # the solver produced it: redo the step with the exact backend
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        solver = optimizer.solver
        optimizer.solver = get_solver("exact")
        try:
            if hasattr(optimizer, "set_batch"):
                optimizer.set_batch(inputs, targets)
            loss = optimizer.step(closure)
        finally:
            optimizer.solver = solver
        notes = f"fallback to exact: {err}"
    elapsed = time.perf_counter() - start
    row: dict[str, Any] = {
        "loss": float(loss.detach()),
        "batch_accuracy": accuracy(outputs["out"], targets),
        "step_s": elapsed,
        "lr": optimizer.param_groups[0]["lr"],
    }
    stats = getattr(optimizer, "last_stats", None)
    if stats:
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                row[key] = value
    if notes:
        row["notes"] = notes
    return row


def _progress(config: TrainConfig, start: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=start, desc=f"{config.task} {config.optimizer}/{config.solver}", unit="step")


def _save_checkpoint(
    path: Path, config: TrainConfig, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, history: list[dict[str, Any]]
) -> None:
    solver = getattr(optimizer, "solver", None)
    payload = {
        "config": config.to_dict(),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "solver": solver.state_dict() if solver is not None else None,
        "history": history,
        "torch_rng": torch.get_rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a torn checkpoint


def _load_checkpoint(
    path: Path, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, Any]]]:
    payload = torch.load(path, weights_only=False)
    saved = payload["config"]
    if saved != config.to_dict():
        changed = sorted(k for k in saved if saved.get(k) != config.to_dict().get(k))
        raise UnsupportedConfigurationError(
            f"checkpoint {str(path)!r} belongs to a different configuration (differs in {changed}); "
            "use another path or delete it"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    solver = getattr(optimizer, "solver", None)
    if solver is not None and payload.get("solver") is not None:
        solver.load_state_dict(payload["solver"])
    torch.set_rng_state(payload["torch_rng"])
    return int(payload["step"]), list(payload["history"])
