"""Layer shapes from real models, and step graphs whose durations add up as the costing says."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cosim.schedule import project, simulate
from cosim.system import SystemSpec
from cosim.shapes import LayerShape, ModelShape, WorkloadError
from cosim.step_graphs import StepCoster, StepModel, step_pattern
from digital.tasks import build_task


def shape_of(task: str, batch: int = 8) -> ModelShape:
    t = build_task(task, seed=0)
    inputs = t.train.subset(torch.arange(batch)).inputs
    return ModelShape.from_model(t.model, inputs, name=task)


def test_shapes_of_the_built_in_models() -> None:
    mlp = shape_of("digits-mlp")
    assert [(l.d_in, l.d_out, l.positions) for l in mlp.layers] == [(64, 32, 1), (32, 10, 1)]
    assert mlp.batch_size == 8 and mlp.output_dim == 10 and mlp.other_params == 0
    cnn = shape_of("digits-cnn")
    conv = cnn.layers[0]
    assert conv.d_in == 1 * 3 * 3 and conv.positions == 8 * 8  # padded 3x3 on 8x8
    vit = shape_of("digits-vit")
    assert {l.positions for l in vit.layers if "attn" in l.name} == {16}  # 4x4 patches of 2x2
    assert vit.other_params > 0  # LayerNorms and the position embedding are first-order
    assert vit.n_params == sum(p.numel() for p in build_task("digits-vit").model.parameters())


def coster(method: str = "kfac", **step: object) -> tuple[ModelShape, SystemSpec, StepModel]:
    shape = ModelShape((LayerShape("a", 256, 256), LayerShape("b", 256, 10, positions=4)), batch_size=128, output_dim=10)
    return shape, SystemSpec.default(), StepModel(method=method, **step)


def test_a_first_order_step_is_the_sum_of_its_gpu_phases() -> None:
    shape, system, model = coster("adam")
    c = StepCoster(shape, system, model)
    expected = sum(c.gpu_s(c.forward(l)) + c.gpu_s(c.backward(l)) for l in shape.layers) + c.gpu_s(c.update())
    sched = simulate(step_pattern(shape, system, model))
    assert sched.makespan_s == pytest.approx(expected, rel=1e-12)


def test_digital_kfac_pays_its_inversions_once_per_pattern() -> None:
    shape, system, model = coster("kfac", inverse_on="gpu", inv_update_steps=5)
    c = StepCoster(shape, system, model)
    pattern = step_pattern(shape, system, model)
    assert len(pattern) == 5
    first, second = (simulate([g]).makespan_s for g in pattern[:2])
    assert first - second == pytest.approx(sum(c.gpu_s(c.invert(l)) for l in shape.layers), rel=1e-9)


def test_analog_inversions_use_the_timing_model_and_run_in_parallel_on_chips() -> None:
    shape, system, model = coster("kfac", inverse_on="analog", inv_update_steps=1)
    c = StepCoster(shape, system, model)
    graph = step_pattern(shape, system, model)[0]
    expected_analog = 0.0
    for l in shape.layers:
        for d in (l.dim_a, l.dim_g):
            t = c.analog_inverse(d)
            expected_analog += t.equilibrate_s + t.window_s + t.readout_s
    one = simulate([graph], {"analog": 1})
    many = simulate([graph], {"analog": 4})
    assert one.busy_s["analog"] == pytest.approx(expected_analog, rel=1e-12)
    assert many.busy_s["analog"] == pytest.approx(expected_analog, rel=1e-12)
    assert many.makespan_s <= one.makespan_s
    assert {r.phase for r in one.critical_path()} & {"analog", "program", "readback"}


def test_tngd_overlaps_the_next_gradient_with_the_relaxation() -> None:
    shape = ModelShape((LayerShape("a", 16, 8), LayerShape("b", 8, 4)), batch_size=4, output_dim=4)
    system = SystemSpec.default()
    serial = project(step_pattern(shape, system, StepModel(method="tngd", overlap=False)), 50)
    overlapped = project(step_pattern(shape, system, StepModel(method="tngd", overlap=True)), 50)
    assert overlapped.time_per_step_s < serial.time_per_step_s
    assert overlapped.phase_s["analog"] == pytest.approx(serial.phase_s["analog"], rel=1e-12)


def test_assumptions_name_every_figure_used() -> None:
    shape, system, model = coster("kfac", inverse_on="analog")
    a = model.assumptions(system)
    assert a["gpu"] == system.gpu.name and a["link.bandwidth_bps"] == system.device.link.bandwidth_bps
    assert a["step.factor_condition_number"] == model.factor_condition_number


def test_bad_descriptions_are_named() -> None:
    with pytest.raises(WorkloadError, match="method"):
        StepModel(method="lbfgs")
    with pytest.raises(WorkloadError, match="d_in"):
        LayerShape("x", 0, 3)
    with pytest.raises(WorkloadError, match="at least one layer"):
        ModelShape((), 4, 2)
    with pytest.raises(WorkloadError, match="factor_condition_number"):
        dataclasses.replace(StepModel(), factor_condition_number=0.5)


def test_whole_run_projections_compare_methods_with_their_assumptions(tmp_path) -> None:
    from cosim.runs import compare, write_csv

    shape = ModelShape((LayerShape("a", 256, 256), LayerShape("b", 256, 10)), batch_size=128, output_dim=10, name="toy")
    system = SystemSpec.default()
    runs = compare(shape, system, {
        "Adam": (StepModel(method="adam"), 1000),
        "digital K-FAC": (StepModel(method="kfac", inverse_on="gpu"), 600),
        "thermodynamic K-FAC": (StepModel(method="kfac", inverse_on="analog"), 600),
    })
    adam, digital, thermo = runs
    # Adam's steps are cheaper; the time is the step time times the steps (steady regime)
    assert adam.time_per_step_s < digital.time_per_step_s
    assert adam.total_s == pytest.approx(1000 * adam.time_per_step_s, rel=0.01)
    assert "analog" in thermo.phase_s and "analog" not in digital.phase_s
    assert thermo.assumptions["link.bandwidth_bps"] == system.device.link.bandwidth_bps
    assert sum(thermo.critical_phases_s.values()) > 0
    assert digital.energy_j > 0  # board power over the GPU's busy time
    path = write_csv(runs, tmp_path / "runs.csv")
    text = path.read_text()
    assert "assume.gpu" in text and "thermodynamic K-FAC" in text


def test_the_solve_variant_runs_two_device_solves_per_layer_every_step() -> None:
    shape, system, model = coster("kfac", inverse_on="analog", analog_op="solve")
    c = StepCoster(shape, system, model)
    pattern = step_pattern(shape, system, model)
    assert len(pattern) == 1  # the factors are programmed and solved every step
    sched = simulate(pattern, {"analog": 1})
    expected = 0.0
    for l in shape.layers:
        for d, k in ((l.dim_g, l.dim_a), (l.dim_a, l.dim_g)):
            t = c.analog_solve(d, k)
            expected += t.equilibrate_s + t.window_s + t.readout_s
    assert sched.busy_s["analog"] == pytest.approx(expected, rel=1e-12)
    analog_tasks = [r for r in sched.records if r.phase == "analog"]
    assert len(analog_tasks) == 2 * len(shape.layers)


def test_steps_to_target_reads_a_training_history() -> None:
    from cosim.runs import steps_to_target

    history = [{"step": 1, "loss": 2.0}, {"step": 50, "train_loss": 0.5, "test_accuracy": 0.8},
               {"step": 100, "train_loss": 0.1, "test_accuracy": 0.95}]
    assert steps_to_target(history, 0.5) == 50
    assert steps_to_target(history, 0.2) == 100
    assert steps_to_target(history, 0.01) is None
    assert steps_to_target(history, 0.9, metric="test_accuracy") == 100


def test_factor_statistics_follow_their_interval() -> None:
    shape, system, _ = coster()
    model = StepModel(method="kfac", inverse_on="gpu", inv_update_steps=4, factor_update_steps=2)
    c = StepCoster(shape, system, model)
    times = [simulate([g]).makespan_s for g in step_pattern(shape, system, model)]
    factor_and_pass = sum(c.gpu_s(c.factors(l)) + c.gpu_s(c.backward(l)) for l in shape.layers)  # mc: one backward
    assert times[2] - times[1] == pytest.approx(factor_and_pass, rel=1e-9)
    assert times[3] == pytest.approx(times[1], rel=1e-12)
    with pytest.raises(WorkloadError, match="dividing inv_update_steps"):
        StepModel(inv_update_steps=10, factor_update_steps=3)


def test_every_device_task_is_priced_by_thermo_cost() -> None:
    """TNGD's upload, relaxation and read-back are the cost model's phases of one iteration."""
    from thermo import cost

    shape = ModelShape((LayerShape("a", 16, 8), LayerShape("b", 8, 4)), batch_size=4, output_dim=4)
    system = SystemSpec.from_presets(device="paper-2024-tngd")
    graph = step_pattern(shape, system, StepModel(method="tngd", analog_time_tau=20.0))[0]
    t = cost.estimate_tngd_iteration(system.device, n_params=shape.n_params, rank=4 * 4, analog_time_tau=20.0)
    by_name = {task.name: task for task in graph.tasks}
    assert by_name["program_tngd"].duration_s == pytest.approx(t.program_s + t.input_s, rel=1e-12)
    assert by_name["analog_tngd"].duration_s == pytest.approx(20e-6 + t.readout_s, rel=1e-12)
    assert by_name["readback_tngd"].duration_s == pytest.approx(t.transfer_s, rel=1e-12)
    # the paper's arrays at 16 bits over 50 Gb/s, and the gradient
    values = 16 * (16 + 2 * shape.n_params)
    assert by_name["program_tngd"].duration_s == pytest.approx((values + shape.n_params) * 16 / 50e9, rel=1e-12)


def test_resident_factors_are_programmed_once_per_factor_update() -> None:
    shape = ModelShape((LayerShape("a", 16, 8),), batch_size=4, output_dim=8)
    step = StepModel(method="kfac", inverse_on="analog", analog_op="solve", inv_update_steps=4, factor_update_steps=4)
    keeps = SystemSpec.from_presets(n_chips=2, resident_couplings=True)
    forgets = SystemSpec.from_presets(n_chips=2)
    pattern = step_pattern(shape, keeps, step)
    assert len(pattern) == 4
    c = StepCoster(shape, keeps, step)
    couplings = c.analog_solve(8, 17).program_s  # G (8 x 8), programmed on the factor step only
    first, later = ({t.name: t.duration_s for t in g.tasks} for g in (pattern[0], pattern[1]))
    assert first["program_G[a]"] - later["program_G[a]"] == pytest.approx(couplings, rel=1e-12)
    assert later["program_G[a]"] == pytest.approx(c.analog_solve(8, 17, resident=True).input_s, rel=1e-12)
    plain = [{t.name: t.duration_s for t in g.tasks} for g in step_pattern(shape, forgets, step)]
    assert plain[1]["program_G[a]"] == pytest.approx(first["program_G[a]"], rel=1e-12)
