"""The digital side's registries (optimizers, solvers, tasks) follow one rule: a name is found in
any case and kept as registered, an unknown one raises the kind's error listing the names, and
what callers ask of an optimizer (first or second order, takes a solver) is read off its entry."""

from __future__ import annotations

import argparse

import pytest
import torch
from torch import nn

from digital import OPTIMIZERS, SOLVERS, TASKS, make_optimizer, register_optimizer
from digital.errors import UnknownSolverError, UnsupportedConfigurationError
from digital.optimizers import OptimizerKind, first_order_optimizers, second_order_optimizers
from digital.solvers import get_solver
from digital.tasks import build_task
from digital.train import TrainConfig

from .registry_helpers import registries_restored

REGISTRIES = [(OPTIMIZERS, UnsupportedConfigurationError), (SOLVERS, UnknownSolverError),
              (TASKS, UnsupportedConfigurationError)]


def _spellings(name: str) -> list[str]:
    return [name, name.upper(), name.title(), name.swapcase()]


@pytest.mark.parametrize(("registry", "error"), REGISTRIES, ids=lambda r: getattr(r, "kind", ""))
def test_every_lookup_ignores_case_and_keeps_the_registered_spelling(registry, error) -> None:  # type: ignore[no-untyped-def]
    assert len(registry) >= 3 and tuple(registry) == registry.names()
    for name in registry.names():
        for spelling in _spellings(name):
            assert spelling in registry
            assert registry.get(spelling) is registry.get(name)
            assert registry.canonical(spelling) == name
    with pytest.raises(error, match=rf"unknown {registry.kind} 'no-such-name'; choose one of {registry.names()[0]}"):
        registry.get("no-such-name")
    assert "no-such-name" not in registry and None not in registry


def test_the_builders_take_names_in_any_case() -> None:
    net = nn.Linear(3, 2)
    assert type(make_optimizer("AdamW", net, lr=0.1)) is torch.optim.AdamW
    assert type(get_solver("Exact")) is type(get_solver("exact"))
    assert build_task("Digits-MLP").name == "digits-mlp"
    # a configuration stores the registered spelling: one configuration, one run name
    shouted = TrainConfig(task="DIGITS-MLP", optimizer="KFAC", solver="CG")
    assert (shouted.task, shouted.optimizer, shouted.solver) == ("digits-mlp", "kfac", "cg")
    assert shouted.run_name() == TrainConfig(task="digits-mlp", optimizer="kfac", solver="cg").run_name()
    # a solver registered later is left as given and reported when the run builds it
    assert TrainConfig(solver="not-yet-registered").solver == "not-yet-registered"


def test_argparse_takes_the_optimizer_registry_as_choices() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimizer", choices=OPTIMIZERS)
    assert parser.parse_args(["--optimizer", "tngd"]).optimizer == "tngd"
    with pytest.raises(SystemExit):
        parser.parse_args(["--optimizer", "shampoo"])
    assert parser.parse_args(["--optimizer", "KFAC"]).optimizer == "KFAC"  # TrainConfig canonicalizes it
    assert "{sgd,adam,adamw,kfac,ngd,tngd}" in parser.format_help()


def test_help_texts_list_every_name_with_its_summary() -> None:
    for registry, _ in REGISTRIES:
        text = registry.help()
        for entry in registry.entries():
            assert entry.summary, f"{registry.kind} {entry.name!r} has no summary"
            assert f"{entry.name}: {entry.summary}" in text


def test_the_first_and_second_order_split_is_read_from_the_entries() -> None:
    assert first_order_optimizers() == ("sgd", "adam", "adamw")
    assert second_order_optimizers() == ("kfac", "ngd", "tngd")
    assert {name for name in OPTIMIZERS if OPTIMIZERS.get(name).takes_solver} == {"kfac", "ngd"}
    assert [name for name in OPTIMIZERS if OPTIMIZERS.get(name).takes_hardware] == ["tngd"]

    def rmsprop(model, *, lr, loss, solver, solver_options, **options):  # type: ignore[no-untyped-def]
        return torch.optim.RMSprop(model.parameters(), lr=lr, **options)

    def sgd_with_solver(model, *, lr, loss, solver, solver_options, **options):  # type: ignore[no-untyped-def]
        """A stand-in second-order method: it records the solver it was given."""
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        opt.solver = get_solver(solver, **(solver_options or {}))  # type: ignore[attr-defined]
        return opt

    with registries_restored(OPTIMIZERS):
        kind = register_optimizer("Test-RMSprop", rmsprop, "RMSprop", second_order=False, takes_solver=False)
        assert isinstance(kind, OptimizerKind) and OPTIMIZERS.get("test-rmsprop") is kind
        register_optimizer("test-precond", sgd_with_solver, "SGD holding a solver", second_order=True, takes_solver=True)
        assert first_order_optimizers()[-1] == "Test-RMSprop" and second_order_optimizers()[-1] == "test-precond"
        with pytest.raises(UnsupportedConfigurationError, match="'test-rmsprop' is a first-order optimizer: it takes no solver"):
            make_optimizer("test-rmsprop", nn.Linear(3, 2), lr=0.1, solver="cg")
        assert type(make_optimizer("TEST-RMSPROP", nn.Linear(3, 2), lr=0.1, alpha=0.9)) is torch.optim.RMSprop
        assert make_optimizer("test-precond", nn.Linear(3, 2), lr=0.1, solver="cg").solver.name == "cg"
        # the training loop names the solver in the run of an optimizer that takes one, and only there
        assert "-cg_" in TrainConfig(optimizer="test-precond", solver="cg").run_name()
        assert "-cg_" not in TrainConfig(optimizer="test-rmsprop", solver="cg").run_name()
        with pytest.raises(UnsupportedConfigurationError, match="already registered"):
            register_optimizer("TEST-PRECOND", rmsprop, "again", second_order=False, takes_solver=False)
    assert "test-rmsprop" not in OPTIMIZERS and first_order_optimizers() == ("sgd", "adam", "adamw")
