"""Per-example Jacobians, loss-Hessian factors and the GGN factor against autograd references
built independently (torch.autograd.functional), in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from digital.curvature import (
    batch_loss,
    flatten_params,
    ggn_factor,
    ggn_matvec,
    loss_hessian_factor,
    per_example_jacobian,
    trainable_params,
    unflatten,
)
from digital.errors import UnsupportedConfigurationError

F64 = torch.float64


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


def batch(b: int = 8, d: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, d, dtype=F64, generator=torch.Generator().manual_seed(seed))


def flat_function(model: nn.Module, x: torch.Tensor):
    """``theta (N,) -> model(x)`` with the parameters given as one flat vector."""
    like = trainable_params(model)

    def f(theta: torch.Tensor) -> torch.Tensor:
        return functional_call(model, unflatten(theta, like), (x,))

    return f, flatten_params(like).clone()


def test_mse_ggn_of_a_linear_model_is_the_exact_hessian() -> None:
    torch.manual_seed(3)
    model = nn.Linear(4, 3).to(F64)
    x, y = batch(7, 4, seed=2), batch(7, 3, seed=4)
    f, theta = flat_function(model, x)
    H = torch.autograd.functional.hessian(lambda t: batch_loss(f(t), y, "mse"), theta)
    U, outputs = ggn_factor(model, x, "mse")
    assert U.shape == (theta.numel(), 7 * 3)
    torch.testing.assert_close(outputs, model(x).detach(), rtol=0, atol=1e-14)
    assert float((U @ U.mT - H).abs().max()) < 1e-10 * max(1.0, float(H.abs().max()))


def test_cross_entropy_ggn_is_the_explicit_sum_over_examples() -> None:
    model, x = mlp(), batch()
    b = x.shape[0]
    G = 0
    for i in range(b):
        f, theta = flat_function(model, x[i : i + 1])
        J = torch.autograd.functional.jacobian(lambda t: f(t)[0], theta)  # (d_z, N)
        p = torch.softmax(f(theta)[0].detach(), -1)
        G = G + J.mT @ (torch.diag(p) - torch.outer(p, p)) @ J / b
    U, _ = ggn_factor(model, x, "cross_entropy")
    assert U.shape == (theta.numel(), b * 3)
    assert float((U @ U.mT - G).abs().max()) < 1e-12 * float(G.abs().max())


def test_per_example_jacobian_matches_autograd_and_parameter_order() -> None:
    model, x = mlp(), batch(5)
    f, theta = flat_function(model, x)
    J_full = torch.autograd.functional.jacobian(f, theta)  # (b, d_z, N), examples independent
    J = per_example_jacobian(model, trainable_params(model), x)
    assert J.shape == (5, 3, theta.numel())
    torch.testing.assert_close(J, J_full, rtol=0, atol=1e-13)
    # frozen parameters are not columns; the remaining ones keep named_parameters order
    model[0].bias.requires_grad_(False)
    params = trainable_params(model)
    assert list(params) == ["0.weight", "2.weight", "2.bias"]
    J_frozen = per_example_jacobian(model, params, x)
    keep = torch.cat([torch.arange(0, 30), torch.arange(35, theta.numel())])
    torch.testing.assert_close(J_frozen, J_full[:, :, keep], rtol=0, atol=1e-13)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(u)) * self.b(v)


def test_tuple_inputs_call_the_model_with_every_tensor() -> None:
    torch.manual_seed(0)
    model = TwoInputs().to(F64)
    u, v = batch(4, 3, seed=1), batch(4, 4, seed=2)
    like = trainable_params(model)
    J, out = per_example_jacobian(model, like, (u, v), return_outputs=True)
    ref = torch.autograd.functional.jacobian(
        lambda t: functional_call(model, unflatten(t, like), (u, v)), flatten_params(like).clone()
    )
    torch.testing.assert_close(J, ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(out, model(u, v).detach(), rtol=0, atol=1e-14)


def test_loss_hessian_factors_square_to_the_loss_hessian() -> None:
    z = batch(6, 4, seed=5) * 3
    y = torch.tensor([0, 3, 1, 2, 2, 0])
    L = loss_hessian_factor(z, "cross_entropy")
    p = torch.softmax(z, -1)
    torch.testing.assert_close(L @ L.mT, torch.diag_embed(p) - p[:, :, None] * p[:, None, :], rtol=0, atol=1e-15)
    for i in range(z.shape[0]):
        H = torch.autograd.functional.hessian(
            lambda zi: torch.nn.functional.cross_entropy(zi[None], y[i : i + 1]), z[i]
        )
        torch.testing.assert_close(L[i] @ L[i].mT, H, rtol=0, atol=1e-14)
    targets = batch(6, 4, seed=6)
    H_mse = torch.autograd.functional.hessian(lambda zi: 0.5 * (zi - targets[0]).pow(2).sum(), z[0])
    torch.testing.assert_close(loss_hessian_factor(z, "mse")[0], H_mse, rtol=0, atol=0)


def test_ggn_matvec_and_flat_helpers() -> None:
    model = mlp()
    U, _ = ggn_factor(model, batch(), "cross_entropy")
    matvec = ggn_matvec(U)
    v = torch.randn(U.shape[0], 3, dtype=F64)
    torch.testing.assert_close(matvec(v), U @ U.mT @ v)
    torch.testing.assert_close(matvec(v[:, 0]), U @ U.mT @ v[:, 0])
    params = trainable_params(model)
    flat = flatten_params(params)
    assert flat.shape == (sum(p.numel() for p in model.parameters()),)
    for name, value in unflatten(flat, params).items():
        assert torch.equal(value, params[name])
    with pytest.raises(UnsupportedConfigurationError):
        unflatten(flat[:-1], params)


def test_bad_loss_and_output_shapes_are_refused() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="unknown loss"):
        ggn_factor(mlp(), batch(), "hinge")
    with pytest.raises(UnsupportedConfigurationError, match="outputs"):
        loss_hessian_factor(torch.zeros(3), "mse")
    flat_out = nn.Sequential(nn.Linear(6, 1), nn.Flatten(0)).to(F64)  # (b,) outputs
    with pytest.raises(UnsupportedConfigurationError, match=r"\(b, d_z\)"):
        ggn_factor(flat_out, batch(), "mse")


def test_loss_hessian_is_autograds_hessian_and_the_factor_squared() -> None:
    from digital.curvature import loss_hessian

    gen = torch.Generator().manual_seed(3)
    z = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    y = torch.arange(4) % 5
    H = loss_hessian(z, "cross_entropy")
    for i in range(4):  # the per-example loss -log softmax(z_i)[y_i]; its Hessian does not depend on y_i
        ref = torch.autograd.functional.hessian(lambda v, label=int(y[i]): -torch.log_softmax(v, 0)[label], z[i])
        torch.testing.assert_close(H[i], ref, rtol=1e-12, atol=1e-14)
    L = loss_hessian_factor(z, "cross_entropy")
    torch.testing.assert_close(H, L @ L.mT, rtol=1e-12, atol=1e-14)
    assert torch.equal(loss_hessian(z, "mse"), torch.eye(5, dtype=torch.float64).expand(4, 5, 5))
