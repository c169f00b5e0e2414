"""Calibration mode: the roofline fitted to the real digital K-FAC path timed on this machine.

Timings come from a shared, noisy machine: tolerances are factors, not percents. The roofline is
a coarse model of CPU kernels (small torch ops cost tens of microseconds of dispatch each, and the
modeled kernel counts are a convention), so "calibrated" means within a small factor per phase.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import pytest
import torch

from cosim.calibration import (
    PHASES,
    CalibrationReport,
    calibrate_from_training,
    calibrate_from_training_runs,
    measure_kfac_phases,
    measure_machine,
    phase_work,
)
from cosim.roofline import CalibrationWarning, RooflineError, RooflineModel, cpu_spec
from cosim.system import GPUSpec, SystemSpec, SystemSpecError
from cosim.shapes import LayerShape, ModelShape
from cosim.step_graphs import StepCoster, StepModel
from digital.models import MLP
from digital.tasks import build_task

BATCH = 64


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: multi-threaded timings swing widely when other processes share the
    two cores of the test machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def batch_of(task: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    t = build_task(task, seed=0)
    batch = t.train.subset(torch.arange(BATCH))
    return t.model, batch.inputs, batch.targets


@pytest.fixture(scope="module")
def machine() -> GPUSpec:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # more repeats than the default: more chances of a run that no neighbour slowed
        return measure_machine(repeats=9)
    finally:
        torch.set_num_threads(threads)


def kfac_step(precision: str = "float32", fisher_type: str = "mc") -> StepModel:
    return StepModel(method="kfac", inverse_on="gpu", inv_update_steps=1, fisher_type=fisher_type,
                     precision=precision)


# --- the machine ------------------------------------------------------------------------------
def test_measure_machine_gives_positive_finite_peaks(machine: GPUSpec) -> None:
    assert machine.name == "this machine (cpu)"
    for value in (machine.peak("float32"), machine.peak("float64"), machine.memory_bandwidth_bps):
        assert math.isfinite(value) and value > 0
    assert machine.peak("float64") == pytest.approx(machine.peak("float32") / 2)
    # one core does between a GFLOP/s and a few TFLOP/s and streams 0.1 to 1000 GB/s
    assert 1e9 < machine.peak("float32") < 5e12 and 1e8 < machine.memory_bandwidth_bps < 1e12
    assert 0 < machine.launch_overhead_s < 1e-3
    assert machine.compute_efficiency == machine.memory_efficiency == 1.0
    assert "matmul" in machine.source and "torch.add" in machine.source and "1 thread(s)" in machine.source


def test_measure_machine_rejects_bad_arguments() -> None:
    with pytest.raises(RooflineError, match="precision 'bfloat16'"):
        measure_machine("bfloat16")
    with pytest.raises(RooflineError, match="size"):
        measure_machine(size=0)
    with pytest.raises(RooflineError, match="repeats"):
        measure_machine(repeats=0, size=8, n_elements=8)


def test_measure_machine_in_float64_states_the_float32_peak_as_twice() -> None:
    spec = measure_machine("float64", size=128, n_elements=2**16, repeats=3)
    assert spec.peak("float32") == pytest.approx(2 * spec.peak("float64"))
    assert "float32 peak assumed twice" in spec.source


# --- the modeled work -------------------------------------------------------------------------
def test_phase_work_is_the_step_costers_sums() -> None:
    model, inputs, _ = batch_of("digits-cnn")
    shape = ModelShape.from_model(model, inputs)
    system = SystemSpec.default()
    for fisher_type, columns in (("mc", 1), ("type-2", shape.output_dim), ("empirical", 0)):
        step = kfac_step(fisher_type=fisher_type)
        c = StepCoster(shape, system, step)
        work = phase_work(shape, step, c)
        assert set(work) == set(PHASES)
        grad = sum(c.forward(l) + c.backward(l) + c.backward(l).scaled(columns) for l in shape.layers)
        expected = {
            "gradient_s": grad,
            "factors_s": sum(c.factors(l) for l in shape.layers),
            "precondition_s": sum(c.invert(l) + c.precondition(l) for l in shape.layers),
            "update_s": c.update(),
        }
        for phase, w in expected.items():
            got = work[phase]
            assert (got.flops, got.bytes, got.kernels, got.precision) == (w.flops, w.bytes, w.kernels, w.precision)
        # the GPU only builds the coster: the counts are the same for any GPU
        assert phase_work(shape, step, system.gpu) == work == phase_work(shape, step)
    # no inversion on a step that only preconditions
    step = kfac_step()
    c = StepCoster(shape, system, step)
    assert phase_work(shape, step, invert=False)["precondition_s"].flops == sum(
        c.precondition(l).flops for l in shape.layers
    )


def test_phase_work_by_hand_for_the_digits_mlp() -> None:
    model, inputs, _ = batch_of("digits-mlp")
    shape = ModelShape.from_model(model, inputs)
    first = shape.layers[0]
    assert (first.d_in, first.d_out, first.positions) == (64, 32, 1)
    coster = StepCoster(shape, SystemSpec.default(), kfac_step())
    b, r = BATCH, first.positions
    assert coster.forward(first).flops == 2 * b * r * first.d_out * (first.d_in + 1)
    work = phase_work(shape, kfac_step(), coster)
    # forward (2 B R d_out d_a) + backward (twice that) + one mc backward (twice again), per layer
    assert work["gradient_s"].flops == sum(
        5 * 2 * b * l.positions * l.d_out * (l.d_in + 1) for l in shape.layers
    )
    assert work["gradient_s"].kernels == 5 * len(shape.layers)
    assert work["precondition_s"].kernels == 4 * len(shape.layers)
    assert work["update_s"].bytes == 3 * 4 * shape.n_params  # K-FAC: 2 reads + 1 write in float32


def test_phase_work_rejects_what_it_does_not_model() -> None:
    model, inputs, _ = batch_of("digits-mlp")
    shape = ModelShape.from_model(model, inputs)
    with pytest.raises(RooflineError, match="method must be 'kfac'"):
        phase_work(shape, StepModel(method="adam"))
    with pytest.raises(RooflineError, match="inverse_on 'gpu'"):
        phase_work(shape, StepModel(method="kfac", inverse_on="analog"))
    other = StepCoster(shape, SystemSpec.default(), kfac_step(fisher_type="empirical"))
    with pytest.raises(RooflineError, match="another model shape or step"):
        phase_work(shape, kfac_step(), other)
    with pytest.raises(RooflineError, match="GPUSpec, a SystemSpec or a StepCoster"):
        phase_work(shape, kfac_step(), "A100")  # type: ignore[arg-type]


# --- the real K-FAC path ----------------------------------------------------------------------
def test_measure_kfac_phases_times_every_phase_and_leaves_the_model_alone() -> None:
    model, inputs, targets = batch_of("digits-mlp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seconds = measure_kfac_phases(model, inputs, targets, steps=3, warmup=1)
    assert list(seconds) == list(PHASES)
    assert all(math.isfinite(s) and 0 < s < 1.0 for s in seconds.values())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(not m._forward_hooks for m in model.modules())


def test_measure_kfac_phases_refuses_options_that_change_the_phases() -> None:
    model, inputs, targets = batch_of("digits-mlp")
    with pytest.raises(RooflineError, match="inv_update_steps=1"):
        measure_kfac_phases(model, inputs, targets, inv_update_steps=10)
    with pytest.raises(RooflineError, match="solver='exact'"):
        measure_kfac_phases(model, inputs, targets, solver="cg")
    with pytest.raises(RooflineError, match="eigenbasis"):
        measure_kfac_phases(model, inputs, targets, damping_mode="eigenbasis")
    with pytest.raises(RooflineError, match="steps"):
        measure_kfac_phases(model, inputs, targets, steps=0)


# --- calibration ------------------------------------------------------------------------------
def check_report(report: CalibrationReport, machine: GPUSpec, per_phase: float, per_step: float) -> None:
    assert report.before == machine
    after = report.after
    assert 0 < after.compute_efficiency <= 1 and 0 < after.memory_efficiency <= 1
    assert after.peak_flops == machine.peak_flops and after.memory_bandwidth_bps == machine.memory_bandwidth_bps
    model = RooflineModel(after)
    for key, measured in report.measured_s.items():
        assert report.predicted_after_s[key] == pytest.approx(model.time_s(report.work[key]))
        ratio = report.predicted_after_s[key] / measured
        assert 1 / per_phase < ratio < per_phase, f"{key}: predicted / measured = {ratio:.2f}\n{report.table()}"
    for run, (measured, _, predicted) in report.step_totals_s().items():
        ratio = predicted / measured
        assert 1 / per_step < ratio < per_step, f"{run} step: predicted / measured = {ratio:.2f}\n{report.table()}"


def test_calibration_on_the_digits_mlp(machine: GPUSpec) -> None:
    model, inputs, targets = batch_of("digits-mlp")
    with warnings.catch_warnings():
        # four phases, three parameters, nothing memory-bound: the memory efficiency may be free
        warnings.simplefilter("ignore", CalibrationWarning)
        report = calibrate_from_training(model, inputs, targets, machine=machine, steps=7)
    assert list(report.measured_s) == list(PHASES) and report.runs == ("",)
    # Measured on this machine (1 thread): every phase within ~1.35x of the fit, the step within
    # ~5%. The factors asserted leave room for a noisy neighbour.
    check_report(report, machine, per_phase=3.0, per_step=2.0)
    table = report.table()
    assert all(p in table for p in PHASES) and "step" in table and "compute_efficiency" in table


def test_calibration_pooled_over_mlp_cnn_and_a_wide_mlp(machine: GPUSpec) -> None:
    runs, labels = [], []
    for task in ("digits-mlp", "digits-cnn"):
        runs.append(batch_of(task))
        labels.append(task)
    _, inputs, targets = runs[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        runs.append((MLP(64, [256, 256], 10), inputs, targets))  # compute-heavier phases
    labels.append("wide-mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        report = calibrate_from_training_runs(runs, machine=machine, labels=labels, steps=7)
    assert report.runs == tuple(labels) and len(report.measured_s) == 3 * len(PHASES)
    # Measured here: phases within 0.5x to 2.5x (worst: the small MLP's update, one modeled kernel
    # for a few tiny torch ops, and the update's Adam-like byte count, 6 arrays where K-FAC's
    # update touches 3), steps within 0.6x to 1.4x. A single efficiency pair and overhead cannot
    # fit every kernel of a CPU: the tolerance is a factor of 3 per phase, 2 per step.
    check_report(report, machine, per_phase=3.0, per_step=2.0)
    # the wide layers make some phase compute-bound after the fit
    model = RooflineModel(report.after)
    assert any(model.bound(w) == "compute" for w in report.work.values())


def test_an_unconstrained_efficiency_warns_and_the_report_still_comes(machine: GPUSpec) -> None:
    model, inputs, targets = batch_of("digits-mlp")
    # a bandwidth no kernel gets near: the memory term never dominates
    fast_memory = machine.replace(memory_bandwidth_bps=1e18)
    with pytest.warns(CalibrationWarning, match="memory_efficiency"):
        report = calibrate_from_training(model, inputs, targets, machine=fast_memory, steps=2, warmup=1)
    assert isinstance(report, CalibrationReport) and report.before == fast_memory


def test_calibration_rejects_bad_runs() -> None:
    spec = cpu_spec(1e11, 1e10, launch_overhead_s=1e-6)
    model, inputs, targets = batch_of("digits-mlp")
    with pytest.raises(RooflineError, match="at least one"):
        calibrate_from_training_runs([], machine=spec)
    with pytest.raises(RooflineError, match="labels must name"):
        calibrate_from_training_runs([(model, inputs, targets)], machine=spec, labels=["a", "b"])
    with pytest.raises(RooflineError, match="run 0 must be"):
        calibrate_from_training_runs([(model, inputs)], machine=spec)  # type: ignore[list-item]
    with pytest.raises(RooflineError, match="machine must be a GPUSpec"):
        calibrate_from_training_runs([(model, inputs, targets)], machine="cpu")  # type: ignore[arg-type]
    with pytest.raises(RooflineError, match="float32 or all float64"):
        calibrate_from_training(model.to(torch.float16), inputs, targets, machine=spec)


def test_phase_timings_warn_when_the_machine_is_busy(monkeypatch):
    import warnings

    from cosim import roofline
    from cosim.calibration import measure_kfac_phases
    from cosim.roofline import MeasurementWarning

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    monkeypatch.setattr(roofline, "_load_average", lambda: 99.0)  # far more runnable tasks than cores
    with pytest.warns(MeasurementWarning, match="K-FAC steps timed for calibration.*load 99.0"):
        measure_kfac_phases(model, x, y, steps=3, warmup=1)
    monkeypatch.setattr(roofline, "_load_average", lambda: 0.0)
    monkeypatch.setattr(roofline, "relative_spread", lambda times: 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MeasurementWarning)
        measure_kfac_phases(model, x, y, steps=3, warmup=1)


def test_an_anchor_makes_the_projected_step_the_measured_one_and_scales_every_kernel():
    from cosim.calibration import anchor_to_step
    from cosim.runs import project_run

    shape = ModelShape((LayerShape("a", 512, 512, 16), LayerShape("b", 512, 10)), batch_size=64, output_dim=10)
    system = SystemSpec.from_presets(gpu="V100")
    same_shape, anchored, anchor = anchor_to_step(shape, system, 0.25, source="a published step")
    assert same_shape == shape and anchor.modelled_share == pytest.approx(anchor.modelled_step_s / 0.25)
    adam = project_run(shape, anchored, StepModel(method="adam"), 1000)
    assert adam.time_per_step_s == pytest.approx(0.25, rel=1e-9)
    assert anchor.modelled_step_s == pytest.approx(project_run(shape, system, StepModel(method="adam"), 1000).time_per_step_s)
    assert anchored.gpu.anchor_scale == pytest.approx(0.25 / anchor.modelled_step_s) and "a published step" in anchored.gpu.source
    # the digital K-FAC step inherits the same scale; an anchored system re-anchors from scratch
    kfac = StepModel(method="kfac", inverse_on="gpu")
    ratio = project_run(shape, anchored, kfac, 1000).total_s / project_run(shape, system, kfac, 1000).total_s
    assert ratio == pytest.approx(anchor.scale, rel=1e-9)
    assert anchor_to_step(shape, anchored, 0.25)[2].scale == pytest.approx(anchor.scale)
    with pytest.raises(SystemSpecError, match="measured_step_s"):
        anchor_to_step(shape, system, 0.0)


def test_a_residual_anchor_adds_the_missing_seconds_to_every_method_and_leaves_the_kernels_alone():
    from cosim.calibration import anchor_to_step
    from cosim.runs import project_run

    shape = ModelShape((LayerShape("a", 512, 512, 16), LayerShape("b", 512, 10)), batch_size=64, output_dim=10)
    system = SystemSpec.from_presets(gpu="V100")
    adam, kfac = StepModel(method="adam"), StepModel(method="kfac", inverse_on="gpu")
    modelled = project_run(shape, system, adam, 1000).time_per_step_s
    anchored_shape, same_system, anchor = anchor_to_step(shape, system, modelled + 0.1, mode="residual")
    assert same_system.gpu.anchor_scale == 1.0 and anchor.mode == "residual"
    assert anchored_shape.unmodelled_step_s == pytest.approx(0.1) and anchor.residual_s == pytest.approx(0.1)
    assert project_run(anchored_shape, system, adam, 1000).time_per_step_s == pytest.approx(modelled + 0.1, rel=1e-9)
    # K-FAC pays the same 0.1 s per step, plus the share its one extra backward pass (MC Fisher)
    # repeats, and nothing more: its own kernels keep their roofline times
    from cosim.step_graphs import UNMODELLED_BACKWARD_SHARE

    before, after = (project_run(s, system, kfac, 1000) for s in (shape, anchored_shape))
    assert after.time_per_step_s - before.time_per_step_s == pytest.approx(0.1 * (1 + UNMODELLED_BACKWARD_SHARE), rel=1e-9)
    assert after.phase_s["unmodelled"] == pytest.approx(100.0, rel=1e-9)  # 1000 steps of 0.1 s
    assert after.phase_s["curvature"] - before.phase_s["curvature"] == pytest.approx(100.0 * UNMODELLED_BACKWARD_SHARE)
    with pytest.raises(SystemSpecError, match="residual anchor cannot remove time"):
        anchor_to_step(shape, system, modelled / 2, mode="residual")
    with pytest.raises(SystemSpecError, match="anchor mode"):
        anchor_to_step(shape, system, 0.25, mode="stretch")
