"""Batched Euler-Maruyama step at d = 1024 with 64 chains against one GEMM of the same shape and
dtype, timed in the same process (numpy's BLAS). The step is GEMM + fresh Gaussian noise +
input: X <- (I - dt A) X + dt B + sqrt(2 kT dt) Z.

Run: python benchmarks/bench_stepwise.py
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_time, print_spreads  # noqa: E402

from thermo.backends import NumpyBackend, TorchBackend  # noqa: E402
from thermo.matrices import random_spd  # noqa: E402
from thermo.stepwise import StepwiseLangevin  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()
    d, c, n = args.d, args.chains, args.steps
    a = random_spd(d, 100.0, seed=0)
    print(f"Euler-Maruyama step, d={d}, {c} chains; median over {args.repeats} runs of {n} steps")
    print(f"{'dtype':<8} {'variant':<22} {'per step':>10} {'vs GEMM':>9}")
    vs_gemm = {}
    for dtype in ("float32", "float64"):
        np_dtype = np.dtype(dtype)
        m = (np.eye(d) - 0.01 * a).astype(np_dtype)
        x = np.random.default_rng(0).standard_normal((d, c)).astype(np_dtype)
        out = np.empty_like(x)

        def gemm():
            for _ in range(n):
                np.matmul(m, x, out=out)

        t_gemm = median_time(gemm, repeats=args.repeats, what=f"GEMM {dtype}") / n
        print(f"{dtype:<8} {'GEMM (numpy matmul)':<22} {t_gemm * 1e3:8.3f} ms {1.0:>8.2f}x")

        gen = np.random.default_rng(0)
        bh = np.ones((d, c), dtype=np_dtype)

        def naive():
            y = x
            for _ in range(n):
                y = m @ y + 0.01 * bh + 0.1 * gen.standard_normal((d, c), dtype=np_dtype)

        t_naive = median_time(naive, repeats=args.repeats, what=f"naive numpy step {dtype}") / n
        print(f"{dtype:<8} {'naive numpy step':<22} {t_naive * 1e3:8.3f} ms {t_naive / t_gemm:>8.2f}x")

        for name, backend in (("thermo numpy", NumpyBackend()), ("thermo torch-cpu", TorchBackend("cpu"))):
            stepper = StepwiseLangevin(
                a, backend.asarray(bh, dtype), kT=0.5, mass=0.0, dt=0.01, integrator="euler_maruyama",
                backend=backend, dtype=dtype,
            )
            rng = backend.random(0)
            state = {"x": backend.asarray(x, dtype)}

            def run(stepper=stepper, rng=rng, state=state):
                state["x"], _ = stepper.run(state["x"], None, n, 1, rng)

            t = median_time(run, repeats=args.repeats, what=f"{name} {dtype}") / n
            print(f"{dtype:<8} {name:<22} {t * 1e3:8.3f} ms {t / t_gemm:>8.2f}x")
            vs_gemm[(dtype, name)] = t / t_gemm
    print_spreads(THREADS)
    print(f"headline: a thermo numpy Euler-Maruyama step costs {vs_gemm[('float32', 'thermo numpy')]:.2f}x one GEMM "
          f"(float32, d={d}, {c} chains)")


if __name__ == "__main__":
    main()
