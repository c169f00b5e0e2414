"""Named training tasks: a dataset split, a freshly initialised model and the loss to train it.

``build_task("digits-cnn", seed=3)`` gives the same model weights for the same seed without
touching the caller's global RNG. The data split depends on ``data_seed`` (default 0) only, so
runs that vary the initialisation seed train and test on the same examples.

:data:`TASKS` is the one list of tasks (names in any case; ``TASKS.help()`` for help texts); a new
task is a factory plus one :func:`register_task` line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thermo.registry import Registry

from .data import ArrayDataset, load_digits, make_graph_classification
from .errors import UnsupportedConfigurationError
from .losses import LOSSES, accuracy, loss_function
from .models import MLP, SmallCNN, SmallGNN, SmallViT


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task (what the registry knows before building anything)."""

    name: str
    loss: str
    """``cross_entropy`` (long labels) or ``mse`` (float targets, see :func:`loss_function`)."""
    n_outputs: int
    """Width of the model output (classes, or regression outputs)."""
    batch_size: int = 64
    """Suggested training batch size."""
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise UnsupportedConfigurationError("TaskSpec.name must be a non-empty string")
        if self.loss not in LOSSES:
            raise UnsupportedConfigurationError(f"TaskSpec.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.n_outputs < 1:
            raise UnsupportedConfigurationError(f"TaskSpec.n_outputs must be >= 1, got {self.n_outputs}")
        if self.batch_size < 1:
            raise UnsupportedConfigurationError(f"TaskSpec.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class Task:
    """A built task. ``model`` is freshly initialised; ``train``/``test`` hold the data."""

    name: str
    model: nn.Module
    train: ArrayDataset
    test: ArrayDataset
    loss: str
    n_outputs: int
    batch_size: int = 64
    """Suggested training batch size (from the task's :class:`TaskSpec`)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UnsupportedConfigurationError(f"Task.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.n_outputs < 1:
            raise UnsupportedConfigurationError(f"Task.n_outputs must be >= 1, got {self.n_outputs}")
        if self.batch_size < 1:
            raise UnsupportedConfigurationError(f"Task.batch_size must be >= 1, got {self.batch_size}")

    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The task's mean-reduced loss, see :func:`loss_function`."""
        return loss_function(self.loss)


# --------------------------------------------------------------------------------------------
# registry

Factory = Callable[..., Task]
"""``factory(data_seed: int, **model_overrides) -> Task``; called under a seeded torch RNG."""


def _build_model(cls: type[nn.Module], defaults: dict[str, Any], overrides: dict[str, Any]) -> nn.Module:
    """``cls(**defaults | overrides)``, rejecting overrides the constructor does not take."""
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise UnsupportedConfigurationError(
            f"{cls.__name__} has no option(s) {unknown}; it takes {allowed}"
        )
    return cls(**{**defaults, **overrides})


def _one_hot(ds: ArrayDataset, n_classes: int) -> ArrayDataset:
    return ArrayDataset(ds.inputs, F.one_hot(ds.targets, n_classes).to(torch.float32))


def _task(name: str, model: nn.Module, train: ArrayDataset, test: ArrayDataset) -> Task:
    spec = task_spec(name)
    return Task(name, model, train, test, spec.loss, spec.n_outputs, spec.batch_size)


def _digits_mlp(data_seed: int, **overrides: Any) -> Task:
    train, test = load_digits(seed=data_seed, image=False)
    model = _build_model(MLP, dict(in_features=64, hidden=(32,), out_features=10, activation="tanh"), overrides)
    return _task("digits-mlp", model, train, test)


def _digits_cnn(data_seed: int, **overrides: Any) -> Task:
    train, test = load_digits(seed=data_seed, image=True)
    model = _build_model(SmallCNN, dict(in_channels=1, image_size=8, n_classes=10), overrides)
    return _task("digits-cnn", model, train, test)


def _digits_vit(data_seed: int, **overrides: Any) -> Task:
    train, test = load_digits(seed=data_seed, image=True)
    model = _build_model(SmallViT, dict(image_size=8, in_channels=1, n_classes=10), overrides)
    return _task("digits-vit", model, train, test)


def _graphs_gnn(data_seed: int, **overrides: Any) -> Task:
    train, test = make_graph_classification(n_classes=3, seed=data_seed)
    feature_dim = train.inputs[0].shape[-1]
    model = _build_model(SmallGNN, dict(in_features=feature_dim, n_classes=3), overrides)
    return _task("graphs-gnn", model, train, test)


def _digits_linear_mse(data_seed: int, **overrides: Any) -> Task:
    train, test = load_digits(seed=data_seed, image=False)
    model = _build_model(
        MLP, dict(in_features=64, hidden=(16, 16), out_features=10, activation="identity"), overrides
    )
    return _task("digits-linear-mse", model, _one_hot(train, 10), _one_hot(test, 10))


@dataclass(frozen=True)
class RegisteredTask:
    """A task's registry entry: what it is and how to build it."""

    spec: TaskSpec
    factory: Factory


TASKS: Registry[RegisteredTask] = Registry("task", UnsupportedConfigurationError)
"""Every task :func:`build_task` builds, in registration order; names are looked up in any case
and an unknown one raises UnsupportedConfigurationError listing the names."""


def register_task(name: str, factory: Factory, spec: TaskSpec) -> None:
    """Add task ``name`` to :data:`TASKS`.

    ``factory(data_seed: int, **model_overrides) -> Task`` builds the data split for
    ``data_seed`` and a fresh model; :func:`build_task` calls it under ``torch.manual_seed(seed)``
    and checks that the :class:`Task` it returns agrees with ``spec`` (name, loss, outputs, batch
    size). Names are unique regardless of case: a duplicate, or a ``spec`` named otherwise,
    raises UnsupportedConfigurationError. Registration lives in this process only: worker
    processes of a sweep see the task if they import the module that registers it.
    """
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"spec must be a TaskSpec, got {type(spec).__name__}")
    if not callable(factory):
        raise TypeError(f"factory must be callable (data_seed, **model_overrides) -> Task, got {factory!r}")
    if spec.name != name:
        raise UnsupportedConfigurationError(f"task name {name!r} and TaskSpec.name {spec.name!r} differ")
    TASKS.add(name, RegisteredTask(spec, factory), spec.description)


register_task("digits-mlp", _digits_mlp,
              TaskSpec("digits-mlp", "cross_entropy", 10, 64, "MLP 64-32-10 (tanh) on flattened 8x8 digits"))
register_task("digits-cnn", _digits_cnn,
              TaskSpec("digits-cnn", "cross_entropy", 10, 64, "one Conv2d + two Linear layers on 8x8 digits"))
register_task("digits-vit", _digits_vit,
              TaskSpec("digits-vit", "cross_entropy", 10, 64, "2-block ViT with 2x2 patches on 8x8 digits"))
register_task("graphs-gnn", _graphs_gnn,
              TaskSpec("graphs-gnn", "cross_entropy", 3, 32, "2-layer GCN on generated SBM graph classes"))
register_task("digits-linear-mse", _digits_linear_mse,
              TaskSpec("digits-linear-mse", "mse", 10, 64,
                       "deep linear MLP 64-16-16-10 on flattened digits, MSE to one-hot targets"))


def available_tasks() -> tuple[str, ...]:
    """Names accepted by :func:`build_task`, in registration order."""
    return TASKS.names()


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name`` (any case)."""
    return TASKS.get(name).spec


def build_task(name: str, seed: int = 0, data_seed: int = 0, **model_overrides: Any) -> Task:
    """Build task ``name`` (any case) with model weights drawn under ``torch.manual_seed(seed)``.

    The caller's global torch RNG state is saved and restored (``torch.random.fork_rng``).
    ``data_seed`` picks the train/test split (and the generated graphs); ``model_overrides``
    replace the model's constructor defaults (e.g. ``hidden=(64,)`` for ``digits-mlp``);
    an option the model does not take, or an unknown task, raises UnsupportedConfigurationError.
    """
    entry = TASKS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        task = entry.factory(data_seed, **model_overrides)
    _check_against_spec(task, entry.spec)
    return task


def _check_against_spec(task: object, spec: TaskSpec) -> None:
    """A factory's result must be a :class:`Task` that says what its spec says."""
    if not isinstance(task, Task):
        raise UnsupportedConfigurationError(
            f"the factory of task {spec.name!r} returned {type(task).__name__}, not a Task"
        )
    built = (task.name, task.loss, task.n_outputs, task.batch_size)
    stated = (spec.name, spec.loss, spec.n_outputs, spec.batch_size)
    if built != stated:
        raise UnsupportedConfigurationError(
            f"task {spec.name!r}: the factory built (name, loss, n_outputs, batch_size) = {built}, "
            f"its TaskSpec says {stated}"
        )


__all__ = [
    "LOSSES",
    "TASKS",
    "RegisteredTask",
    "Task",
    "TaskSpec",
    "accuracy",
    "available_tasks",
    "build_task",
    "loss_function",
    "register_task",
    "task_spec",
]
