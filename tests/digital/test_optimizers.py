"""Optimizers by name: every method builds, takes its options, and refuses what it cannot use."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from digital import KFAC, NGD, TNGD, make_optimizer
from digital.errors import UnsupportedConfigurationError


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def test_every_name_builds_the_right_optimizer() -> None:
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                "kfac": KFAC, "ngd": NGD, "tngd": TNGD}
    for name, cls in expected.items():
        assert type(make_optimizer(name, model(), lr=0.1)) is cls
    assert make_optimizer("SGD", model(), lr=0.1, momentum=0.9).param_groups[0]["momentum"] == 0.9
    opt = make_optimizer("kfac", model(), lr=0.1, solver="cg", solver_options={"rtol": 1e-8}, damping=1e-2)
    assert opt.solver.name == "cg" and opt.param_groups[0]["damping"] == 1e-2


def test_what_an_optimizer_cannot_use_is_refused() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="unknown optimizer 'shampoo'"):
        make_optimizer("shampoo", model(), lr=0.1)
    with pytest.raises(UnsupportedConfigurationError, match="first-order optimizer"):
        make_optimizer("adam", model(), lr=0.1, solver="thermo")
    with pytest.raises(UnsupportedConfigurationError, match="bad options for optimizer 'adam'"):
        make_optimizer("adam", model(), lr=0.1, damping=1e-3)
    with pytest.raises(UnsupportedConfigurationError, match="hardware"):
        make_optimizer("tngd", model(), lr=0.1, solver="thermo")


def test_first_order_baselines_run_under_the_same_closure_protocol() -> None:
    X, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for name in ("sgd", "adam", "adamw", "kfac", "ngd"):
        net = model()
        opt = make_optimizer(name, net, lr=0.05)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(X), y)
            loss.backward()
            return loss

        losses = []
        for _ in range(5):
            if hasattr(opt, "set_batch"):
                opt.set_batch(X, y)
            losses.append(float(opt.step(closure).detach()))
        assert losses[-1] < losses[0], name


@pytest.mark.parametrize("build", ["NGD", "TNGD", "make_optimizer"])
def test_parameters_instead_of_the_model_are_refused(build: str) -> None:
    """NGD/TNGD(model.parameters()) and make_optimizer(name, model.parameters()) ended in an
    AttributeError; they name the right call instead."""
    from digital.errors import NotAModelError

    params = model().parameters()
    calls = {"NGD": lambda: NGD(params, lr=0.1), "TNGD": lambda: TNGD(params, lr=0.1),
             "make_optimizer": lambda: make_optimizer("adam", params, lr=0.1)}
    call = {"NGD": r"NGD\(model, lr=\.\.\.\)", "TNGD": r"TNGD\(model, lr=\.\.\.\)",
            "make_optimizer": r"make_optimizer\('adam', model, lr=\.\.\.\)"}[build]
    with pytest.raises(NotAModelError, match=rf"{build} needs the model itself \({call}\), not model\.parameters\(\)"):
        calls[build]()
