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
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import ArrayDataset, batches_per_epoch, epoch_order
from .errors import (
    NonFiniteGradientError,
    TrainingStopped,
    UnsupportedConfigurationError,
)
from .losses import accuracy, loss_function
from .models import model_inputs_call
from .optimizers import OPTIMIZERS, make_optimizer
from .solvers import get_solver
from .tasks import Task, available_tasks, build_task


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
    batch_size: int | None = None
    """Examples per step (default: the task's suggestion)."""
    seed: int = 0
    """Seeds the model initialization and the batch order."""
    eval_every: int = 50
    """Evaluate train and test loss/accuracy every so many steps (0: only at the end)."""
    checkpoint_every: int = 50
    on_nonfinite: Literal["stop", "fallback"] = "stop"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.task not in available_tasks():
            raise UnsupportedConfigurationError(f"unknown task {self.task!r}; available: {', '.join(available_tasks())}")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise UnsupportedConfigurationError(f"unknown optimizer {self.optimizer!r}; available: {', '.join(OPTIMIZERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UnsupportedConfigurationError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("steps",):
            if getattr(self, name) < 1:
                raise UnsupportedConfigurationError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise UnsupportedConfigurationError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UnsupportedConfigurationError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.on_nonfinite not in ("stop", "fallback"):
            raise UnsupportedConfigurationError(f"on_nonfinite must be stop or fallback, got {self.on_nonfinite!r}")
        if self.dtype not in ("float32", "float64"):
            raise UnsupportedConfigurationError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    config: TrainConfig
    history: list[dict[str, Any]]
    """One row per step (evaluation columns filled on evaluation steps)."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    resumed_from: int = 0
    """Step the run resumed from (0 for a fresh run)."""

    @property
    def final(self) -> dict[str, Any]:
        """The last evaluated row."""
        return next(row for row in reversed(self.history) if "train_loss" in row)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        columns: list[str] = []
        for row in self.history:
            columns.extend(k for k in row if k not in columns)
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.history)
        return path


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


def train(
    config: TrainConfig,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    observer: Callable[[int, torch.optim.Optimizer], None] | None = None,
) -> TrainResult:
    """Run (or resume) one training run; see the module docstring.

    ``callback(row)`` sees each step's metrics; ``observer(step, optimizer)`` the optimizer right
    after each step (its ``last_diagnostics``, for co-simulation)."""
    task, model, optimizer = _setup(config)
    dtype = next(model.parameters()).dtype
    loss_fn = loss_function(task.loss)
    batch_size = config.batch_size or task.batch_size
    n_train = len(task.train)
    per_epoch = batches_per_epoch(n_train, batch_size)
    if per_epoch == 0:
        raise UnsupportedConfigurationError(f"batch_size {batch_size} exceeds the {n_train} training examples")
    history: list[dict[str, Any]] = []
    start = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        start, history = _load_checkpoint(ckpt_path, config, model, optimizer)
    resumed_from = start
    bar = _progress(config, start, progress)
    order: Tensor | None = None
    order_epoch = -1
    try:
        for step in range(start, config.steps):
            epoch, index = divmod(step, per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(n_train, config.seed, epoch), epoch
            batch = task.train.subset(order[index * batch_size : (index + 1) * batch_size])
            inputs, targets = _to(batch.inputs, config.device, dtype), _to(batch.targets, config.device, dtype)
            row = _train_step(config, model, optimizer, loss_fn, inputs, targets, step)
            row.update(step=step + 1, epoch=epoch)
            if (config.eval_every and (step + 1) % config.eval_every == 0) or step + 1 == config.steps:
                row["train_loss"], row["train_accuracy"] = evaluate(model, task.train, task.loss)
                row["test_loss"], row["test_accuracy"] = evaluate(model, task.test, task.loss)
            history.append(row)
            if observer is not None:
                observer(step + 1, optimizer)
            if callback is not None:
                callback(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            if ckpt_path is not None and (
                (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0) or step + 1 == config.steps
            ):
                _save_checkpoint(ckpt_path, config, step + 1, model, optimizer, history)
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(config, history, model, optimizer, resumed_from)


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
        if saved is None or "loss is" in str(err) or "gradient of parameter" in str(err):
            raise TrainingStopped(f"training stopped: {err}") from err
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
