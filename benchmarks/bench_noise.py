"""Time to draw one Euler-Maruyama step's noise (default 1024 x 64 = 65,536 standard normals) into a
preallocated buffer: CounterNormalRNG against numpy's Generator and torch.randn, same process.

Median of many repeats after a warm-up (the first call of CounterNormalRNG compiles or loads the
numba cache). Run: python benchmarks/bench_noise.py [--n 65536] [--repeats 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import sample_times  # noqa: E402
from thermo.noise import CounterNormalRNG  # noqa: E402


def median_us(fn, repeats: int, warmup: int = 50) -> float:
    """Median wall time of ``fn()`` in microseconds.

    Sleeps first so that the spinning OpenMP workers of the previous contender (numba's, torch's
    and OpenBLAS's pools are separate) have gone idle and do not steal the two cores.
    """
    time.sleep(0.5)
    return statistics.median(sample_times(fn, repeats, warmup, pause_s=0.0)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024 * 64, help="normals per call (default 65536)")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    n, reps = args.n, args.repeats
    print(f"{n} standard normals per call; median of {reps} calls; numba threads: {numba.get_num_threads()}, "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'dtype':<8} {'CounterNormalRNG':>17} {'numpy Generator':>16} {'torch.randn':>12} {'numpy/ours':>11} {'torch/ours':>11}")
    for dtype in ("float32", "float64"):
        rng = CounterNormalRNG(0)
        buf = np.empty(n, dtype=dtype)
        t_ours = median_us(lambda: rng.fill(buf), reps)

        gen = np.random.default_rng(0)
        t_np = median_us(lambda: gen.standard_normal(out=buf, dtype=dtype), reps)

        tgen = torch.Generator().manual_seed(0)
        tbuf = torch.empty(n, dtype=getattr(torch, dtype))
        t_torch = median_us(lambda: torch.randn(n, generator=tgen, out=tbuf), reps)
        print(f"{dtype:<8} {t_ours:14.1f} us {t_np:13.1f} us {t_torch:9.1f} us {t_np / t_ours:10.1f}x {t_torch / t_ours:10.1f}x")


if __name__ == "__main__":
    main()
