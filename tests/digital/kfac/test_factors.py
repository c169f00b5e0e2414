"""K-FAC's factors against the exact GGN (float64, where K-FAC is exact) and curvlinops."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from digital.kfac import KFAC

curvlinops = pytest.importorskip("curvlinops")


pytestmark = pytest.mark.usefixtures("float64")


class PositionwiseNet(nn.Module):
    """Layers applied at every position of (N, R, d); output pooled (mean) or kept per position
    (flattened to (N, R * C), so the loss sums over positions)."""

    def __init__(self, pool: bool, activation: nn.Module | None = None) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(5, 4), nn.Linear(4, 3)
        self.act = activation if activation is not None else nn.Identity()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.l2(self.act(self.l1(x)))
        return h.mean(1) if self.pool else h.flatten(1)


def loss_of(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":
        return nn.functional.cross_entropy(out, y)
    return 0.5 * ((out - y) ** 2).sum(1).mean()


def kfac_after_one_step(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, **options) -> KFAC:
    opt = KFAC(model, lr=0.0, loss=loss, ema_decay=0.0, kl_clip=None, **options)
    opt.set_batch(X, y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss_of(loss, model(X), y)
        value.backward()
        return value

    opt.step(closure)
    return opt


def layer_order(module: nn.Module) -> torch.Tensor:
    """Permutation from K-FAC's row-major ``[W | b]`` vectorization to the parameter order."""
    out = module.weight.shape[0]
    inp = module.weight[0].numel()
    idx = []
    for o in range(out):
        idx.extend(o * inp + i for i in range(inp))
        if module.bias is not None:
            idx.append(out * inp + o)
    return torch.tensor(idx)


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def exact_ggn_mse(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """``(1/N) sum_n J_n^T J_n`` in parameter order (the GGN of the 0.5-sum MSE)."""
    params = dict(model.named_parameters())
    jac = jacrev(lambda p: functional_call(model, p, (X,)))(params)
    J = torch.cat([j.reshape(X.shape[0], -1, params[k].numel()) for k, j in jac.items()], dim=2)
    return torch.einsum("nci,ncj->ij", J, J) / X.shape[0]


def assert_blocks_equal(opt: KFAC, model: nn.Module, dense: torch.Tensor, scale: float = 1.0) -> None:
    offset = 0
    for name, module in layers(model):
        size = sum(p.numel() for p in module.parameters())
        block = dense[offset : offset + size, offset : offset + size] * scale
        offset += size
        order = layer_order(module)
        torch.testing.assert_close(opt.kfac_matrix(name), block[order][:, order], rtol=1e-10, atol=1e-12)


def test_deep_linear_network_blocks_equal_the_exact_ggn() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 3))
    X, y = torch.randn(9, 6), torch.randn(9, 3)
    opt = kfac_after_one_step(model, X, y, "mse", fisher_type="type-2")
    assert_blocks_equal(opt, model, exact_ggn_mse(model, X))


@pytest.mark.parametrize(("approx", "pool"), [("expand", False), ("reduce", True)])
def test_weight_sharing_is_exact_in_its_own_setting(approx: str, pool: bool) -> None:
    """expand: loss summed over positions; reduce: output pooled over positions before the loss."""
    torch.manual_seed(1)
    model = PositionwiseNet(pool)
    X = torch.randn(7, 6, 5)
    y = torch.randn(7, 3 if pool else 18)
    opt = kfac_after_one_step(model, X, y, "mse", fisher_type="type-2", weight_sharing=approx)
    assert_blocks_equal(opt, model, exact_ggn_mse(model, X))


@pytest.mark.parametrize(("approx", "pool"), [("reduce", False), ("expand", True)])
def test_weight_sharing_is_an_approximation_outside_its_setting(approx: str, pool: bool) -> None:
    torch.manual_seed(1)
    model = PositionwiseNet(pool)
    X = torch.randn(7, 6, 5)
    y = torch.randn(7, 3 if pool else 18)
    opt = kfac_after_one_step(model, X, y, "mse", fisher_type="type-2", weight_sharing=approx)
    dense = exact_ggn_mse(model, X)
    name, module = layers(model)[0]
    size = sum(p.numel() for p in module.parameters())
    order = layer_order(module)
    assert not torch.allclose(opt.kfac_matrix(name), dense[:size, :size][order][:, order], rtol=1e-3)


def curvlinops_dense(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, fisher: str, approx: str) -> torch.Tensor:
    loss_func = nn.CrossEntropyLoss() if loss == "cross_entropy" else nn.MSELoss()
    params = list(model.parameters())
    K = curvlinops.KFACLinearOperator(
        model, loss_func, params, [(X, y)], fisher_type=fisher, kfac_approx=approx,
        separate_weight_and_bias=False, check_deterministic=False,
    )
    return K @ torch.eye(sum(p.numel() for p in params))


def models_and_data() -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    torch.manual_seed(2)
    return [
        ("mlp", nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), torch.randn(7, 5), torch.randint(0, 3, (7,))),
        ("shared-pooled", PositionwiseNet(True, nn.Tanh()), torch.randn(7, 6, 5), torch.randint(0, 3, (7,))),
        (
            "cnn",
            nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(48, 3)),
            torch.randn(5, 2, 8, 8),
            torch.randint(0, 3, (5,)),
        ),
    ]


@pytest.mark.parametrize("case", range(3), ids=["mlp", "shared-pooled", "cnn"])
@pytest.mark.parametrize("approx", ["expand", "reduce"])
@pytest.mark.parametrize("fisher", ["type-2", "empirical"])
def test_equals_curvlinops_kfac(case: int, approx: str, fisher: str) -> None:
    _, model, X, y = models_and_data()[case]
    opt = kfac_after_one_step(model, X, y, "cross_entropy", fisher_type=fisher, weight_sharing=approx)
    assert_blocks_equal(opt, model, curvlinops_dense(model, X, y, "cross_entropy", fisher, approx))


def test_mse_convention_against_curvlinops() -> None:
    """Our MSE is 0.5 * sum over outputs (mean over the batch); torch's MSELoss is the mean over
    all N * C entries, so curvlinops' matrix is ours times 2 / C."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    X, y = torch.randn(6, 5), torch.randn(6, 3)
    opt = kfac_after_one_step(model, X, y, "mse", fisher_type="type-2")
    assert_blocks_equal(opt, model, curvlinops_dense(model, X, y, "mse", "type-2", "expand"), scale=3 / 2)


def test_monte_carlo_fisher_is_unbiased() -> None:
    """Averaged over many MC samples, G tends to the type-2 (exact Fisher) factor."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    X, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    exact = kfac_after_one_step(model, X, y, "cross_entropy", fisher_type="type-2")
    mc = kfac_after_one_step(model, X, y, "cross_entropy", fisher_type="mc", mc_samples=4000, seed=1)
    for name in exact.layer_names:
        G_exact = exact.state[dict(model.named_modules())[name].weight]["G"]
        G_mc = mc.state[dict(model.named_modules())[name].weight]["G"]
        # MC standard error ~ |G| / sqrt(samples): 4000 samples -> a few percent
        assert float((G_mc - G_exact).norm() / G_exact.norm()) < 0.08
