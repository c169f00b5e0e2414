"""A device inverse against one float64 eigh: ``ThermodynamicSolver.inverse`` of a d x d K-FAC-like
factor at a 3e-2 target on the published hardware, timed against ``numpy.linalg.eigh`` of the same
matrix in the same process (d = 64, 256, 1024; the target is within 20x).

The inverse draws the device's covariance readout from its closed-form law
(:mod:`thermo.covariance_law`: one eigendecomposition, O(d^2) moments, one rotation) wherever it
is declared accurate, which a 3e-2 target is by far; ``--with-path`` also times the reading-by-
reading path (``closed_form=False``, capped at ``max_samples``: slow, seconds per call).
Run: python benchmarks/bench_inverse.py [--sizes 64 256 1024] [--condition 1000] [--threads 1]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
from _timing import print_spreads, time_it  # noqa: E402

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver, ThermoWarning  # noqa: E402
from thermo.matrices import random_spd  # noqa: E402

TARGET_RATIO = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--condition", type=float, default=1e3, help="condition number of the factor (K-FAC factors with damping: 1e2-1e4)")
    parser.add_argument("--target", type=float, default=3e-2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--with-path", action="store_true", help="also time the sampled path (slow)")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()

    hw = HardwareSpec.published()
    rows = []
    for d in args.sizes:
        a = random_spd(d, args.condition, seed=d)
        inv = np.linalg.inv(a)
        solver = ThermodynamicSolver(hw, SolverConfig(target_rel_error=args.target), seed=0)
        result = solver.inverse(a)
        diag = result.diagnostics
        err = float(np.linalg.norm(result.inverse - inv) / np.linalg.norm(inv))
        t_dev = time_it(lambda: solver.inverse(a), f"device inverse d={d}", repeats=args.repeats).median_s
        t_eigh = time_it(lambda: np.linalg.eigh(a), f"numpy eigh d={d}", repeats=args.repeats).median_s
        t_path = None
        if args.with_path:
            path_solver = ThermodynamicSolver(hw, SolverConfig(target_rel_error=args.target, closed_form=False), seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ThermoWarning)  # the capped path warns
                t_path = time_it(lambda: path_solver.inverse(a), f"sampled path d={d}", repeats=1, warmup=0,
                                 max_repeats=2).median_s
        rows.append((d, t_dev, t_eigh, err, diag, t_path))

    print(f"device inverse at a {args.target:g} target on the published hardware vs one float64 numpy.linalg.eigh, "
          f"condition number {args.condition:g}")
    print(f"{'d':>5} {'device':>10} {'eigh':>10} {'ratio':>7} {'law':>4} {'samples':>11} {'analog':>9} "
          f"{'error':>7} {'bound':>7}" + (f" {'path':>9}" if args.with_path else ""))
    for d, t_dev, t_eigh, err, diag, t_path in rows:
        line = (f"{d:>5} {t_dev * 1e3:8.2f}ms {t_eigh * 1e3:8.2f}ms {t_dev / t_eigh:6.1f}x {'yes' if diag.readout_law else 'no':>4} "
                f"{diag.n_samples:>11.3g} {diag.analog_time_s:8.3g}s {err:7.4f} {diag.estimated_rel_error:7.4f}")
        if t_path is not None:
            line += f" {t_path:8.2f}s"
        print(line)
    print_spreads(THREADS)
    ratios = " / ".join(f"{t_dev / t_eigh:.1f}x" for _, t_dev, t_eigh, *_ in rows)
    sizes = " / ".join(str(d) for d, *_ in rows)
    worst = max(t_dev / t_eigh for _, t_dev, t_eigh, *_ in rows)
    print(f"headline: a published-device inverse at a {args.target:g} target takes {ratios} one float64 eigh at "
          f"d = {sizes} (target within {TARGET_RATIO:g}x: {'met' if worst <= TARGET_RATIO else 'missed'})")


if __name__ == "__main__":
    main()
