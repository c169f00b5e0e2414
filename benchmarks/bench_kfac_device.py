"""K-FAC in inverse mode through the simulated published device against the same run on the exact
backend: ``--steps`` (100) training steps of the digits CNN (``digital.train``, K-FAC with its
default inverse mode and intervals), one process, CPU, the two runs interleaved ``--repeats``
times so that drift on a shared machine hits both alike. Target: the device run within 3x of
the exact one (its factor inversions draw the device's covariance readout from its law,
:mod:`thermo.covariance_law`).

Run: python benchmarks/bench_kfac_device.py [--steps 100] [--repeats 3] [--task digits-cnn] [--threads 1]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse  # noqa: E402
import time  # noqa: E402

from _timing import print_spreads, record  # noqa: E402

from digital.train import TrainConfig, train  # noqa: E402

TARGET_RATIO = 3.0


def config(task: str, steps: int, solver: str) -> TrainConfig:
    options = {"target_rel_error": 3e-2, "seed": 0} if solver == "thermo" else {}
    return TrainConfig(task=task, optimizer="kfac", lr=0.3, optimizer_options={"damping": 1e-2, "kl_clip": 1e-2,
                       "mode": "inverse"}, solver=solver, solver_options=options, steps=steps, eval_every=0,
                       checkpoint_every=0, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-cnn")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned)")
    args = parser.parse_args()

    times: dict[str, list[float]] = {"exact": [], "thermo": []}
    finals: dict[str, dict] = {}
    for _ in range(args.repeats + 1):  # the first round warms up (data, numba, caches) and is not kept
        for solver in times:
            start = time.perf_counter()
            result = train(config(args.task, args.steps, solver))
            elapsed = time.perf_counter() - start
            if finals.get(solver) is not None:
                times[solver].append(elapsed)
            finals[solver] = result.final
    exact = record(f"{args.steps} K-FAC steps, exact backend", times["exact"])
    thermo = record(f"{args.steps} K-FAC steps, published device", times["thermo"])
    ratio = thermo.median_s / exact.median_s
    print(f"{args.task}, K-FAC inverse mode, {args.steps} steps, published device at a 3e-2 target:")
    for solver, timing in (("exact", exact), ("thermo", thermo)):
        f = finals[solver]
        print(f"  {solver:<7} {timing.median_s:7.2f} s   final train loss {f['train_loss']:.4f}, "
              f"test accuracy {f['test_accuracy']:.4f}")
    print_spreads(THREADS)
    print(f"headline: {args.steps} K-FAC inverse-mode steps on {args.task} through the published device take "
          f"{ratio:.2f}x the exact backend's (target within {TARGET_RATIO:g}x: "
          f"{'met' if ratio <= TARGET_RATIO else 'missed'})")


if __name__ == "__main__":
    main()
