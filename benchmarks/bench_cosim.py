"""Speed of the co-simulation: SimPy events per second, and the wall time to project a long run.

Workload: a 50-layer MLP (width 512, batch 128) trained with thermodynamic K-FAC (factors
inverted on 4 analog chips every 10 steps) on the default system (A100, 50 Gb/s link, published
hardware). Baseline, timed in the same process: simulating every event of the run; the
projection simulates only until the schedule is periodic and extrapolates (tests check that both
give the same totals).

Run: python benchmarks/bench_cosim.py [--steps 50000] [--layers 50] [--full-steps 1000]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse
import sys
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import print_spreads, time_it  # noqa: E402
from cosim import LayerShape, ModelShape, StepModel, SystemSpec, project, simulate, step_pattern  # noqa: E402


class CountingEnvironment(simpy.Environment):
    events = 0

    def step(self) -> None:  # one processed event
        CountingEnvironment.events += 1
        super().step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--layers", type=int, default=50)
    parser.add_argument("--full-steps", type=int, default=1000, help="steps of the every-event baseline")
    parser.add_argument("--repeats", type=int, default=3, help="least timed runs of each projection")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()

    shape = ModelShape(tuple(LayerShape(f"fc{i}", 512, 512) for i in range(args.layers)), batch_size=128, output_dim=512)
    system = SystemSpec.from_presets(n_chips=4)
    pattern = step_pattern(shape, system, StepModel(method="kfac", inverse_on="analog", inv_update_steps=10))
    caps = system.resources()
    tasks_per_pattern = sum(len(g.tasks) for g in pattern)

    simpy.Environment = CountingEnvironment  # type: ignore[misc]  # count events in the baseline
    import cosim.schedule as schedule_module

    schedule_module.simpy.Environment = CountingEnvironment  # type: ignore[misc]
    n_full = args.full_steps - args.full_steps % len(pattern)
    start = time.perf_counter()
    full = simulate(pattern * (n_full // len(pattern)), caps)
    full_s = time.perf_counter() - start
    events = CountingEnvironment.events

    # the every-event baseline runs once (its events are counted); the projections are repeated
    # until their spread is small (_timing.time_it)
    proj_small = project(pattern, n_full, caps)
    proj_small_s = time_it(lambda: project(pattern, n_full, caps), f"projection of {n_full} steps", args.repeats,
                           warmup=0, pause_s=0.0).median_s
    proj = project(pattern, args.steps, caps)
    proj_s = time_it(lambda: project(pattern, args.steps, caps), f"projection of {args.steps} steps", args.repeats,
                     warmup=0, pause_s=0.0).median_s

    print(f"workload: {args.layers} layers x 512, batch 128, thermodynamic K-FAC (inverse every 10 steps, 4 chips)")
    print(f"tasks per step: {tasks_per_pattern / len(pattern):.0f}")
    print()
    print(f"every-event simulation of {n_full} steps: {full_s:.2f} s, {events} SimPy events "
          f"({events / full_s:,.0f} events/s, {len(full.records) / full_s:,.0f} tasks/s)")
    print(f"projection of the same {n_full} steps:     {proj_small_s:.3f} s "
          f"({full_s / proj_small_s:.0f}x faster; makespans {full.makespan_s:.6g} s and {proj_small.makespan_s:.6g} s, "
          f"relative difference {abs(full.makespan_s - proj_small.makespan_s) / full.makespan_s:.1e})")
    print(f"projection of {args.steps} steps:          {proj_s:.3f} s (goal < 5 s); simulated {proj.simulated_steps} steps, "
          f"periodic from repetition {proj.periodic_from_cycle}")
    print(f"projected: {proj.makespan_s:.1f} s of training, {proj.time_per_step_s * 1e3:.2f} ms per step in steady state; "
          f"utilization " + ", ".join(f"{k} {v:.0%}" for k, v in proj.utilization().items()))
    print("(the every-event simulation ran once: its time has no spread)")
    print_spreads(THREADS)
    print(f"headline: projecting {args.steps} steps of {args.layers} layers takes {proj_s:.3f} s (goal < 5 s); "
          f"{events / full_s:,.0f} SimPy events/s")


if __name__ == "__main__":
    main()
