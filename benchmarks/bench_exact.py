"""Exact OU sampling at d = 1024 for 1000 sample times: thermo vs thermox, same problem, same
process, float32 (JAX's default).

thermox (normal-computing/thermox) samples dx = -A (x - b_tx) dt + sqrt(D) dW by diagonalizing
A; ours samples dx = -(A x - b) dt + sqrt(2 kT) dW in the eigenbasis. They are the same process
with b = A b_tx and D = 2 kT I. Run: python benchmarks/bench_exact.py  (needs: pip install thermox)
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
from thermo.exact import sample_ou  # noqa: E402
from thermo.matrices import random_spd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--times", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()

    d, n = args.d, args.times
    a = random_spd(d, 100.0, seed=0).astype(np.float32)
    b_tx = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    b = (a @ b_tx).astype(np.float32)
    x0 = np.zeros(d, dtype=np.float32)
    ts = np.linspace(0.0, 100.0, n).astype(np.float32)
    kT = 0.5

    results = {}
    for name, backend in (("thermo numpy", NumpyBackend()), ("thermo torch-cpu", TorchBackend("cpu"))):
        results[name] = median_time(
            lambda be=backend: sample_ou(a, b, x0, ts, kT=kT, seed=0, backend=be, dtype="float32"),
            repeats=args.repeats, what=name,
        )
    samples = sample_ou(a, b, x0, ts, kT=kT, seed=0, dtype="float32")

    try:
        import jax
        import jax.numpy as jnp
        import thermox
    except ImportError:
        print("thermox is not installed (pip install thermox): printing thermo timings only")
        for name, t in results.items():
            print(f"{name:<20} {t * 1e3:9.1f} ms")
        print_spreads(THREADS)
        print(f"headline: exact OU sampling of d={d}, {n} times takes {results['thermo numpy'] * 1e3:.1f} ms (thermo "
              "numpy; thermox not installed)")
        return
    key = jax.random.PRNGKey(0)
    aj, bj, dj = jnp.asarray(a), jnp.asarray(b_tx), jnp.asarray(2 * kT * np.eye(d, dtype=np.float32))
    x0j, tsj = jnp.asarray(x0), jnp.asarray(ts)

    def run_thermox():
        return thermox.sample(key, tsj, x0j, aj, bj, dj, associative_scan=False).block_until_ready()

    t_tx = median_time(run_thermox, repeats=max(3, args.repeats // 2), what="thermox (scan)")
    tx_samples = np.asarray(run_thermox())

    late = slice(n // 2, None)
    print(f"exact OU sampling, d={d}, {n} sample times, float32, {len(__import__('os').sched_getaffinity(0))} cores")
    print(f"{'implementation':<20} {'time':>10} {'speedup vs thermox':>20}")
    print(f"{'thermox (scan)':<20} {t_tx * 1e3:8.1f} ms {1.0:>19.1f}x")
    for name, t in results.items():
        print(f"{name:<20} {t * 1e3:8.1f} ms {t_tx / t:>19.1f}x")
    x_star = b_tx
    for label, s in (("thermo", samples), ("thermox", tx_samples)):
        err = np.linalg.norm(s[late].mean(0) - x_star) / np.linalg.norm(x_star)
        print(f"  same process, so these should agree: {label:<8} mean of the late samples vs A^-1 b, rel. diff {err:.3f}")
    print_spreads(THREADS)
    best = min(results, key=results.get)
    print(f"headline: exact OU sampling ({best}) is {t_tx / results[best]:.1f}x as fast as thermox, d={d}, {n} times")


if __name__ == "__main__":
    main()
