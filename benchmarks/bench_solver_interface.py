"""Overhead of the solver interface (``get_solver("exact")``) over calling torch.linalg directly,
at K-FAC factor sizes, same process, CPU.

What is compared, for d in (64, 256, 1024), float32 and float64, a (d, d) SPD matrix A (a
K-FAC-like covariance M M^T / 2d) and damping 1e-3:

  solve    direct: L = torch.linalg.cholesky(A + damping I); torch.cholesky_solve(B, L), B (d, d//2)
           ours:   get_solver("exact").solve(A, B, damping).x              (input checks on)
           ours:   get_solver("exact", check_inputs=False).solve(A, B, damping).x
  inverse  direct: torch.cholesky_inverse(torch.linalg.cholesky(A + damping I))
           ours:   .inverse(A, damping).inverse, checks on and off

The direct path adds the damping as the backend does (A + damping * eye), so the difference is
what the interface adds: argument and input checks (finiteness, symmetry), cholesky_ex and its
info sync, dtype casts, timing and the diagnostics objects. Overhead = (ours - direct) / direct;
the goal is under 5 %.

Timing: each sample runs a call in a loop long enough to take ~``--sample-ms`` (calibrated on the
direct call); the contenders alternate within every round (order rotating), and the median over
``--repeats`` rounds is reported, so drift of a shared machine cancels in the ratios. A second
table times the interface's pieces alone (per call) to show where an overhead comes from.

Run: python benchmarks/bench_solver_interface.py  [--threads N] [--repeats 21] [--sizes 64 256 1024]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import print_spreads, record  # noqa: E402
from digital.solvers import get_solver  # noqa: E402
from digital.solvers import base as solver_base  # noqa: E402


def calls_per_sample(fn: Callable[[], object], sample_s: float) -> int:
    """How many calls of ``fn`` take about ``sample_s`` (at least one)."""
    for _ in range(3):
        fn()
    n, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.2 * sample_s or n >= 1 << 16:
            break
        n *= 4
    return max(1, round(n * sample_s / max(elapsed, 1e-9)))


def interleaved_per_call(
    fns: dict[str, Callable[[], object]], n: int | dict[str, int], repeats: int, pause_s: float = 0.005,
    label: str = "",
) -> dict[str, float]:
    """Median seconds per call of each ``fn`` (``n`` calls per sample, or ``n[name]``),
    contenders alternating in every round with the order rotating."""
    names = list(fns)
    ns = n if isinstance(n, dict) else {name: n for name in names}
    for name, fn in fns.items():  # warm-up
        for _ in range(min(ns[name], 10)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn = fns[name]
            time.sleep(pause_s)
            start = time.perf_counter()
            for _ in range(ns[name]):
                fn()
            times[name].append((time.perf_counter() - start) / ns[name])
    # each contender's times and spread are kept for print_spreads (a MeasurementWarning if they disagree)
    return {name: record(f"{label} {name}".strip(), ts).median_s for name, ts in times.items()}


def spd(d: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(d, 2 * d, generator=gen, dtype=torch.float64)
    a = m @ m.T / (2 * d)
    return (0.5 * (a + a.T)).to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--sample-ms", type=float, default=20.0, help="target length of one timed sample")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1, pinned by _timing.pin_threads)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sample_s = args.sample_ms / 1e3
    damping = args.damping
    checked, unchecked = get_solver("exact"), get_solver("exact", check_inputs=False)

    print(
        f"solver interface overhead over torch.linalg: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"damping {damping:g}, median of {args.repeats} interleaved rounds of ~{args.sample_ms:g} ms"
    )
    print(f"{'op':<8} {'d':>5} {'dtype':<8} {'direct':>11} {'ours':>11} {'overhead':>9} {'ours, no checks':>16} {'overhead':>9}")
    pieces_rows = []
    for d in args.sizes:
        for dtype_name in args.dtypes:
            dtype = getattr(torch, dtype_name)
            A = spd(d, dtype)
            B = torch.randn(d, d // 2, generator=torch.Generator().manual_seed(1), dtype=dtype)

            def direct_solve(A=A, B=B, d=d, dtype=dtype):
                L = torch.linalg.cholesky(A + damping * torch.eye(d, dtype=dtype))
                return torch.cholesky_solve(B, L)

            def direct_inverse(A=A, d=d, dtype=dtype):
                return torch.cholesky_inverse(torch.linalg.cholesky(A + damping * torch.eye(d, dtype=dtype)))

            x_ref, inv_ref = direct_solve(), direct_inverse()
            assert torch.allclose(checked.solve(A, B, damping).x, x_ref) and torch.allclose(
                checked.inverse(A, damping).inverse, inv_ref
            ), "the interface and the direct path disagree"

            ops = {
                "solve": {
                    "direct": direct_solve,
                    "ours": lambda A=A, B=B: checked.solve(A, B, damping).x,
                    "nocheck": lambda A=A, B=B: unchecked.solve(A, B, damping).x,
                },
                "inverse": {
                    "direct": direct_inverse,
                    "ours": lambda A=A: checked.inverse(A, damping).inverse,
                    "nocheck": lambda A=A: unchecked.inverse(A, damping).inverse,
                },
            }
            per_op = {}
            for op, fns in ops.items():
                n = calls_per_sample(fns["direct"], sample_s)
                t = interleaved_per_call(fns, n, args.repeats, label=f"{op} d={d} {dtype_name}")
                per_op[op] = t
                over = (t["ours"] - t["direct"]) / t["direct"] * 100
                over_nc = (t["nocheck"] - t["direct"]) / t["direct"] * 100
                print(
                    f"{op:<8} {d:>5} {dtype_name:<8} {t['direct'] * 1e6:8.1f} us {t['ours'] * 1e6:8.1f} us "
                    f"{over:>8.1f}% {t['nocheck'] * 1e6:13.1f} us {over_nc:>8.1f}%"
                )

            # the interface's pieces alone, per call (solve; the inverse shares all but the last op)
            eye = torch.eye(d, dtype=dtype)
            pieces = {
                "direct": direct_solve,
                "backend _solve": lambda A=A, B=B: unchecked._solve(A, B, damping, None)[0],
                "public, no checks": ops["solve"]["nocheck"],
                "public, checks": ops["solve"]["ours"],
                "input checks": lambda A=A, B=B: checked._check_matrix(A, B),
                "cholesky": lambda A=A, eye=eye: torch.linalg.cholesky(A + damping * eye),
                "cholesky_ex+info": lambda A=A, eye=eye: bool(torch.linalg.cholesky_ex(A + damping * eye)[1]),
                "diagnostics": lambda A=A, B=B: solver_base.SolveOutput(
                    B, solver_base.SolverDiagnostics("exact", 0.0, _residual_fn=solver_base._solve_residual(A, B, damping, B))
                ),
            }
            ns = {name: calls_per_sample(fn, sample_s / 4) for name, fn in pieces.items()}
            tp = interleaved_per_call(pieces, ns, max(5, args.repeats // 2), label=f"piece d={d} {dtype_name}")
            pieces_rows.append((d, dtype_name, per_op, tp))

    names = list(pieces_rows[0][3])
    print()
    print("where the time goes: solve, per call in us, every piece timed alone (interleaved with the others).")
    print("'backend _solve' is ExactSolver._solve without the public wrapper (cholesky_ex + info sync,")
    print("diagnostics); 'public' adds the wrapper (argument checks, timing, lazy-residual closure) and, with")
    print("checks, the input checks: 'input checks' = square, finite and symmetric A (two products with a")
    print("random probe) and finite B, one host synchronization:")
    widths = [max(len(name), 8) for name in names]
    print(f"{'d':>5} {'dtype':<8} " + " ".join(f"{name:>{w}}" for name, w in zip(names, widths)))
    for d, dtype_name, _, tp in pieces_rows:
        print(f"{d:>5} {dtype_name:<8} " + " ".join(f"{tp[name] * 1e6:>{w}.1f}" for name, w in zip(names, widths)))
    print_spreads(THREADS)
    d, dtype_name, per_op, _ = pieces_rows[-1]
    over = (per_op["solve"]["ours"] - per_op["solve"]["direct"]) / per_op["solve"]["direct"] * 100
    print(f"headline: the solver interface adds {over:.1f}% to a direct torch.linalg solve (d={d}, {dtype_name})")


if __name__ == "__main__":
    main()
