"""Every backend against torch.linalg on damped SPD systems, and the interface's contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digital.errors import (
    UnknownSolverError,
    UnsupportedConfigurationError,
    UnsupportedOperationError,
)
from digital.solvers import (
    SOLVERS,
    LinearSolver,
    SolverDiagnostics,
    SolverWarning,
    available_solvers,
    get_solver,
    register_solver,
)
from thermo.errors import (
    UnsupportedInputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
)
from thermo.matrices import random_spd

from ..registry_helpers import registries_restored


def spd(d: int, cond: float, seed: int) -> torch.Tensor:
    return torch.as_tensor(random_spd(d, cond, seed=seed))


def reference(A: torch.Tensor, B: torch.Tensor, damping: float) -> torch.Tensor:
    return torch.linalg.solve(A + damping * torch.eye(A.shape[0], dtype=A.dtype), B)


@pytest.mark.parametrize("cond", [10.0, 1e4, 1e8])
@pytest.mark.parametrize("rhs", [(), (3,)])
def test_digital_backends_match_torch_linalg(cond: float, rhs: tuple[int, ...]) -> None:
    A = spd(24, cond, seed=1)
    B = torch.randn(24, *rhs, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    damping = 1e-6
    ref = reference(A, B, damping)
    # conditioning of the damped system bounds what any backward-stable method can do
    kappa = float(torch.linalg.cond(A + damping * torch.eye(24, dtype=A.dtype)))
    for name, options in (("exact", {}), ("cg", {"rtol": 1e-12, "max_iter": 2000})):
        out = get_solver(name, **options).solve(A, B, damping)
        assert out.x.shape == B.shape and out.x.dtype == B.dtype
        err = float((out.x - ref).norm() / ref.norm())
        assert err < 1e-13 * kappa + 1e-10, (name, err)
        assert out.diagnostics.residual < 1e-9
        assert out.diagnostics.backend == name and out.diagnostics.wall_time_s > 0


def test_inverse_of_every_digital_backend() -> None:
    A = spd(16, 1e3, seed=3)
    ref = torch.linalg.inv(A + 1e-3 * torch.eye(16, dtype=A.dtype))
    for name in ("exact", "cg"):
        out = get_solver(name, **({"rtol": 1e-12} if name == "cg" else {})).inverse(A, 1e-3)
        assert torch.allclose(out.inverse, ref, rtol=1e-8, atol=1e-10)
        assert torch.allclose(out.inverse, out.inverse.mT)
        assert out.diagnostics.residual < 1e-8


@pytest.mark.parametrize("hardware", ["ideal", "published"])
def test_thermo_backend_agrees_within_the_error_its_diagnostics_predict(hardware: str) -> None:
    """Over seeds, the actual relative error stays below the reported estimate, a calibrated 95%
    bound (noise quantile plus the transient bound), and the bound is not vacuous."""
    A, target = spd(8, 100.0, seed=1), 0.05
    b = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = reference(A, b, 1e-3)
    ratios = []
    for seed in range(12):
        out = get_solver("thermo", hardware=hardware, seed=seed, target_rel_error=target).solve(A, b, 1e-3)
        est = out.diagnostics.estimated_rel_error
        # the bound is the 95% point of the noise plus the transient, the target an rms of each
        assert est is not None and est < 4 * target
        assert out.diagnostics.analog_time_s > 0
        ratios.append(float((out.x - ref).norm() / ref.norm()) / est)
    # 95% coverage: P(10 or fewer of 12 covered) = 0.12 at exactly 0.95; <= 8 of 12 is 0.2%
    assert np.sum(np.array(ratios) <= 1.0) >= 9
    assert np.median(ratios) > 0.1  # the bound is not loose by orders of magnitude


def test_thermo_inverse_in_expectation() -> None:
    """The inverse estimate's squared error over seeds averages to its predicted (rms) value
    squared, and the reported estimate (a 95% bound) lies above that rms."""
    A = spd(6, 10.0, seed=5)
    ref = torch.linalg.inv(A + 1e-2 * torch.eye(6, dtype=A.dtype))
    z2 = []
    for seed in range(16):
        out = get_solver("thermo", hardware="ideal", seed=seed, target_rel_error=0.1).inverse(A, 1e-2)
        thermo_diag = out.diagnostics.extra["thermo"]
        assert out.diagnostics.estimated_rel_error > thermo_diag.predicted_rel_error
        z2.append((float((out.inverse - ref).norm() / ref.norm()) / thermo_diag.predicted_rel_error) ** 2)
    # the predicted error is an rms: E[z^2] = 1; 16 seeds of a sum of d^2 squared Gaussians
    assert 0.4 < np.mean(z2) < 2.5


def test_thermo_warm_start_state_round_trips() -> None:
    A = spd(6, 10.0, seed=5)
    b = torch.ones(6, dtype=torch.float32)
    solver = get_solver("thermo", hardware="ideal", seed=0, target_rel_error=0.05)
    first = solver.solve(A.float(), b)
    assert first.x.dtype == torch.float32 and first.state is not None
    second = solver.solve(A.float(), b, x0=first.state)
    # started at the solution, the second run needs a shorter burn-in
    assert second.diagnostics.analog_time_s < first.diagnostics.analog_time_s


def test_float32_cholesky_retries_in_float64() -> None:
    # integer rank-one matrix: exact in float32, definite only through the damping, which float32
    # rounds away (1e-5 is below half an ulp of every diagonal entry, >= 4096): its Cholesky meets
    # an exact zero pivot on any kernel (every product is an integer below 2^24)
    v = torch.randint(64, 128, (64, 1), generator=torch.Generator().manual_seed(0)).float()
    A, damping = v @ v.mT, 1e-5
    assert torch.equal(A + damping * torch.eye(64), A)
    assert int(torch.linalg.cholesky_ex(A + damping * torch.eye(64))[1]) > 0  # float32 fails
    out = get_solver("exact").solve(A, torch.ones(64), damping)
    assert out.x.dtype == torch.float32
    assert "retried in float64" in out.diagnostics.notes[0]
    ref = reference(A.double(), torch.ones(64, dtype=torch.float64), damping)
    assert float((out.x.double() - ref).norm() / ref.norm()) < 1e-6


def test_cg_accepts_a_matrix_free_operator_and_warm_starts() -> None:
    A = spd(30, 1e3, seed=7)
    B = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cg = get_solver("cg", rtol=1e-10)
    dense = cg.solve(A, B, 1e-3)
    matfree = cg.solve(lambda X: A @ X, B, 1e-3)
    assert torch.allclose(dense.x, matfree.x, rtol=1e-8)
    assert matfree.diagnostics.residual < 1e-9
    warm = cg.solve(A, B, 1e-3, x0=dense.x + 1e-6 * torch.ones_like(B))
    assert warm.diagnostics.iterations < dense.diagnostics.iterations


def test_cg_warns_when_it_stops_early() -> None:
    A = spd(30, 1e6, seed=7)
    with pytest.warns(SolverWarning, match="relative residual"):
        out = get_solver("cg", rtol=1e-12, max_iter=3).solve(A, torch.ones(30, dtype=torch.float64))
    assert out.diagnostics.iterations == 3 and out.diagnostics.estimated_rel_error > 1e-12


def test_bad_inputs_get_errors_that_name_the_problem() -> None:
    A = spd(5, 10.0, seed=0)
    b = torch.ones(5, dtype=torch.float64)
    for name in ("exact", "cg", "thermo"):
        solver = get_solver(name)
        with pytest.raises(NotSymmetricError, match="not symmetric"):
            solver.solve(A + torch.triu(torch.ones(5, 5, dtype=A.dtype), 1), b)
        bad = A.clone()
        bad[1, 1] = float("nan")
        with pytest.raises(NonFiniteInputError, match="NaN"):
            solver.solve(bad, b)
        with pytest.raises(ShapeMismatchError, match="rows"):
            solver.solve(A, torch.ones(4, dtype=A.dtype))
        with pytest.raises(ShapeMismatchError, match="square"):
            solver.inverse(A[:, :4])
        with pytest.raises(ValueError, match="damping"):
            solver.solve(A, b, damping=-1.0)
    indefinite = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64))
    for name in ("exact", "cg"):
        with pytest.raises(NotPositiveDefiniteError):
            get_solver(name).solve(indefinite, torch.ones(3, dtype=torch.float64))
    with pytest.raises(UnsupportedOperationError, match="cg"):
        get_solver("exact").solve(lambda X: X, b)
    with pytest.raises(UnsupportedOperationError, match="eigendecomposition"):
        get_solver("cg").eigh(A)


def test_registry_by_name_class_and_instance() -> None:
    assert {"exact", "cg", "thermo"} <= set(available_solvers())
    assert available_solvers() == SOLVERS.names()
    exact = get_solver("exact")
    assert type(get_solver("EXACT")) is type(exact)
    assert get_solver(exact) is exact
    assert type(get_solver(type(exact))) is type(exact)
    with pytest.raises(UnknownSolverError, match="unknown solver 'gauss'.*exact"):
        get_solver("gauss")
    with pytest.raises(UnsupportedConfigurationError, match="bad options"):
        get_solver("exact", tolerance=3)
    with pytest.raises(UnsupportedConfigurationError, match="existing solver instance"):
        get_solver(exact, rtol=1.0)


def test_a_new_backend_is_a_small_class() -> None:
    class Jacobi(LinearSolver):
        """Diagonal approximation: a toy backend to show the extension point."""

        name = "test-jacobi"

        def _solve(self, A, B, damping, x0):  # type: ignore[no-untyped-def]
            d = torch.diagonal(A) + damping
            return (B / (d if B.ndim == 1 else d[:, None])), SolverDiagnostics(self.name, 0.0), None

        def _inverse(self, A, damping):  # type: ignore[no-untyped-def]
            return torch.diag(1 / (torch.diagonal(A) + damping)), SolverDiagnostics(self.name, 0.0)

    with registries_restored(SOLVERS):
        assert register_solver(Jacobi) is Jacobi
        A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
        out = get_solver("test-jacobi").solve(A, torch.ones(3, dtype=torch.float64))
        assert torch.allclose(out.x, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
        assert out.diagnostics.residual == pytest.approx(0.0, abs=1e-15)
        assert SOLVERS.entry("test-jacobi").summary == "Diagonal approximation: a toy backend to show the extension point"
        with pytest.raises(UnsupportedConfigurationError, match="already registered"):
            register_solver(type("Other", (Jacobi,), {}))
        with pytest.raises(UnsupportedConfigurationError, match="'test-jacobi' is already registered"):
            register_solver(type("Shouting", (Jacobi,), {"name": "Test-Jacobi"}))  # names ignore case
        with pytest.raises(UnsupportedConfigurationError, match="must set a class attribute 'name'"):
            register_solver(type("Nameless", (Jacobi,), {"name": ""}))
        # mixed case is kept as registered and found in any case; a summary can be given
        Mixed = register_solver(summary="Jacobi under another name")(type("Mixed", (Jacobi,), {"name": "Test-Mixed"}))
        assert type(get_solver("TEST-MIXED")) is Mixed and SOLVERS.canonical("test-mixed") == "Test-Mixed"
        assert SOLVERS.entry("test-mixed").summary == "Jacobi under another name"
    assert "test-jacobi" not in available_solvers() and "test-mixed" not in SOLVERS


def _skew_orthogonal_to_probes(d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A skew part ``S = u w^T - w u^T`` with ``u, w`` orthogonal to the interface's old fixed
    probe (``randn`` seeded ``0x5EED + d``) and to ``ones``, ``e_0`` and ``e_{d-1}``: ``S v = 0``
    and ``v^T S = 0`` for each, so ``A v == A^T v`` and a probe check passes ``A + S``."""
    old_probe = torch.randn(d, generator=torch.Generator().manual_seed(0x5EED + d), dtype=torch.float64)
    fixed = torch.stack([old_probe, torch.ones(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)[0],
                         torch.eye(d, dtype=torch.float64)[-1]], dim=1)
    extra = torch.randn(d, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.cat([fixed, extra], dim=1))
    u, w = q[:, -2], q[:, -1]
    return 0.05 * (torch.outer(u, w) - torch.outer(w, u)), fixed


@pytest.mark.parametrize("d", [16, 64])
@pytest.mark.parametrize("name", ["exact", "cg", "thermo"])
def test_symmetry_check_cannot_be_fooled_by_a_skew_part_orthogonal_to_fixed_probes(name: str, d: int) -> None:
    A = spd(d, 10.0, seed=2)
    S, fixed = _skew_orthogonal_to_probes(d)
    bad = A + S
    # the old check: ||A v - A^T v|| / ||A v|| for the fixed probe; it is rounding-small here
    v = fixed[:, 0]
    assert float((bad @ v - v @ bad).norm() / (bad @ v).norm()) < 1e-13
    assert float(S.norm() / A.norm()) > 1e-3  # yet the asymmetry is far above the tolerance 1e-6
    solver = get_solver(name)
    with pytest.raises(NotSymmetricError):
        solver.solve(bad, torch.ones(d, dtype=torch.float64))
    with pytest.raises(NotSymmetricError):
        solver.inverse(bad)


@pytest.mark.parametrize(
    "bad",
    [
        lambda A: A.to(torch.complex128),
        lambda A: A.to_sparse(),
        lambda A: (A > 0),
        lambda A: A.numpy(),
    ],
    ids=["complex", "sparse", "bool", "numpy"],
)
def test_interface_refuses_unusable_tensors_naming_the_fix(bad) -> None:
    A = spd(8, 10.0, seed=2)
    b = torch.ones(8, dtype=torch.float64)
    for name in ("exact", "cg", "thermo"):
        solver = get_solver(name)
        with pytest.raises(UnsupportedInputError, match="A"):
            solver.solve(bad(A), b)
        with pytest.raises(UnsupportedInputError, match="B"):
            solver.solve(A, bad(b))
        if isinstance(bad(b), torch.Tensor):  # a non-tensor x0 may be a backend's state object
            with pytest.raises(UnsupportedInputError, match="x0"):
                solver.solve(A, b, x0=bad(b))
