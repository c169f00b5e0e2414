"""NGD: the three methods agree, one step with lr = 1 is a Newton step on least squares, the loss
falls on a small classification problem, errors are clear and checkpoints round-trip."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from digital.curvature import batch_loss, flatten_params, ggn_factor
from digital.errors import NonFiniteGradientError, UnsupportedConfigurationError
from digital.ngd import NGD
from digital.solvers import get_solver

F64 = torch.float64


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


def blobs(b: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian classes in 6-d, separable enough for a small MLP."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(b) % 3
    centers = 2.0 * torch.randn(3, 6, dtype=F64, generator=gen)
    return centers[y] + torch.randn(b, 6, dtype=F64, generator=gen), y


def take_step(opt: NGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy") -> float:
    opt.set_batch(x, y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = batch_loss(model(x), y, loss)
        value.backward()
        return value

    return float(opt.step(closure).detach())


def params(model: nn.Module) -> torch.Tensor:
    return flatten_params(p.detach() for p in model.parameters()).clone()


def test_woodbury_dense_and_cg_compute_the_same_update() -> None:
    x, y = blobs()
    base = mlp()
    theta0 = params(base)
    updates = {}
    for method, options in (("dense", {}), ("woodbury", {}), ("cg", {"rtol": 1e-13, "max_iter": 500})):
        model = copy.deepcopy(base)
        opt = NGD(model, lr=1.0, damping=1e-2, method=method, solver_options=options)
        take_step(opt, model, x, y)
        updates[method] = theta0 - params(model)
        # Woodbury's Gram uses the full-rank cross-entropy factor: b (d_z - 1) columns
        assert opt.last_stats["method"] == method and opt.last_stats["rank"] == 8 * (2 if method == "woodbury" else 3)
        assert opt.last_stats["N"] == theta0.numel() == 53
        assert opt.last_diagnostics is not None and opt.last_diagnostics.residual < 1e-10
    # and against a direct solve of the damped GGN system
    U, _ = ggn_factor(base, x, "cross_entropy")
    base.zero_grad()
    batch_loss(base(x), y, "cross_entropy").backward()
    g = flatten_params(p.grad for p in base.parameters())
    reference = torch.linalg.solve(U @ U.mT + 1e-2 * torch.eye(53, dtype=F64), g)
    for method, update in updates.items():
        err = float((update - reference).norm() / reference.norm())
        assert err < 1e-8, (method, err)


@pytest.mark.parametrize("method", ["dense", "woodbury", "cg"])
def test_one_step_with_lr_one_is_a_newton_step_on_least_squares(method: str) -> None:
    """For a linear model and the mse loss the GGN is the Hessian: NGD with lr = 1 lands on the
    least-squares solution up to the damping, which leaves a fraction lambda / (sigma + lambda)
    of the error along each Hessian eigenvector (sigma its eigenvalue)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).to(F64)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(16, 3, dtype=F64, generator=gen)
    y = x @ torch.randn(3, 2, dtype=F64, generator=gen) + 0.3 * torch.randn(16, 2, dtype=F64, generator=gen)
    X = torch.cat([x, torch.ones(16, 1, dtype=F64)], dim=1)
    W = torch.linalg.lstsq(X, y).solution  # (4, 2): rows weight^T and bias
    optimum = torch.cat([W[:3].mT.reshape(-1), W[3]])  # named_parameters order: weight, bias
    damping = 1e-9
    theta0 = params(model)
    sigma_min = float(torch.linalg.eigvalsh(X.mT @ X / 16)[0])
    opt = NGD(model, lr=1.0, damping=damping, loss="mse", method=method, solver_options={"rtol": 1e-14} if method == "cg" else None)
    take_step(opt, model, x, y, loss="mse")
    err = float((params(model) - optimum).norm())
    bound = damping / (sigma_min + damping) * float((theta0 - optimum).norm())
    g_norm = float(flatten_params(p.grad for p in model.parameters()).norm())  # gradient at theta0
    eps = torch.finfo(F64).eps
    # Woodbury recovers x from g - U y, a difference of O(||g||) terms divided by lambda:
    # round-off of order eps ||g|| / lambda (the others: eps ||g|| / sigma_min).
    roundoff = 10 * eps * g_norm / (damping if method == "woodbury" else sigma_min)
    assert err < bound + roundoff, (err, bound, roundoff)


def test_loss_decreases_on_a_small_classification_problem() -> None:
    x, y = blobs(32, seed=7)
    model = mlp(seed=3)
    opt = NGD(model, lr=0.5, damping=1e-2)
    losses = [take_step(opt, model, x, y) for _ in range(8)]
    with torch.no_grad():
        final = float(batch_loss(model(x), y, "cross_entropy"))
    assert final < 0.25 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_errors_are_clear() -> None:
    model = mlp()
    x, y = blobs()
    with pytest.raises(UnsupportedConfigurationError, match="method"):
        NGD(model, method="kfac")
    with pytest.raises(UnsupportedConfigurationError, match="damping"):
        NGD(model, damping=0.0)
    with pytest.raises(UnsupportedConfigurationError, match="loss"):
        NGD(model, loss="hinge")
    with pytest.raises(UnsupportedConfigurationError, match="operators"):
        NGD(model, method="cg", solver=get_solver("exact"))
    opt = NGD(model)
    with pytest.raises(UnsupportedConfigurationError, match="set_batch"):
        opt.step(lambda: batch_loss(model(x), y, "cross_entropy"))
    opt.set_batch(x, y)
    with pytest.raises(UnsupportedConfigurationError, match="closure"):
        opt.step()

    def nan_closure() -> torch.Tensor:
        opt.zero_grad()
        loss = batch_loss(model(x), y, "cross_entropy")
        loss.backward()
        model[2].bias.grad[0] = float("nan")
        return loss

    with pytest.raises(NonFiniteGradientError, match="2.bias"):
        opt.step(nan_closure)
    # a step consumes its batch
    take_step(opt, model, x, y)
    with pytest.raises(UnsupportedConfigurationError, match="set_batch"):
        opt.step(lambda: batch_loss(model(x), y, "cross_entropy"))


def test_state_dict_round_trip_continues_identically() -> None:
    x, y = blobs(12, seed=2)
    model = mlp()
    opt = NGD(model, lr=0.2, damping=1e-2, momentum=0.9, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        take_step(opt, model, x, y)
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert all("momentum_buffer" in opt.state[p] for p in model.parameters())
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())

    take_step(opt, model, x, y)
    expected = params(model)

    clone = mlp(seed=9)
    clone.load_state_dict(saved_model)
    restored = NGD(clone, lr=1.0, damping=1.0, momentum=0.9, weight_decay=1e-3)
    restored.load_state_dict(saved_opt)
    assert restored.param_groups[0]["lr"] == pytest.approx(0.05) and restored.param_groups[0]["damping"] == 1e-2
    assert restored.last_stats == {} and restored._step_count == 2
    take_step(restored, clone, x, y)
    assert torch.equal(params(clone), expected)
