"""One K-FAC step of ours (exact backend) against curvlinops' KFACLinearOperator and
KFACInverseLinearOperator: same model, batch, curvature and damping, same process, CPU.

What is compared, per model (an MLP 784-512-512-10 and a CNN with two Conv2d on 1x28x28 and a
Linear head, cross-entropy, batch 128 of random data, float32):

  (a) curvlinops (the baseline): build ``KFACLinearOperator`` (type-2 factors, KFAC-expand,
      weight and bias joint), wrap it in ``KFACInverseLinearOperator(damping, use_heuristic_damping
      =True)``, compute the gradient (``gradient_and_loss``) and apply the inverse to it. The
      factors and their inversions are computed lazily by that first product, so (a) is
      gradient + factors + inversions + preconditioning, the work of one K-FAC step without
      the parameter update.
  (b) ours: one ``KFAC.step(closure)`` refreshing factors and inverses every step
      (``factor_update_steps=1, inv_update_steps=1, ema_decay=0, kl_clip=None``): gradient,
      curvature pass, factors, inversions, preconditioning and the update.
  (c) ours with the default amortization (``inv_update_steps=10``, EMA 0.95): the mean step of a
      block of 10 steps (one inversion), for information.

Damping: curvlinops' heuristic damping is Martens and Grosse's pi rule, A + pi sqrt(lambda) I and
G + sqrt(lambda)/pi I with pi = sqrt((tr A / dim A) / (tr G / dim G)) and a floor of 1e-8; ours
with ``damping_mode="pi"`` and ``min_damping=1e-8`` is the same rule with the same lambda (bias
column included in A on both sides), so both precondition with the same matrix. Before timing
the script checks that the two preconditioned directions agree (relative difference printed;
~1e-6 in float32 with type-2; with ``--fisher mc`` the two draw different labels and differ).

Timings are medians over ``--repeats`` runs, (a), (b) and (c) interleaved so that drift on a
shared machine hits all three alike. ``speedup`` is (a)/(b): >= 1 means ours is no slower.

Run: python benchmarks/bench_kfac.py  [--threads N] [--repeats 7] [--fisher type-2|mc]
(needs curvlinops: pip install curvlinops-for-pytorch)
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse
import copy
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved_times, print_spreads, record  # noqa: E402
from digital.kfac import KFAC  # noqa: E402


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, pause_s: float = 0.2,
    after: Callable[[str], None] | None = None, label: str = "",
) -> dict[str, float]:
    """Median wall time of each ``fn`` from :func:`_timing.interleaved_times` (the contenders
    alternating in every round, so that slow drift of a shared machine cancels in the ratios)."""
    times = interleaved_times(fns, repeats, warmup, pause_s, after)
    # each contender's times and spread are kept for print_spreads (a MeasurementWarning if they disagree)
    return {name: record(f"{label} {name}".strip(), ts).median_s for name, ts in times.items()}


def make_model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
    if kind == "cnn":  # factors: conv1 A 10, conv2 A 145, fc A 1569; G 16, 32, 10
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )
    raise ValueError(kind)


def curvlinops_direction(model: nn.Module, X: torch.Tensor, y: torch.Tensor, damping: float, fisher: str) -> list[torch.Tensor]:
    """(a): K-FAC inverse applied to the gradient, all of it computed from scratch."""
    from curvlinops import KFACInverseLinearOperator, KFACLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    K = KFACLinearOperator(
        model, nn.CrossEntropyLoss(), params, [(X, y)],
        fisher_type=fisher, kfac_approx="expand", separate_weight_and_bias=False, check_deterministic=False,
    )
    K_inv = KFACInverseLinearOperator(K, damping=damping, use_heuristic_damping=True, min_damping=1e-8)
    grad, _ = K.gradient_and_loss()
    # tensor-list format: one tensor per parameter, shaped like it (a flat vector also works,
    # at the cost of a split and a cat); the first product computes the factors and inverses
    return K_inv @ grad


def make_ours(model: nn.Module, lr: float, damping: float, fisher: str, inv_update_steps: int, ema_decay: float) -> KFAC:
    return KFAC(
        model, lr=lr, damping=damping, kl_clip=None, solver="exact", fisher_type=fisher,
        damping_mode="pi", mode="inverse", min_damping=1e-8,
        factor_update_steps=1, inv_update_steps=inv_update_steps, ema_decay=ema_decay,
    )


def make_step(opt: KFAC, model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        return loss

    def step() -> None:
        opt.set_batch(X, y)
        opt.step(closure)

    return step


def our_direction(model: nn.Module, X: torch.Tensor, y: torch.Tensor, damping: float, fisher: str) -> list[torch.Tensor]:
    """Our preconditioned direction (before lr), read from the optimizer's ``_precondition``
    (a private method, wrapped only for this check) in one step on a copy of the model."""
    model = copy.deepcopy(model)
    opt = make_ours(model, 0.0, damping, fisher, 1, 0.0)
    captured: dict[int, torch.Tensor] = {}
    inner = opt._precondition

    def capture() -> dict[int, torch.Tensor]:
        out = inner()
        captured.update(out)
        return out

    opt._precondition = capture  # type: ignore[method-assign]
    make_step(opt, model, X, y)()
    return [captured[id(p)] for p in model.parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--fisher", default="type-2", choices=["type-2", "mc"])
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=1e-4, help="small, so the timed steps stay on a sane model")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1, pinned by _timing.pin_threads)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import curvlinops

    print(
        f"K-FAC step: ours (exact backend) vs curvlinops {getattr(curvlinops, '__version__', '')}".rstrip()
        + f"; torch {torch.__version__}, {torch.get_num_threads()} threads, float32, batch {args.batch}, "
        f"fisher {args.fisher}, damping {args.damping:g} (pi rule on both), median of {args.repeats}"
    )
    rows = []
    for kind in args.models:
        model = make_model(kind)
        gen = torch.Generator().manual_seed(1)
        X = torch.randn(args.batch, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (args.batch,), generator=gen)

        ref = curvlinops_direction(model, X, y, args.damping, args.fisher)
        ours = our_direction(model, X, y, args.damping, args.fisher)
        ref_flat = torch.cat([t.reshape(-1) for t in ref]).double()
        ours_flat = torch.cat([t.reshape(-1) for t in ours]).double()
        rel = float((ours_flat - ref_flat).norm() / ref_flat.norm())
        cos = float(ours_flat @ ref_flat / (ours_flat.norm() * ref_flat.norm()))

        opt_b = make_ours(model, args.lr, args.damping, args.fisher, 1, 0.0)
        step_b = make_step(opt_b, model, X, y)
        model_c = copy.deepcopy(model)
        opt_c = make_ours(model_c, args.lr, args.damping, args.fisher, 10, 0.95)
        step_c = make_step(opt_c, model_c, X, y)

        def block_c() -> None:  # 10 steps: one inversion, factors every step
            for _ in range(10):
                step_c()

        stats: list[dict[str, float]] = []

        def keep_stats(name: str) -> None:
            if name == "b":
                stats.append(dict(opt_b.last_stats))

        t = interleaved_medians(
            {"a": lambda: curvlinops_direction(model, X, y, args.damping, args.fisher), "b": step_b, "c": block_c},
            repeats=args.repeats, after=keep_stats, label=kind,
        )
        t["c"] /= 10
        phases = {k: statistics.median(s[k] for s in stats) for k in ("gradient_s", "factors_s", "precondition_s", "update_s")}
        n_params = sum(p.numel() for p in model.parameters())
        rows.append((kind, n_params, rel, cos, t, phases))

    print()
    print(f"{'model':<5} {'params':>8} {'(a) curvlinops':>15} {'(b) ours':>10} {'speedup (a)/(b)':>16} "
          f"{'(c) ours, inv/10':>17} {'(a)/(c)':>8} {'direction rel.diff':>19}")
    for kind, n_params, rel, cos, t, _ in rows:
        print(f"{kind:<5} {n_params:>8} {t['a'] * 1e3:12.1f} ms {t['b'] * 1e3:7.1f} ms {t['a'] / t['b']:>15.2f}x "
              f"{t['c'] * 1e3:14.1f} ms {t['a'] / t['c']:>7.2f}x {rel:>19.2e}")
    print()
    print("phases of (b) (median per phase from KFAC.last_stats; 'gradient' is the type-2/mc curvature pass")
    print("plus the closure's forward and backward, 'precondition' the inversions and the products):")
    print(f"{'model':<5} {'gradient':>11} {'factors':>11} {'precondition':>13} {'update':>10} {'sum':>11}")
    for kind, _, _, _, _, ph in rows:
        total = sum(ph.values())
        print(f"{kind:<5} {ph['gradient_s'] * 1e3:8.1f} ms {ph['factors_s'] * 1e3:8.1f} ms "
              f"{ph['precondition_s'] * 1e3:10.1f} ms {ph['update_s'] * 1e3:7.2f} ms {total * 1e3:8.1f} ms")
    if args.fisher == "mc":
        print("(fisher mc: curvlinops and ours draw different labels, so the directions are not expected to agree)")
    print_spreads(THREADS)
    kind, _, _, _, t, _ = rows[-1]
    print(f"headline: our K-FAC step ({kind}) is {t['a'] / t['b']:.2f}x as fast as curvlinops' K-FAC inverse "
          f"({t['b'] * 1e3:.1f} ms against {t['a'] * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
