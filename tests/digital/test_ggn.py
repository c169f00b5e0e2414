"""The matrix-free GGN operator (digital.ggn) against the dense factor U of
digital.curvature.ggn_factor, in float64: the layer-by-layer Gram (both reductions), the jvp/vjp
products, the Woodbury solve, the fallback for layers the hooks cannot cover, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from digital.curvature import flatten_params, ggn_factor, trainable_params
from digital.errors import UnsupportedConfigurationError
from digital.ggn import GGNOperator, block_cost, pairwise_cost, woodbury_solve
from digital.models import MLP, SmallCNN, SmallGNN
from digital.tasks import build_task
from thermo.errors import ShapeMismatchError

F64 = torch.float64


# -- models and data ---------------------------------------------------------------------------
class TokenModel(nn.Module):
    """``nn.Linear`` shared over ``P`` tokens ``(b, P, d)``, tanh, [LayerNorm], mean pool, head."""

    def __init__(self, d: int = 4, h: int = 5, c: int = 3, P: int = 3, norm: bool = False, pos: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(d, h)
        self.pos = nn.Parameter(0.3 * torch.randn(P, h)) if pos else None
        self.norm = nn.LayerNorm(h) if norm else None
        self.head = nn.Linear(h, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        if self.pos is not None:
            h = h + self.pos
        h = torch.tanh(h)
        if self.norm is not None:
            h = self.norm(h)
        return self.head(h.mean(dim=1))


class SharedTwice(nn.Module):
    """One ``nn.Linear`` called twice in the forward pass (its positions concatenate)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 4)
        self.mid = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.mid(torch.tanh(self.mid(h))))
        return self.head(h)


class Tied(nn.Module):
    """``fc.weight`` is also used outside ``fc``'s call: the hook check must catch it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        h = torch.tanh(F.linear(h, self.fc.weight))
        return self.head(h)


class WeightOnly(nn.Module):
    """``fc`` is never called, its parameters are used through ``F.linear``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(x), self.fc.weight, self.fc.bias)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_case(name: str, loss: str, b: int = 5):
    """``(model, inputs, targets)`` in float64."""
    torch.manual_seed(0)
    gen = _gen(1)
    if name == "digits-cnn":
        task = build_task("digits-cnn")
        model = task.model.to(F64)
        x = task.train.inputs[:b].to(F64)
    elif name == "mlp":
        model, x = MLP(6, (5, 4), 3, activation="tanh").to(F64), torch.randn(b, 6, dtype=F64, generator=gen)
    elif name == "mlp-nobias":
        model, x = MLP(6, (5,), 3, activation="tanh", bias=False).to(F64), torch.randn(b, 6, dtype=F64, generator=gen)
    elif name == "mlp-inplace-relu":
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)).to(F64)
        x = torch.randn(b, 6, dtype=F64, generator=gen)
    elif name == "cnn":
        model = SmallCNN(in_channels=2, image_size=4, n_classes=3, channels=3, kernel_size=3, hidden=6).to(F64)
        x = torch.randn(b, 2, 4, 4, dtype=F64, generator=gen)
    elif name == "tokens":
        model, x = TokenModel().to(F64), torch.randn(b, 3, 4, dtype=F64, generator=gen)
    elif name == "tokens-norm-pos":
        model, x = TokenModel(norm=True, pos=True).to(F64), torch.randn(b, 3, 4, dtype=F64, generator=gen)
    elif name == "gnn":
        model = SmallGNN(in_features=3, hidden=4, n_classes=3, n_layers=2).to(F64)
        n = 4
        adj = (torch.rand(b, n, n, generator=gen) < 0.5).to(F64)
        adj = ((adj + adj.mT) > 0).to(F64) + torch.eye(n, dtype=F64)
        adj = adj / adj.sum(-1, keepdim=True)
        mask = torch.ones(b, n, dtype=F64)
        mask[0, -1] = 0
        x = (torch.randn(b, n, 3, dtype=F64, generator=gen), adj, mask)
    elif name == "shared-twice":
        model, x = SharedTwice().to(F64), torch.randn(b, 6, dtype=F64, generator=gen)
    elif name == "weight-only":
        model, x = WeightOnly().to(F64), torch.randn(b, 6, dtype=F64, generator=gen)
    elif name == "tied":
        model, x = Tied().to(F64), torch.randn(b, 6, dtype=F64, generator=gen)
    else:
        raise KeyError(name)
    with torch.no_grad():
        z = model(*x) if isinstance(x, tuple) else model(x)
    y = torch.arange(b) % z.shape[1] if loss == "cross_entropy" else torch.randn(z.shape, dtype=F64, generator=gen)
    return model, x, y


def dense_reference(model, x, loss, params=None):
    U, _ = ggn_factor(model, x, loss, params=params)
    return U


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-10) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= rel * max(1.0, float(b.abs().max()))


CASES = ["mlp", "mlp-nobias", "cnn", "digits-cnn", "tokens", "tokens-norm-pos", "gnn", "shared-twice", "mlp-inplace-relu"]


# -- the operator against the dense factor -------------------------------------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("case", CASES)
def test_operator_matches_the_dense_factor(case: str, loss: str) -> None:
    model, x, y = make_case(case, loss)
    op = GGNOperator(model, x, y, loss)
    U = dense_reference(model, x, loss)
    assert (op.n, op.rank) == tuple(U.shape)
    KU = U.mT @ U
    for strategy in ("auto", "pairwise", "block"):
        K = op.gram(strategy)
        assert K.shape == (op.rank, op.rank)
        assert close(K, KU), (strategy, float((K - KU).abs().max()))
    assert close(op.gram("pairwise"), op.gram("block"), 1e-12)
    gen = _gen(7)
    v = torch.randn(op.n, 3, dtype=F64, generator=gen)
    c = torch.randn(op.rank, 2, dtype=F64, generator=gen)
    assert close(op.apply_ut(v), U.mT @ v)
    assert close(op.apply_u(c), U @ c)
    assert close(op.apply_ut(v[:, 0]), U.mT @ v[:, 0]) and op.apply_ut(v[:, 0]).shape == (op.rank,)
    assert close(op.apply_u(c[:, 0]), U @ c[:, 0]) and op.apply_u(c[:, 0]).shape == (op.n,)
    assert close(op.matvec(v), U @ (U.mT @ v))
    if op.n <= 2000:  # dense references that stay cheap
        assert close(op.dense_u(), U)
        g = torch.randn(op.n, dtype=F64, generator=gen)
        lam = 1e-2
        x_ref = torch.linalg.solve(U @ U.mT + lam * torch.eye(op.n, dtype=F64), g)
        assert close(woodbury_solve(op, g, lam), x_ref, 1e-9)
        G2 = torch.randn(op.n, 2, dtype=F64, generator=gen)
        assert close(woodbury_solve(op, G2, lam), torch.linalg.solve(U @ U.mT + lam * torch.eye(op.n, dtype=F64), G2), 1e-9)


def test_plan_uses_hooks_where_it_can_and_the_cost_model_picks_per_layer() -> None:
    model, x, y = make_case("digits-cnn", "cross_entropy", b=4)
    op = GGNOperator(model, x, y, "cross_entropy")
    op.gram()
    plan = {p.module: p for p in op.plan}
    assert set(plan) == {"conv", "fc1", "fc2"}  # no fallback
    conv, fc1 = plan["conv"], plan["fc1"]
    assert (conv.positions, conv.d_in, conv.d_out) == (64, 9, 8) and conv.method == "block"
    assert (fc1.positions, fc1.d_in, fc1.d_out) == (1, 512, 32) and fc1.method == "pairwise"
    assert conv.cost_block == block_cost(4, 10, 64, 9, 8) < conv.cost_pairwise == pairwise_cost(4, 10, 64, 9, 8)
    assert fc1.cost_pairwise < fc1.cost_block
    assert op.last_gram_stats["batched_backward"] is True
    # forcing a strategy is recorded in the plan
    op.gram("pairwise")
    assert {p.method for p in op.plan} == {"pairwise"}
    # the one-backward-per-output path gives the same Gram
    looped = GGNOperator(model, x, y, "cross_entropy")
    looped.batched_backward = False
    assert close(looped.gram(), op.gram(), 1e-13) and looped.last_gram_stats["batched_backward"] is False


def test_fallback_covers_layernorm_free_parameters_and_tied_weights() -> None:
    model, x, y = make_case("tokens-norm-pos", "cross_entropy")
    op = GGNOperator(model, x, y, "cross_entropy")
    op.gram()
    fallback = [p for p in op.plan if p.method == "jacobian"]
    assert len(fallback) == 1 and set(fallback[0].params) == {"pos", "norm.weight", "norm.bias"}
    assert "LayerNorm" in fallback[0].reason
    # a weight used outside its module's call: the check moves the layer to the fallback
    model, x, y = make_case("tied", "mse")
    op = GGNOperator(model, x, y, "mse")
    U = dense_reference(model, x, "mse")
    assert close(op.gram(), U.mT @ U)
    fallback = [p for p in op.plan if p.method == "jacobian"]
    assert len(fallback) == 1 and set(fallback[0].params) == {"fc.weight", "fc.bias"}
    assert "outside the module" in fallback[0].reason
    model, x, y = make_case("weight-only", "cross_entropy")
    op = GGNOperator(model, x, y, "cross_entropy")
    U = dense_reference(model, x, "cross_entropy")
    assert close(op.gram(), U.mT @ U)
    assert [p.method for p in op.plan] == ["jacobian"] and "outside the module" in op.plan[0].reason
    # on_unsupported="raise" names the layer instead
    model, x, y = make_case("tokens-norm-pos", "cross_entropy")
    with pytest.raises(UnsupportedConfigurationError, match="LayerNorm 'norm'"):
        GGNOperator(model, x, y, "cross_entropy", on_unsupported="raise")


def test_parameter_order_subsets_and_frozen_parameters() -> None:
    model, x, y = make_case("mlp", "cross_entropy")
    op = GGNOperator(model, x, y, "cross_entropy")
    assert op.param_names == tuple(trainable_params(model))
    # the order of flatten_params(trainable_params(model)): a vector holding the parameters
    theta = flatten_params(trainable_params(model))
    assert theta.numel() == op.n
    # frozen bias: not a column; a subset in a custom order: columns follow the mapping
    model.net[0].bias.requires_grad_(False)
    op = GGNOperator(model, x, y, "cross_entropy")
    U = dense_reference(model, x, "cross_entropy")
    assert op.n == U.shape[0] and close(op.dense_u(), U) and close(op.gram(), U.mT @ U)
    named = dict(model.named_parameters())
    subset = {n: named[n].detach() for n in ("net.2.bias", "net.0.weight", "net.4.weight")}
    op = GGNOperator(model, x, y, "cross_entropy", params=subset)
    U = dense_reference(model, x, "cross_entropy", params=subset)
    assert close(op.dense_u(), U) and close(op.gram("pairwise"), U.mT @ U) and close(op.gram("block"), U.mT @ U)
    assert close(op.dense_u("jacobian"), U)


def test_operator_is_a_snapshot_and_gradient_matches_autograd() -> None:
    model, x, y = make_case("mlp", "cross_entropy")
    op = GGNOperator(model, x, y, "cross_entropy")
    K = op.gram().clone()
    U = dense_reference(model, x, "cross_entropy")
    loss, g = op.gradient()
    model.zero_grad()
    ref = F.cross_entropy(model(x), y)
    ref.backward()
    assert abs(float(loss - ref.detach())) < 1e-14
    assert close(g, flatten_params([p.grad for p in model.parameters()]), 1e-13)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert torch.equal(op.gram(), K)  # cached
    assert close(op.dense_u(), U)  # the parameters were copied at construction
    assert not close(dense_reference(model, x, "cross_entropy"), U)


def test_cholesky_retries_in_float64() -> None:
    model = nn.Linear(2, 1, bias=False)
    x = torch.randn(2, 2, generator=_gen(3))
    op = GGNOperator(model, x, loss="mse")
    # a float32 Gram that is singular to float32 round-off once 1e-12 is added, not in float64
    op._gram_cache["auto"] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert int(torch.linalg.cholesky_ex(op.gram() + 1e-12 * torch.eye(2))[1]) != 0
    factor = op.cholesky(1e-12)
    assert factor.dtype == F64
    K64 = op.gram().to(F64) + 1e-12 * torch.eye(2, dtype=F64)
    assert close(factor @ factor.mT, K64, 1e-12)


# -- refusals and errors -----------------------------------------------------------------------------
def test_batch_coupling_and_random_layers_are_refused() -> None:
    x = torch.randn(4, 6, dtype=F64)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    with pytest.raises(UnsupportedConfigurationError, match="BatchNorm1d '1' is in training mode"):
        GGNOperator(model, x, loss="cross_entropy")
    model.eval()  # running statistics: per-example affine, BN parameters via the fallback
    op = GGNOperator(model, x, loss="cross_entropy")
    U = dense_reference(model, x, "cross_entropy")
    assert close(op.gram(), U.mT @ U)
    no_stats = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, track_running_stats=False)).to(F64).eval()
    with pytest.raises(UnsupportedConfigurationError, match="batch statistics"):
        GGNOperator(no_stats, x, loss="mse")
    dropout = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.1), nn.Linear(5, 3)).to(F64)
    with pytest.raises(UnsupportedConfigurationError, match="Dropout"):
        GGNOperator(dropout, x, loss="mse")
    GGNOperator(dropout.eval(), x, loss="mse")


def test_shape_and_configuration_errors_are_clear() -> None:
    model, x, y = make_case("mlp", "cross_entropy", b=4)
    with pytest.raises(UnsupportedConfigurationError, match="unknown loss"):
        GGNOperator(model, x, y, "hinge")
    with pytest.raises(UnsupportedConfigurationError, match="strategy"):
        GGNOperator(model, x, y, "cross_entropy", strategy="fast")
    with pytest.raises(ShapeMismatchError, match="labels of shape \\(4,\\)"):
        GGNOperator(model, x, y[:3], "cross_entropy")
    with pytest.raises(ShapeMismatchError, match="outputs' shape"):
        GGNOperator(model, x, y, "mse")
    with pytest.raises(ShapeMismatchError, match="batch dimension"):
        GGNOperator(model, torch.tensor(1.0, dtype=F64), loss="mse")
    with pytest.raises(ShapeMismatchError, match="outputs \\(b, d_z\\)"):
        GGNOperator(nn.Linear(6, 3).to(F64), torch.randn(4, 2, 6, dtype=F64), loss="mse")
    with pytest.raises(UnsupportedConfigurationError, match="not in model.named_parameters"):
        GGNOperator(model, x, y, "cross_entropy", params={"nope": torch.zeros(1)})
    op = GGNOperator(model, x, y, "cross_entropy")
    with pytest.raises(ShapeMismatchError, match=f"apply_ut: v must have shape \\({op.n},\\)"):
        op.apply_ut(torch.zeros(op.n + 1))
    with pytest.raises(ShapeMismatchError, match=f"apply_u: c must have shape \\({op.rank},\\)"):
        op.apply_u(torch.zeros(op.rank, 2, 1))
    with pytest.raises(ShapeMismatchError, match="woodbury_solve: g"):
        woodbury_solve(op, torch.zeros(3), 1e-3)
    with pytest.raises(UnsupportedConfigurationError, match="damping"):
        woodbury_solve(op, torch.zeros(op.n), 0.0)
    with pytest.raises(UnsupportedConfigurationError, match="needs the targets"):
        GGNOperator(model, x, loss="cross_entropy").gradient()


def test_the_reduced_loss_factor_has_full_rank_and_the_same_hessian() -> None:
    from digital.curvature import loss_hessian_factor, reduced_loss_hessian_factor

    z = torch.randn(7, 5, dtype=F64, generator=torch.Generator().manual_seed(3)) * 4
    full, reduced = loss_hessian_factor(z, "cross_entropy"), reduced_loss_hessian_factor(z, "cross_entropy")
    assert reduced.shape == (7, 5, 4)
    torch.testing.assert_close(reduced @ reduced.mT, full @ full.mT, rtol=1e-12, atol=1e-14)
    assert int(torch.linalg.matrix_rank(reduced).min()) == 4  # no null column left
    assert reduced_loss_hessian_factor(z, "mse").shape == (7, 5, 5)


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_a_reduced_operator_has_the_same_ggn_and_a_smaller_gram(model_name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    if model_name == "mlp":
        torch.manual_seed(0)
        model, x = MLP(6, (5,), 4).to(F64), torch.randn(8, 6, dtype=F64, generator=gen)
    else:
        task = build_task("digits-cnn")
        model, x = task.model.to(F64), task.train.subset(torch.arange(6)).inputs.to(F64)
    full = GGNOperator(model, x, loss="cross_entropy")
    small = GGNOperator(model, x, loss="cross_entropy", reduced_factor=True)
    assert small.rank == full.rank - small.batch_size and small.width == full.d_z - 1
    v = torch.randn(full.n, 3, dtype=F64, generator=gen)
    torch.testing.assert_close(small.matvec(v), full.matvec(v), rtol=1e-9, atol=1e-12)
    K_full, K_small = full.gram(), small.gram()
    torch.testing.assert_close(K_small, small.dense_u().mT @ small.dense_u(), rtol=1e-9, atol=1e-12)
    # the nonzero spectrum of U^T U is that of U U^T, whichever factor
    top = torch.linalg.eigvalsh(K_small)
    torch.testing.assert_close(top, torch.linalg.eigvalsh(K_full)[-small.rank :], rtol=1e-8, atol=1e-10)
    for strategy in ("pairwise", "block"):
        torch.testing.assert_close(small.gram(strategy), K_small, rtol=1e-9, atol=1e-12)


# -- the formed output Jacobian (the quantized TNGD device programs it) ----------------------------
@pytest.mark.parametrize("case", ["mlp", "cnn", "tokens-norm-pos", "gnn", "tied", "weight-only"])
def test_output_jacobian_is_autograds_per_example_jacobian(case: str) -> None:
    """Hooked layers (Linear, Conv2d, shared tokens), the fallback (LayerNorm, a free parameter,
    a tied weight, a layer used through F.linear): every column equals jacrev's."""
    from digital.curvature import per_example_jacobian
    from digital.ggn import output_jacobian

    model, x, y = make_case(case, "cross_entropy")
    J, z = output_jacobian(model, x)
    J_ref, z_ref = per_example_jacobian(model, trainable_params(model), x, return_outputs=True)
    b, d_z, n = J_ref.shape
    assert J.shape == (b * d_z, n)
    assert close(J, J_ref.reshape(b * d_z, n), 1e-12)
    assert close(z, z_ref, 1e-14)
    op = GGNOperator(model, x, y, "cross_entropy")
    assert close(op.dense_ut(), op.dense_u().mT, 1e-12)  # U^T of the cross-entropy GGN, layer by layer


def test_a_formed_factor_beyond_the_memory_budget_is_refused(monkeypatch) -> None:
    from digital.ggn import output_jacobian
    from thermo.errors import MemoryBudgetError

    model, x, _ = make_case("mlp", "cross_entropy")
    monkeypatch.setenv("TCD_MEMORY_BUDGET", "100B")
    with pytest.raises(MemoryBudgetError, match="formed factor U.*matrix-free"):
        output_jacobian(model, x)
