"""The matrix-free GGN operator (digital.ggn) against the dense per-example Jacobian on the
digits CNN task, one process, CPU, float32.

Task: ``build_task("digits-cnn")`` (SmallCNN: Conv2d 1->8 3x3, Linear 512->32, Linear 32->10;
N = 16,826 parameters), the first ``--batch`` (64) training examples, cross-entropy, so
``r = b d_z = 640``. Timed (median of ``--repeats`` after a warm-up, ``time.perf_counter``,
``benchmarks/_timing.median_time``):

* ``adam step``: forward + backward + ``torch.optim.Adam.step`` on a copy of the model (the unit).
* ``dense J_f``: ``per_example_jacobian`` (``(b, d_z, N)``, vmap over jacrev).
* ``dense J_f + Gram``: the above, mixed with ``L`` into ``U`` (``N x r``) and ``U^T U``.
* ``gram()``: a fresh ``GGNOperator`` (its forward pass included) and its layer-by-layer Gram,
  with the hook consistency check (default) and without.
* ``eigh(K)``: ``torch.linalg.eigh`` of the ``r x r`` Gram.
* ``GGN-vector product``: ``op.matvec(v) = U (U^T v)`` on a fresh operator (jvp pass + vjp
  linearization + pullback), and on a reused one (vjp linearization cached).
* ``woodbury solve``: a fresh operator, its Gram, Cholesky, ``U^T g`` and ``U y``: the
  curvature + solve part of an NGD-Woodbury step.

Before timing, the script prints the relative difference of ``gram()`` and the dense Gram.

Run: python benchmarks/bench_ggn.py [--threads 1] [--repeats 7] [--batch 64]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import median_time, print_spreads, record

from digital.curvature import (
    loss_hessian_factor,
    per_example_jacobian,
    trainable_params,
)
from digital.ggn import GGNOperator, woodbury_solve
from digital.tasks import build_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1 for stable numbers; pinned by _timing.pin_threads)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--damping", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = build_task("digits-cnn", seed=0)
    model = task.model.float()
    x = task.train.inputs[: args.batch].float()
    y = task.train.targets[: args.batch]
    params = trainable_params(model)
    b = x.shape[0]

    # -- contenders --------------------------------------------------------------------------------
    adam_model = copy.deepcopy(model)
    adam = torch.optim.Adam(adam_model.parameters(), lr=1e-3)

    def adam_step() -> None:
        adam.zero_grad()
        F.cross_entropy(adam_model(x), y).backward()
        adam.step()

    def dense_jacobian() -> torch.Tensor:
        return per_example_jacobian(model, params, x)

    def dense_gram() -> torch.Tensor:
        J, z = per_example_jacobian(model, params, x, return_outputs=True)
        L = loss_hessian_factor(z, "cross_entropy")
        U = torch.einsum("bzn,bzk->nbk", J, L).reshape(J.shape[2], -1) / math.sqrt(b)
        return U.mT @ U

    def our_gram(check: bool = True) -> torch.Tensor:
        return GGNOperator(model, x, y, "cross_entropy", check=check).gram()

    op = GGNOperator(model, x, y, "cross_entropy")
    K = op.gram()
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(0))
    op.matvec(v)  # caches the vjp linearization of the reused operator

    def matvec_fresh() -> torch.Tensor:
        return GGNOperator(model, x, y, "cross_entropy").matvec(v)

    def woodbury_fresh() -> torch.Tensor:
        return woodbury_solve(GGNOperator(model, x, y, "cross_entropy"), v, args.damping)

    # -- correctness first ---------------------------------------------------------------------------
    K_dense = dense_gram()
    rel = float((K - K_dense).abs().max() / K_dense.abs().max())
    print(f"digits-cnn, float32, b = {b}, d_z = {op.d_z}, N = {op.n}, r = {op.rank}, threads = {args.threads}")
    print(f"max |gram() - dense U^T U| / max |U^T U| = {rel:.2e}")
    print("per-layer plan (cost model in multiply-adds):")
    for p in op.plan:
        extra = f"  [{p.reason}]" if p.reason else ""
        print(
            f"  {p.module:<6} {p.layer_type:<7} P={p.positions:<3} in={p.d_in:<4} out={p.d_out:<3} "
            f"pairwise={p.cost_pairwise:>13,}  block={p.cost_block:>13,}  -> {p.method}{extra}"
        )

    # -- timings -------------------------------------------------------------------------------------
    timings = {}
    contenders = {
        "adam step (fwd+bwd+step)": adam_step,
        "dense J_f (per_example_jacobian)": dense_jacobian,
        "dense J_f + U + Gram": dense_gram,
        "gram() fresh operator, check on": our_gram,
        "gram() fresh operator, check off": lambda: our_gram(False),
        f"eigh of the {op.rank}x{op.rank} Gram": lambda: torch.linalg.eigh(K),
        "GGN-vector product, fresh operator": matvec_fresh,
        "GGN-vector product, reused operator": lambda: op.matvec(v),
        "woodbury solve, fresh operator": woodbury_fresh,
    }
    for name, fn in contenders.items():
        timings[name] = median_time(fn, repeats=args.repeats, warmup=2, what=name)
    sens = []
    for _ in range(args.repeats):
        fresh = GGNOperator(model, x, y, "cross_entropy", check=False)
        fresh.gram()
        sens.append(fresh.last_gram_stats["sensitivities_s"])
    sens.sort()
    timings[f"  of which: capture fwd + {op.d_z} batched bwd (no check)"] = sens[len(sens) // 2]

    unit = timings["adam step (fwd+bwd+step)"]
    print(f"\n{'operation':<48} {'median ms':>10} {'x adam':>9}")
    for name, t in timings.items():
        print(f"{name:<48} {1e3 * t:>10.3f} {t / unit:>9.2f}")
    record(f"  of which: capture fwd + {op.d_z} batched bwd (no check)", sens)
    print_spreads(THREADS)
    print(
        f"headline: gram() (check on) / (d_z = {op.d_z} x adam step) = "
        f"{timings['gram() fresh operator, check on'] / (op.d_z * unit):.2f}; "
        f"dense J_f + Gram / gram() = {timings['dense J_f + U + Gram'] / timings['gram() fresh operator, check on']:.1f}x"
    )


if __name__ == "__main__":
    main()
