"""Kernel calibration: timing the kernel classes, their rates relative to a GEMM, and their use."""

from __future__ import annotations

import pytest

from cosim import SystemSpec
from cosim.kernels import KernelCalibration, KernelTiming, calibrate_kernels, factor_sizes
from cosim.roofline import RooflineError, RooflineModel, cholesky_inverse, eigh, gemm
from cosim.shapes import LayerShape, ModelShape
from cosim.system import SystemSpecError


def _timing(kind: str, size: int, seconds: float) -> KernelTiming:
    work = {"gemm": gemm(size, size, size), "cholesky_inverse": cholesky_inverse(size), "eigh": eigh(size)}[kind]
    return KernelTiming(kind, size, seconds, 0.0, 3, work.flops)


def test_the_relative_rate_is_flops_over_seconds_against_the_gemms_at_the_same_sizes():
    # GEMM 2 d^3 FLOPs in 1 ms and 8 ms; Cholesky inverse d^3 FLOPs in 2 ms and 16 ms: a quarter of the rate
    cal = KernelCalibration((_timing("gemm", 100, 1e-3), _timing("gemm", 200, 8e-3),
                             _timing("cholesky_inverse", 100, 2e-3), _timing("cholesky_inverse", 200, 16e-3)), "test")
    assert cal.relative() == pytest.approx({"cholesky_inverse": 0.25})
    assert cal.sizes == (100, 200) and cal.seconds("gemm", 200) == 8e-3
    assert "| cholesky_inverse | 200 | 16 ms |" in cal.table()
    # one rate per class: the model gives each size its FLOPs at a quarter of the GEMM rate
    assert cal.modelled_s(cal.timings[3]) == pytest.approx(16e-3)


def test_a_gpu_with_a_rate_runs_that_class_slower_and_nothing_else():
    cal = KernelCalibration((_timing("gemm", 100, 1e-3), _timing("cholesky_inverse", 100, 2e-3)), "test", "unit test")
    gpu = SystemSpec.default().gpu.replace(launch_overhead_s=0.0)
    slow = cal.apply(gpu)
    assert slow.kernel_efficiency == {"cholesky_inverse": pytest.approx(0.25)} and "measured on test" in slow.source
    big = 4096  # compute bound, so the compute term is the time
    assert RooflineModel(slow).time_s(cholesky_inverse(big)) == pytest.approx(4 * RooflineModel(gpu).time_s(cholesky_inverse(big)))
    assert RooflineModel(slow).time_s(gemm(big, big, big)) == RooflineModel(gpu).time_s(gemm(big, big, big))
    # a sum of two classes is unclassified (GEMM rate); a sum within a class keeps it
    assert (cholesky_inverse(8) + cholesky_inverse(9)).kind == "cholesky_inverse"
    assert (cholesky_inverse(8) + gemm(8, 8, 8)).kind == ""


def test_kernel_rates_travel_in_a_system_file(tmp_path):
    system = SystemSpec.default()
    system = system.replace(gpu=system.gpu.replace(kernel_efficiency={"eigh": 0.05, "cholesky_inverse": 0.2}))
    again = SystemSpec.load(system.save(tmp_path / "s.toml"))
    assert again.gpu.kernel_efficiency == {"cholesky_inverse": 0.2, "eigh": 0.05}
    with pytest.raises(SystemSpecError, match="unknown kernel class 'qr'"):
        system.gpu.replace(kernel_efficiency={"qr": 0.5})
    with pytest.raises(SystemSpecError, match=r"kernel_efficiency\['eigh'\]"):
        system.gpu.replace(kernel_efficiency={"eigh": 0.0})


def test_calibrate_kernels_times_every_class_at_every_size_and_saves_them(tmp_path):
    shape = ModelShape((LayerShape("a", 31, 16), LayerShape("b", 16, 8, bias=False)), batch_size=4, output_dim=8)
    assert factor_sizes([shape]) == (8, 16, 32)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cal = calibrate_kernels((16, 32), budget_s=0.2)
        assert "1 torch thread(s)" in cal.machine and torch.get_num_threads() == 2  # pinned while timing, then restored
    finally:
        torch.set_num_threads(before)
    assert {(t.kind, t.size) for t in cal.timings} == {(k, d) for k in ("gemm", "cholesky", "cholesky_inverse", "eigh")
                                                       for d in (16, 32)}
    assert all(t.seconds > 0 and t.repeats >= 3 for t in cal.timings) and set(cal.relative()) == {"cholesky", "cholesky_inverse", "eigh"}
    again = KernelCalibration.load(cal.save(tmp_path / "k.json"))
    assert again == cal
    with pytest.raises(RooflineError, match="does not exist"):
        KernelCalibration.load(tmp_path / "none.json")
    with pytest.raises(RooflineError, match="sizes must be positive integers"):
        calibrate_kernels((0,))
    with pytest.raises(RooflineError, match="needs GEMM timings"):
        KernelCalibration((_timing("eigh", 4, 1e-3),), "test")
