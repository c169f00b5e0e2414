"""Task registry, losses and accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digital.data import ArrayDataset, epoch_batches
from digital.errors import UnsupportedConfigurationError
from digital.models import MLP, SmallCNN, SmallGNN, SmallViT, model_inputs_call
from digital.tasks import (
    TASKS,
    Task,
    TaskSpec,
    accuracy,
    available_tasks,
    build_task,
    loss_function,
    register_task,
    task_spec,
)
from digital.train import TrainConfig, train
from thermo.errors import ShapeMismatchError

from .registry_helpers import registries_restored

EXPECTED = {
    "digits-mlp": MLP,
    "digits-cnn": SmallCNN,
    "digits-vit": SmallViT,
    "graphs-gnn": SmallGNN,
    "digits-linear-mse": MLP,
}


def test_registry_lists_every_task() -> None:
    assert available_tasks() == tuple(EXPECTED) == TASKS.names() == tuple(TASKS)
    assert all(task_spec(name) is TASKS.get(name).spec and task_spec(name).name == name for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_build_task_gives_a_trainable_task(name: str) -> None:
    task = build_task(name, seed=0)
    assert isinstance(task, Task) and task.name == name
    assert isinstance(task.model, EXPECTED[name])
    inputs, targets = next(epoch_batches(task.train, 16, seed=0, epoch=0))
    out = model_inputs_call(task.model, inputs)
    assert out.shape == (16, task.n_outputs)
    loss = loss_function(task.loss)(out, targets)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in task.model.parameters())
    assert 0.0 <= accuracy(out, targets) <= 1.0
    assert len(task.test) > 0 and task.batch_size == task_spec(name).batch_size


def test_linear_mse_task_is_a_deep_linear_network_with_one_hot_targets() -> None:
    task = build_task("digits-linear-mse")
    assert task.loss == "mse" and task.n_outputs == 10
    assert task.train.targets.dtype == torch.float32 and task.train.targets.shape == (len(task.train), 10)
    assert torch.equal(task.train.targets.sum(1), torch.ones(len(task.train)))
    linears = [m for m in task.model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 16), (16, 10)]
    assert not any(isinstance(m, (nn.Tanh, nn.ReLU, nn.GELU)) for m in task.model.modules())
    nobias = build_task("digits-linear-mse", bias=False).model
    x = task.train.inputs[:5]
    torch.testing.assert_close(nobias(3 * x), 3 * nobias(x))


def test_build_task_seeds_the_model_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_task("digits-mlp", seed=4).model
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_task("digits-mlp", seed=4).model
    c = build_task("digits-mlp", seed=5).model
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    # the data split does not depend on the model seed
    assert torch.equal(build_task("digits-mlp", seed=4).test.targets, build_task("digits-mlp", seed=5).test.targets)


def test_model_overrides_and_their_errors() -> None:
    task = build_task("digits-mlp", hidden=(7,), activation="relu")
    assert task.model.net[0].out_features == 7 and isinstance(task.model.net[1], nn.ReLU)
    with pytest.raises(UnsupportedConfigurationError, match="no option"):
        build_task("digits-cnn", widht=3)


def test_unknown_task_lists_the_known_names() -> None:
    with pytest.raises(UnsupportedConfigurationError) as err:
        build_task("mnist-resnet")
    for name in EXPECTED:
        assert name in str(err.value)


def test_loss_functions_follow_the_stated_conventions() -> None:
    out = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    tgt = torch.tensor([[0.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    # 0.5 * sum over outputs, mean over batch: (0.5 * 1 + 0.5 * (1 + 4)) / 2
    torch.testing.assert_close(loss_function("mse")(out, tgt), torch.tensor(1.5))
    labels = torch.tensor([1, 2])
    torch.testing.assert_close(loss_function("cross_entropy")(out, labels), F.cross_entropy(out, labels))
    with pytest.raises(ShapeMismatchError):
        loss_function("mse")(out, tgt[:, :2])
    with pytest.raises(UnsupportedConfigurationError, match="loss"):
        loss_function("hinge")


def test_accuracy_for_labels_and_one_hot_targets() -> None:
    out = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(out, labels) == pytest.approx(0.75)
    assert accuracy(out, F.one_hot(labels, 2).float()) == pytest.approx(0.75)
    with pytest.raises(ShapeMismatchError):
        accuracy(out, labels[:3])


def test_task_spec_and_task_validate_themselves() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="loss"):
        TaskSpec("x", "hinge", 3)
    with pytest.raises(UnsupportedConfigurationError, match="batch_size"):
        TaskSpec("x", "mse", 3, batch_size=0)
    task = build_task("digits-mlp")
    with pytest.raises(UnsupportedConfigurationError, match="n_outputs"):
        Task("t", task.model, task.train, task.test, "cross_entropy", 0)


def test_digits_mlp_learns_quickly() -> None:
    task = build_task("digits-mlp", seed=0)
    opt = torch.optim.Adam(task.model.parameters(), lr=1e-2)
    loss_fn = loss_function(task.loss)
    for epoch in range(3):
        for inputs, targets in epoch_batches(task.train, task.batch_size, seed=0, epoch=epoch):
            opt.zero_grad()
            loss_fn(model_inputs_call(task.model, inputs), targets).backward()
            opt.step()
    with torch.no_grad():
        assert accuracy(task.model(task.test.inputs), task.test.targets) > 0.85


# --------------------------------------------------------------------------------------------
# registering a task

BLOBS = TaskSpec("test-blobs", "cross_entropy", 3, batch_size=16, description="3 Gaussian blobs in 2-D, MLP 2-8-3")


def _blobs(data_seed: int, **overrides: Any) -> Task:
    """Three unit-variance blobs around the corners of a triangle: 48 train, 24 test examples."""
    gen = torch.Generator().manual_seed(data_seed)
    centres = torch.tensor([[0.0, 3.0], [-3.0, -2.0], [3.0, -2.0]])
    labels = torch.arange(72) % 3
    points = centres[labels] + torch.randn(72, 2, generator=gen)
    model = MLP(**{"in_features": 2, "hidden": (8,), "out_features": 3, **overrides})
    train_set, test_set = ArrayDataset(points[:48], labels[:48]), ArrayDataset(points[48:], labels[48:])
    return Task(BLOBS.name, model, train_set, test_set, BLOBS.loss, BLOBS.n_outputs, BLOBS.batch_size)


@pytest.fixture
def blobs() -> Iterator[str]:
    """``test-blobs`` registered for one test, then removed so other tests see the built-ins only."""
    with registries_restored(TASKS):
        register_task(BLOBS.name, _blobs, BLOBS)
        yield BLOBS.name


def test_a_registered_task_is_built_and_trained_like_a_built_in(blobs: str) -> None:
    assert available_tasks()[-1] == blobs and task_spec(blobs) is BLOBS and TASKS.get(blobs).factory is _blobs
    a, b = build_task(blobs, seed=1), build_task(blobs, seed=1)
    assert torch.equal(a.model.net[0].weight, b.model.net[0].weight)
    assert build_task(blobs, hidden=(4,)).model.net[0].out_features == 4
    result = train(TrainConfig(task=blobs, optimizer="kfac", lr=0.1, steps=2, eval_every=0, checkpoint_every=0))
    assert [row["step"] for row in result.history] == [1, 2]
    assert all(math.isfinite(row["loss"]) for row in result.history)
    assert 0.0 <= result.final["test_accuracy"] <= 1.0


def test_register_task_refuses_duplicates_and_mismatched_names(blobs: str) -> None:
    before = TASKS.entries()
    with pytest.raises(UnsupportedConfigurationError, match="already registered"):
        register_task(blobs, _blobs, BLOBS)
    with pytest.raises(UnsupportedConfigurationError, match="already registered"):  # names ignore case
        register_task(blobs.upper(), _blobs, TaskSpec(blobs.upper(), "cross_entropy", 3, batch_size=16))
    with pytest.raises(UnsupportedConfigurationError, match="already registered"):
        register_task("digits-mlp", _blobs, TaskSpec("digits-mlp", "cross_entropy", 10))
    with pytest.raises(UnsupportedConfigurationError, match="differ"):
        register_task("other-blobs", _blobs, BLOBS)
    with pytest.raises(TypeError, match="TaskSpec"):
        register_task("other-blobs", _blobs, "cross_entropy")  # type: ignore[arg-type]
    assert TASKS.entries() == before
    assert "other-blobs" not in available_tasks()


def test_build_task_checks_the_factory_against_its_spec() -> None:
    spec = TaskSpec("test-blobs-mse", "mse", 3, batch_size=16)
    with registries_restored(TASKS):
        register_task(spec.name, _blobs, spec)  # the factory says cross_entropy
        with pytest.raises(UnsupportedConfigurationError, match="TaskSpec says"):
            build_task(spec.name)
        with pytest.raises(UnsupportedConfigurationError, match="TaskSpec says"):
            train(TrainConfig(task=spec.name, steps=1))
    assert spec.name not in available_tasks()
