"""Time to draw one Euler-Maruyama step's noise (default 1024 x 64 = 65,536 standard normals) into a
preallocated buffer: CounterNormalRNG against numpy's Generator and torch.randn, same process.

Median of many repeats after a warm-up (the first call of CounterNormalRNG compiles or loads the
numba cache). Run: python benchmarks/bench_rng.py [--n 65536] [--repeats 2000]
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

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _timing import print_spreads, time_it  # noqa: E402
from thermo.rng import CounterNormalRNG  # noqa: E402


def median_us(fn, what: str, repeats: int, warmup: int = 50) -> float:
    """Median wall time of ``fn()`` in microseconds (``_timing.time_it``, its spread kept).

    Sleeps first so that the spinning OpenMP workers of the previous contender (numba's, torch's
    and OpenBLAS's pools are separate) have gone idle and do not steal the two cores.
    """
    time.sleep(0.5)
    return time_it(fn, what, repeats, warmup, pause_s=0.0, max_repeats=2 * repeats).median_s * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024 * 64, help="normals per call (default 65536)")
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()
    n, reps = args.n, args.repeats
    print(f"{n} standard normals per call; median of {reps} calls; numba threads: {numba.get_num_threads()}, "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'dtype':<8} {'CounterNormalRNG':>17} {'numpy Generator':>16} {'torch.randn':>12} {'numpy/ours':>11} {'torch/ours':>11}")
    ratios = {}
    for dtype in ("float32", "float64"):
        rng = CounterNormalRNG(0)
        buf = np.empty(n, dtype=dtype)
        t_ours = median_us(lambda: rng.fill(buf), f"CounterNormalRNG {dtype}", reps)

        gen = np.random.default_rng(0)
        t_np = median_us(lambda: gen.standard_normal(out=buf, dtype=dtype), f"numpy Generator {dtype}", reps)

        tgen = torch.Generator().manual_seed(0)
        tbuf = torch.empty(n, dtype=getattr(torch, dtype))
        t_torch = median_us(lambda: torch.randn(n, generator=tgen, out=tbuf), f"torch.randn {dtype}", reps)
        print(f"{dtype:<8} {t_ours:14.1f} us {t_np:13.1f} us {t_torch:9.1f} us {t_np / t_ours:10.1f}x {t_torch / t_ours:10.1f}x")
        ratios[dtype] = t_np / t_ours
    print_spreads(THREADS)
    print(f"headline: CounterNormalRNG is {ratios['float32']:.1f}x (float32) and {ratios['float64']:.1f}x (float64) "
          f"as fast as numpy's Generator for {n} normals")


if __name__ == "__main__":
    main()
