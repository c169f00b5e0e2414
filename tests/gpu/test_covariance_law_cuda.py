"""The device inverse's covariance readout drawn from its law (thermo.covariance_law) on the GPU:
the same routing and moments as on the CPU, and draws whose error has the predicted rms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver
from thermo.matrices import random_spd

pytestmark = pytest.mark.gpu


def _rel(x: object, y: np.ndarray) -> float:
    x = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


@pytest.mark.parametrize("hw", [HardwareSpec.ideal(kT=0.05), HardwareSpec.published()], ids=["ideal", "published"])
def test_the_law_routes_as_on_the_cpu_and_returns_on_the_gpu(device, hw: HardwareSpec) -> None:
    a = random_spd(32, 100.0, seed=3)
    gpu = ThermodynamicSolver(hw, SolverConfig(backend="torch", device=str(device), target_rel_error=0.05), seed=0)
    cpu = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.05), seed=0)
    got, ref = gpu.inverse(torch.as_tensor(a, device=device)), cpu.inverse(a)
    assert got.diagnostics.readout_law and ref.diagnostics.readout_law  # a 5% plan is far above the law's threshold
    assert got.diagnostics.n_samples == ref.diagnostics.n_samples  # host planning on the same realized spectrum
    assert got.diagnostics.predicted_rel_error == pytest.approx(ref.diagnostics.predicted_rel_error, rel=1e-8)
    assert isinstance(got.inverse, torch.Tensor) and got.inverse.device.type == device.type
    m = got.inverse.cpu().numpy()
    assert np.array_equal(m, m.T)
    # estimated_rel_error is a 95% bound: twice it is far in the tail
    assert _rel(got.inverse, np.linalg.inv(a)) < 2 * got.diagnostics.estimated_rel_error


def test_law_draws_on_the_gpu_have_the_predicted_rms_error(device) -> None:
    """24 seeded law draws: E[(err / predicted)^2] = 1 (each a sum of d^2 weighted squared
    Gaussians, so the mean of 24 lies well inside (0.5, 2))."""
    a = random_spd(16, 20.0, seed=5)
    inv = np.linalg.inv(a)
    z2 = []
    for seed in range(24):
        res = ThermodynamicSolver(HardwareSpec.ideal(kT=0.05),
                                  SolverConfig(backend="torch", device=str(device), target_rel_error=0.05), seed=seed).inverse(a)
        assert res.diagnostics.readout_law
        z2.append((_rel(res.inverse, inv) / res.diagnostics.predicted_rel_error) ** 2)
    assert 0.5 < np.mean(z2) < 2.0
