"""The discrete-event step model against hand-computed schedules, and the periodic projection
against simulating every event."""

from __future__ import annotations

import math
import time

import pytest

from cosim.schedule import ScheduleError, StepGraph, Task, project, simulate


def step(*tasks: Task, name: str = "") -> StepGraph:
    return StepGraph(tuple(tasks), name)


def test_a_serial_step_takes_the_sum_of_its_phases() -> None:
    s = simulate([step(Task("forward", 1.0), Task("backward", 2.0, deps=("forward",)), Task("update", 0.5, deps=("backward",)))])
    assert s.makespan_s == pytest.approx(3.5)
    assert [r.name for r in s.critical_path()] == ["forward", "backward", "update"]
    assert sum(r.duration_s for r in s.critical_path()) == pytest.approx(s.makespan_s)
    assert s.utilization() == {"gpu": pytest.approx(1.0)}


def test_overlap_gives_the_longest_path() -> None:
    # gpu: a (1) then c (1, after a); link: b (2.5, independent); d after b and c
    s = simulate([step(Task("a", 1.0), Task("b", 2.5, resource="link"), Task("c", 1.0, deps=("a",)),
                       Task("d", 0.5, deps=("b", "c")))])
    assert s.makespan_s == pytest.approx(3.0)  # max(1 + 1, 2.5) + 0.5
    assert [r.name for r in s.critical_path()] == ["b", "d"]
    util = s.utilization()
    assert util["gpu"] == pytest.approx(2.5 / 3.0) and util["link"] == pytest.approx(2.5 / 3.0)


def test_a_resource_serializes_its_tasks_and_capacity_runs_them_together() -> None:
    graph = step(Task("x", 2.0, resource="analog"), Task("y", 3.0, resource="analog"), Task("z", 1.0, resource="analog"))
    one = simulate([graph])
    assert one.makespan_s == pytest.approx(6.0)
    assert [r.name for r in sorted(one.records, key=lambda r: r.start_s)] == ["x", "y", "z"]  # listed order
    assert [r.name for r in one.critical_path()] == ["x", "y", "z"]  # each waited for the previous
    two = simulate([graph], {"analog": 2})
    assert two.makespan_s == pytest.approx(3.0)  # x and y together, z after x
    assert two.utilization()["analog"] == pytest.approx(6.0 / (2 * 3.0))
    three = simulate([graph], {"analog": 3})
    assert three.makespan_s == pytest.approx(3.0)


def tngd_like(delay: bool) -> StepGraph:
    """GPU gradient, upload, analog relaxation, read-back, update. With ``delay`` the next
    gradient starts from the parameters before the update (it overlaps the relaxation)."""
    grad_deps = ("prev:upload",) if delay else ("prev:update",)
    return step(
        Task("grad", 1.0, deps=grad_deps, phase="gradient"),
        Task("upload", 0.2, resource="link", deps=("grad",), phase="transfer"),
        Task("relax", 1.5, resource="analog", deps=("upload",), phase="analog"),
        Task("read", 0.1, resource="link", deps=("relax",), phase="transfer"),
        Task("update", 0.05, deps=("read",), phase="update"),
    )


def test_steps_chain_through_previous_step_dependencies() -> None:
    serial = simulate([tngd_like(False)] * 4)
    assert serial.makespan_s == pytest.approx(4 * 2.85)
    overlapped = simulate([tngd_like(True)] * 4)
    # the next gradient and upload (1.2) hide under the relaxation: the analog device is the
    # bottleneck and the steady period is its 1.5 per step
    ends = overlapped.step_ends_s
    assert ends[3] - ends[2] == pytest.approx(1.5)
    assert overlapped.utilization()["analog"] > 0.7
    assert overlapped.makespan_s < serial.makespan_s
    assert overlapped.phase_s["analog"] == pytest.approx(4 * 1.5)
    assert overlapped.critical_phases_s()["analog"] == pytest.approx(4 * 1.5)


def kfac_pattern(layers: int, invert_every: int) -> list[StepGraph]:
    """Forward/backward on the GPU, per-layer factor upload, inversion on a pool of chips and
    read-back every ``invert_every`` steps, preconditioning on the GPU."""
    steps = []
    for k in range(invert_every):
        tasks = [Task("forward", 0.3, deps=("prev:update",)), Task("backward", 0.6, deps=("forward",))]
        pre = []
        for i in range(layers):
            if k == 0:
                tasks += [
                    Task(f"up{i}", 0.05 + 0.01 * i, resource="link", deps=("backward",), phase="transfer"),
                    Task(f"inv{i}", 0.4 + 0.1 * i, resource="analog", deps=(f"up{i}",), phase="analog", energy_j=1e-3),
                    Task(f"down{i}", 0.02, resource="link", deps=(f"inv{i}",), phase="transfer"),
                ]
                deps = ("backward", f"down{i}")
            else:
                deps = ("backward",)
            tasks.append(Task(f"pre{i}", 0.03, deps=deps, phase="precondition"))
            pre.append(f"pre{i}")
        tasks.append(Task("update", 0.01, deps=tuple(pre)))
        steps.append(StepGraph(tuple(tasks), f"step{k}"))
    return steps


@pytest.mark.parametrize("n_steps", [7, 40, 123])
def test_projection_equals_simulating_every_event(n_steps: int) -> None:
    pattern = kfac_pattern(layers=4, invert_every=3)
    caps = {"analog": 2}
    full = simulate((pattern * (n_steps // 3 + 1))[:n_steps], caps)
    proj = project(pattern, n_steps, caps)
    assert proj.makespan_s == pytest.approx(full.makespan_s, rel=1e-12)
    assert proj.energy_j == pytest.approx(full.energy_j, rel=1e-12)
    for key, value in full.busy_s.items():
        assert proj.busy_s[key] == pytest.approx(value, rel=1e-12)
    for key, value in full.phase_s.items():
        assert proj.phase_s[key] == pytest.approx(value, rel=1e-12)
    if n_steps >= 40:
        assert proj.simulated_steps < n_steps and proj.periodic_from_cycle is not None


def test_projection_of_a_long_run_is_fast() -> None:
    pattern = kfac_pattern(layers=50, invert_every=10)
    start = time.perf_counter()
    proj = project(pattern, 50_000, {"analog": 4})
    elapsed = time.perf_counter() - start
    assert proj.simulated_steps <= 100 and elapsed < 20  # the benchmark script reports the time
    assert proj.makespan_s == pytest.approx(proj.sample.makespan_s + (50_000 - proj.simulated_steps) / 10 * proj.period_s)
    assert 0 < proj.utilization()["gpu"] <= 1


def test_invalid_graphs_are_named() -> None:
    with pytest.raises(ScheduleError, match="unknown task 'b'"):
        step(Task("a", 1.0, deps=("b",)))
    with pytest.raises(ScheduleError, match="cycle a -> b -> a"):
        step(Task("a", 1.0, deps=("b",)), Task("b", 1.0, deps=("a",)))
    with pytest.raises(ScheduleError, match="duplicate task names \\['a'\\]"):
        step(Task("a", 1.0), Task("a", 2.0))
    with pytest.raises(ScheduleError, match="duration_s"):
        Task("a", -1.0)
    with pytest.raises(ScheduleError, match="duration_s"):
        Task("a", math.nan)
    with pytest.raises(ScheduleError, match="capacity of resource 'analog'"):
        simulate([step(Task("a", 1.0, resource="analog"))], {"analog": 0})
    with pytest.raises(ScheduleError, match="does not have"):
        simulate([step(Task("a", 1.0)), step(Task("b", 1.0, deps=("prev:zzz",)))])
