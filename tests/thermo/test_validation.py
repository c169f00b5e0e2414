"""Inputs that used to be converted silently (complex, sparse, operators, objects) or not checked
at all (sample_ou), SolverConfig counts, and the memory guard of every dense simulation path."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver
from thermo.backends import NumpyBackend
from thermo.errors import (
    InputError,
    MemoryBudgetError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
    UnsupportedInputError,
)
from thermo.exact import sample_ou
from thermo.matrices import random_spd
from thermo.stepwise import StepwiseLangevin
from thermo.validation import check_symmetric

D = 6
A = random_spd(D, 10.0, seed=0)
B = np.arange(1.0, D + 1)

BAD_TYPES = {
    "numpy complex": (A + 1e-3j * np.eye(D), ".real"),
    "python complex list": ([[1 + 1j] * D] * D, ".real"),
    "torch complex": (torch.as_tensor(A, dtype=torch.complex128), ".real"),
    "scipy sparse": (scipy.sparse.csr_matrix(A), ".toarray()"),
    "torch sparse": (torch.as_tensor(A).to_sparse(), ".to_dense()"),
    "LinearOperator": (scipy.sparse.linalg.aslinearoperator(A), "'cg'"),
    "object array": (np.array([[object()] * D] * D, dtype=object), "numeric"),
    "strings": (np.full((D, D), "1.0"), "numbers"),
    "booleans": (np.eye(D, dtype=bool), "astype(float)"),
}


@pytest.mark.parametrize("kind", list(BAD_TYPES))
def test_unusable_matrix_types_are_refused_with_the_fix(kind: str) -> None:
    bad, fix = BAD_TYPES[kind]
    solver = ThermodynamicSolver(HardwareSpec.ideal(), seed=0)
    for call in (lambda: solver.solve(bad, B), lambda: solver.inverse(bad), lambda: sample_ou(bad, B, B, np.arange(3.0))):
        with pytest.raises(UnsupportedInputError, match=r"A|a") as info:
            call()
        assert fix in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("kind", ["numpy complex", "torch complex", "scipy sparse", "booleans"])
def test_unusable_rhs_and_warm_start_types_are_refused(kind: str) -> None:
    bad = {"numpy complex": B + 1j, "torch complex": torch.as_tensor(B + 0j), "scipy sparse": scipy.sparse.csr_matrix(B[:, None]),
           "booleans": B > 2}[kind]
    solver = ThermodynamicSolver(HardwareSpec.ideal(), seed=0)
    with pytest.raises(UnsupportedInputError, match="b"):
        solver.solve(A, bad)
    with pytest.raises(UnsupportedInputError, match="x0"):
        solver.solve(A, B, x0=bad)


def test_real_part_of_complex_input_is_not_used_silently() -> None:
    """Today's code returned the solution of Re(A) x = Re(b) with only a ComplexWarning."""
    with pytest.raises(UnsupportedInputError):
        ThermodynamicSolver(HardwareSpec.ideal(), seed=0).solve(A.astype(complex), B.astype(complex))


# ------------------------------------------------------------------------------------------------
def test_sample_ou_runs_the_solvers_checks() -> None:
    t = np.linspace(0.0, 1.0, 5)
    skew = A.copy()
    skew[0, 1] += 0.5  # sample_ou used the lower triangle of this
    with pytest.raises(NotSymmetricError):
        sample_ou(skew, B, B, t)
    with pytest.raises(NotPositiveDefiniteError):
        sample_ou(-A, B, B, t)
    with pytest.raises(NonFiniteInputError):
        sample_ou(A, B, B, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(InputError, match="increasing"):
        sample_ou(A, B, B, np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ShapeMismatchError, match="1-D"):
        sample_ou(A, B, B, np.zeros((2, 2)))
    with pytest.raises(ShapeMismatchError, match="b"):
        sample_ou(A, B[:-1], B, t)
    with pytest.raises(ShapeMismatchError, match="x0"):
        sample_ou(A, B, np.ones((D, 2)), t)
    with pytest.raises(NonFiniteInputError, match="x0"):
        sample_ou(A, B, np.full(D, np.inf), t)
    for kT in (0.0, -1.0, np.nan, np.inf, True, 1j):
        with pytest.raises(InputError, match="kT"):
            sample_ou(A, B, B, t, kT=kT)
    for seed in (-1, 1.5, True):
        with pytest.raises(InputError, match="seed"):
            sample_ou(A, B, B, t, seed=seed)
    path = sample_ou(A, B, B, t, kT=0.1)  # a valid call still works
    assert path.shape == (5, D) and np.all(np.isfinite(path))


def test_exact_symmetry_check_catches_a_skew_part_every_probe_misses() -> None:
    """A skew part orthogonal to the probes (here: ones and e_0) leaves A v = A^T v for them."""
    rng = np.random.default_rng(1)
    probes = np.stack([np.ones(D), np.eye(D)[0]], axis=1)
    q, _ = np.linalg.qr(np.concatenate([probes, rng.standard_normal((D, 2))], axis=1))
    u, w = q[:, 2], q[:, 3]
    skew = 1e-3 * (np.outer(u, w) - np.outer(w, u))
    bad = A + skew
    assert np.allclose(bad @ probes, bad.T @ probes, atol=1e-14)
    with pytest.raises(NotSymmetricError):
        check_symmetric(bad, 1e-8)
    with pytest.raises(NotSymmetricError):
        ThermodynamicSolver(HardwareSpec.ideal(), seed=0).solve(bad, B)


# ------------------------------------------------------------------------------------------------
COUNT_FIELDS = ("max_samples", "chunk_samples", "n_batches")


@pytest.mark.parametrize("field", COUNT_FIELDS + ("max_bound_retries",))
@pytest.mark.parametrize("value", [0, -3, 2.5, True, "4", None])
def test_solver_config_counts_are_integers_naming_the_field(field: str, value: object) -> None:
    if field == "max_bound_retries" and value == 0 and not isinstance(value, bool):
        SolverConfig(max_bound_retries=0)  # zero retries is a valid choice
        return
    with pytest.raises(InputError, match=f"SolverConfig.{field}"):
        SolverConfig(**{field: value})


@pytest.mark.parametrize("field", ["closed_form", "bound_management"])
def test_solver_config_flags_are_booleans(field: str) -> None:
    with pytest.raises(InputError, match=field):
        SolverConfig(**{field: "no"})


# ------------------------------------------------------------------------------------------------
def _peak_bytes(call) -> tuple[Exception | None, int]:
    tracemalloc.start()
    try:
        call()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned to the test
        error = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize(
    "label, hw, cfg, rhs",
    [
        ("stepwise chains", HardwareSpec.ideal(mismatch_sigma=0.01, mismatch_symmetric=False), SolverConfig(), 4000),
        ("eigenbasis sampled chunks", HardwareSpec.ideal(), SolverConfig(closed_form=False, chunk_samples=4096), 400),
    ],
)
def test_a_plan_above_the_budget_is_refused_before_it_allocates(monkeypatch, label, hw, cfg, rhs) -> None:
    d = 64
    a = random_spd(d, 10.0, seed=2)
    b = np.ones((d, rhs))
    solver = ThermodynamicSolver(hw, cfg, seed=0)
    planned = solver.planned_bytes(d, rhs)
    budget = 8 * d * rhs * 4  # a few copies of b: what the caller already holds, far below the plan
    assert planned > 4 * budget
    monkeypatch.setenv("TCD_MEMORY_BUDGET", str(budget))
    error, peak = _peak_bytes(lambda: solver.solve(a, b))
    assert isinstance(error, MemoryBudgetError), error
    assert "right-hand sides" in str(error) and "TCD_MEMORY_BUDGET" in str(error)
    assert peak < budget  # refused before the simulation allocated its arrays
    # a normal plan passes under the same budget
    ThermodynamicSolver(hw, cfg, seed=0).solve(a[:8, :8], np.ones(8))


def test_tiled_inverse_sample_ou_and_stepwise_check_their_plans(monkeypatch) -> None:
    monkeypatch.setenv("TCD_MEMORY_BUDGET", "2MB")
    a = random_spd(300, 10.0, seed=3)
    tiled = ThermodynamicSolver(HardwareSpec.ideal(n_units=100), SolverConfig(target_rel_error=0.1), seed=0)
    with pytest.raises(MemoryBudgetError, match="tiled"):
        tiled.inverse(a)
    with pytest.raises(MemoryBudgetError, match="sample times"):
        sample_ou(A, B, B, np.arange(200_000.0) * 1e-3)
    with pytest.raises(MemoryBudgetError, match="chains"):
        StepwiseLangevin(A, np.ones((D, 200_000)), kT=1.0, mass=0.0, dt=0.01, integrator="euler_maruyama",
                         backend=NumpyBackend(), dtype="float64")
    assert sample_ou(A, B, B, np.arange(100.0) * 1e-2).shape == (100, D)
