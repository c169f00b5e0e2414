import numpy as np

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver
from thermo.matrices import random_spd
from thermo.tiling import block_slices


def test_block_slices_cover_the_matrix():
    assert block_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]


def test_tiled_solve_converges_to_the_solution():
    d = 40
    a = random_spd(d, 20.0, seed=0)
    b = np.random.default_rng(1).standard_normal(d)
    hw = HardwareSpec.ideal(kT=1e-14, n_units=16)
    res = ThermodynamicSolver(hw, SolverConfig(target_rel_error=1e-6), seed=0).solve(a, b)
    x_star = np.linalg.solve(a, b)
    assert np.linalg.norm(res.x - x_star) / np.linalg.norm(x_star) < 1e-4
    assert res.diagnostics.n_tiles == 9
    assert any("Gauss-Seidel" in note for note in res.diagnostics.notes)


def test_tiled_inverse():
    d = 12
    a = random_spd(d, 5.0, seed=2)
    hw = HardwareSpec.ideal(kT=1e-14, n_units=5)
    res = ThermodynamicSolver(hw, SolverConfig(target_rel_error=1e-6), seed=0).inverse(a)
    inv = np.linalg.inv(a)
    assert np.linalg.norm(res.inverse - inv) / np.linalg.norm(inv) < 1e-4
