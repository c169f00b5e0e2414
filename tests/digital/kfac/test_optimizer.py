"""The K-FAC optimizer's update rule, solver backends, bookkeeping and errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from digital.errors import NonFiniteGradientError, UnsupportedConfigurationError
from digital.kfac import KFAC, KFACWarning
from digital.solvers import LinearSolver
from thermo.errors import DivergenceError

pytestmark = pytest.mark.usefixtures("float64")


def problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    return model, torch.randn(16, 6), torch.randint(0, 3, (16,))


def take_step(opt: KFAC, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    opt.set_batch(X, y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    return opt.step(closure)


def deltas(model: nn.Module, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def layer_gradient(layer: nn.Linear) -> torch.Tensor:
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1)


def test_eigenbasis_damping_inverts_the_damped_kronecker_product_exactly() -> None:
    model, X, y = problem()
    lam, lr = 1e-2, 0.5
    opt = KFAC(model, lr=lr, damping=lam, damping_mode="eigenbasis", fisher_type="type-2", kl_clip=None)
    before = snapshot(model)
    take_step(opt, model, X, y)
    for index, layer in ((0, model[0]), (2, model[2])):
        grad = layer_gradient(layer)
        K = opt.kfac_matrix(str(index))
        expected = torch.linalg.solve(K + lam * torch.eye(K.shape[0]), grad.reshape(-1)).reshape(grad.shape)
        moved = deltas(model, before)
        got = torch.cat([moved[f"{index}.weight"], moved[f"{index}.bias"][:, None]], dim=1)
        torch.testing.assert_close(got, -lr * expected, rtol=1e-9, atol=1e-12)


def test_pi_damping_update_and_backends_agree() -> None:
    lam, lr = 1e-2, 0.3
    results = {}
    for label, options in (
        ("inverse", dict(solver="exact")),
        ("solve", dict(solver="exact", mode="solve")),
        ("cg", dict(solver="cg", solver_options={"rtol": 1e-12})),
        ("thermo", dict(solver="thermo", solver_options={"hardware": "ideal", "target_rel_error": 1e-3}, mode="solve")),
    ):
        model, X, y = problem()
        opt = KFAC(model, lr=lr, damping=lam, fisher_type="type-2", kl_clip=None, **options)
        before = snapshot(model)
        take_step(opt, model, X, y)
        results[label] = (deltas(model, before), opt)
    # the rule itself, written out for the last layer
    model, X, y = problem()
    opt = results["inverse"][1]
    state = opt.state[opt.model[2].weight]
    A, G = state["A"], state["G"]
    pi = math.sqrt((A.trace() / A.shape[0]) / (G.trace() / G.shape[0]))
    take_step(KFAC(model, lr=0.0, fisher_type="type-2"), model, X, y)
    grad = layer_gradient(model[2])
    expected = torch.linalg.solve(G + math.sqrt(lam) / pi * torch.eye(3), grad) @ torch.linalg.inv(
        A + pi * math.sqrt(lam) * torch.eye(6)
    )
    torch.testing.assert_close(results["inverse"][0]["2.weight"], -lr * expected[:, :-1], rtol=1e-9, atol=1e-12)
    reference = torch.cat([v.reshape(-1) for v in results["inverse"][0].values()])
    # thermo: each analog solve is accurate to its target relative to its right-hand side's
    # column; two chained solves per layer, so a few times the target on the whole update
    for label, tol in (("solve", 1e-9), ("cg", 1e-7), ("thermo", 5e-3)):
        got = torch.cat([v.reshape(-1) for v in results[label][0].values()])
        err = float((got - reference).norm() / reference.norm())
        assert err < tol, (label, err)
    thermo_opt = results["thermo"][1]
    assert thermo_opt.last_stats["analog_time_s"] > 0
    assert thermo_opt.last_stats["solver_calls"] == 4  # two solves per layer


def test_kl_clipping_bounds_the_step() -> None:
    model, X, y = problem()
    lr, clip = 1.0, 1e-4
    opt = KFAC(model, lr=lr, damping=1e-3, kl_clip=clip, fisher_type="type-2")
    before = snapshot(model)
    take_step(opt, model, X, y)
    scale = opt.last_stats["kl_scale"]
    assert 0 < scale < 1
    moved = deltas(model, before)
    # the quadratic model of the step, lr^2 v^T F v with v = scale * F^-1 grad, equals the clip:
    # lr^2 scale <scaled update, grad> (update = -moved / lr)
    total = sum(float((-moved[n] / lr * p.grad).sum()) for n, p in model.named_parameters())
    assert total * scale * lr**2 == pytest.approx(clip, rel=1e-8)


class WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.norm = nn.LayerNorm(5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.norm(self.fc(x))))


def test_unsupported_parameters_go_first_order_with_a_warning_and_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = WithLayerNorm()
    with pytest.warns(KFACWarning, match="first-order"):
        opt = KFAC(model, lr=0.1, first_order_lr=0.05, fisher_type="type-2")
    table = capsys.readouterr().out
    assert "norm" in table and "first-order: LayerNorm is not a Linear or Conv2d layer" in table
    assert "K-FAC" in table.splitlines()[3] or "K-FAC" in table
    assert [g["kind"] for g in opt.param_groups] == ["kfac", "first_order"]
    X, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    before = snapshot(model)
    take_step(opt, model, X, y)
    moved = deltas(model, before)
    torch.testing.assert_close(moved["norm.weight"], -0.05 * model.norm.weight.grad)


class Functional(nn.Module):
    """Calls its second layer's parameters through F.linear: the module's hook never fires."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(torch.tanh(self.fc(x)), self.head.weight, self.head.bias)


def test_layers_whose_hooks_never_fire_are_reported_at_the_first_step() -> None:
    torch.manual_seed(0)
    model = Functional()
    opt = KFAC(model, lr=0.1, fisher_type="type-2")
    X, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    with pytest.warns(KFACWarning, match=r"\['head'\] never fired"):
        take_step(opt, model, X, y)
    assert "first-order: hooks never fired" in opt.registration_table()
    before = snapshot(model)
    take_step(opt, model, X, y)
    torch.testing.assert_close(deltas(model, before)["head.weight"], -0.1 * model.head.weight.grad)


def run(steps: int, opt: KFAC, model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    return [float(take_step(opt, model, X, y).detach()) for X, y in data[:steps]]


def make(seed: int = 0) -> tuple[nn.Module, KFAC]:
    model, _, _ = problem(seed)
    opt = KFAC(model, lr=0.2, damping=1e-2, momentum=0.5, inv_update_steps=2, fisher_type="mc", ema_decay=0.9)
    return model, opt


def test_state_dict_resume_continues_identically(tmp_path) -> None:
    gen = torch.Generator().manual_seed(5)
    data = [(torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(7)]
    model, opt = make()
    straight = run(7, opt, model, data)

    model, opt = make()
    run(3, opt, model, data)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    model2, opt2 = make(seed=99)  # different init: everything must come from the checkpoint
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    resumed = run(7, opt2, model2, data[3:] + data[:0])
    assert resumed == straight[3:]
    sd = opt2.state_dict()
    assert "A" in sd["state"][0] and sd["kfac"]["step"] == 7


def test_learning_rate_schedulers_drive_param_groups() -> None:
    model, X, y = problem()
    opt = KFAC(model, lr=0.1, fisher_type="type-2")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    take_step(opt, model, X, y)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_bad_inputs_and_configurations_give_clear_errors() -> None:
    model, X, y = problem()
    with pytest.raises(UnsupportedConfigurationError, match="unknown K-FAC option"):
        KFAC(model, dampening=1.0)
    with pytest.raises(UnsupportedConfigurationError, match="eigendecomposition"):
        KFAC(model, solver="cg", damping_mode="eigenbasis")
    with pytest.raises(UnsupportedConfigurationError, match="fisher_type"):
        KFAC(model, fisher_type="fisher")
    with pytest.raises(UnsupportedConfigurationError, match="damping"):
        KFAC(model, damping=-1.0)
    with pytest.raises(UnsupportedConfigurationError, match="no Linear or Conv2d"):
        KFAC(nn.Sequential(nn.LayerNorm(4)))
    opt = KFAC(model, fisher_type="mc")
    with pytest.raises(UnsupportedConfigurationError, match="set_batch"):
        opt.step(lambda: nn.functional.cross_entropy(model(X), y))
    opt = KFAC(model, fisher_type="empirical")
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    model[2].bias.grad[0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match=r"'2.bias'"):
        opt.step()


class Failing(LinearSolver):
    """A backend whose inversions diverge, like a chip with unstable realized dynamics."""

    name = "test-failing"

    def _solve(self, A, B, damping, x0):  # type: ignore[no-untyped-def]
        raise DivergenceError("simulated divergence")

    def _inverse(self, A, damping):  # type: ignore[no-untyped-def]
        raise DivergenceError("simulated divergence")


def test_solver_failures_fall_back_to_exact_or_raise() -> None:
    model, X, y = problem()
    reference_model = copy.deepcopy(model)
    opt = KFAC(model, lr=0.1, fisher_type="type-2", solver=Failing(), inv_update_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        take_step(opt, model, X, y)
    assert opt.last_stats["fallbacks"] == 4
    # A and G of both layers, each with its reason; one warning per (layer, operation, error type)
    assert opt.last_stats["fallback_reasons"] == ("0 inverse: DivergenceError: simulated divergence",) * 2 + (
        "2 inverse: DivergenceError: simulated divergence",) * 2
    messages = [str(w.message) for w in caught if issubclass(w.category, KFACWarning)]
    assert [m.split(";")[0] for m in messages] == [
        f"the 'test-failing' backend failed ({layer} inverse: DivergenceError: simulated divergence)" for layer in "02"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", KFACWarning)  # the same kinds again: counted, not warned
        take_step(opt, model, X, y)
    assert opt.last_stats["fallbacks"] == 4 and len(opt.last_stats["fallback_reasons"]) == 4
    ref_opt = KFAC(reference_model, lr=0.1, fisher_type="type-2", inv_update_steps=1)
    take_step(ref_opt, reference_model, X, y)
    take_step(ref_opt, reference_model, X, y)
    assert ref_opt.last_stats["fallbacks"] == 0 and ref_opt.last_stats["fallback_reasons"] == ()
    for p, q in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(p, q)
    strict = KFAC(problem()[0], fisher_type="type-2", solver=Failing(), solver_fallback="none")
    with pytest.raises(DivergenceError):
        take_step(strict, strict.model, X, y)


@pytest.mark.parametrize("given", ["generator", "list"])
def test_parameters_instead_of_the_model_are_refused_with_the_right_call(given: str) -> None:
    """KFAC(model.parameters()) used to end in an AttributeError deep in layer registration."""
    from digital.errors import NotAModelError

    model, _, _ = problem()
    params = model.parameters() if given == "generator" else list(model.parameters())
    with pytest.raises(NotAModelError, match=r"KFAC needs the model itself \(KFAC\(model, lr=\.\.\.\)\), not "
                       r"model\.parameters\(\): it hooks each layer's inputs and output gradients"):
        KFAC(params, lr=0.1)
    with pytest.raises(ValueError, match="an nn.Module; got str"):  # an input error: the CLI's handler catches it
        KFAC("model")
