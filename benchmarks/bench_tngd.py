"""Thermodynamic NGD on the exact low-rank device against Adam, NGD-Woodbury and Euler-Maruyama,
one process, CPU, float32.

Task: ``build_task(--task)`` (default ``digits-cnn``: SmallCNN, N = 16,826 parameters), its first
``task.batch_size`` (64) training examples, so ``r = b (d_z - 1) = 576`` with the full-rank
cross-entropy factor that TNGD and NGD-Woodbury use (``b d_z = 640`` with the square one). Every
time is the median of
``--repeats`` calls after a warm-up (``time.perf_counter``, the procedure of
``benchmarks/_timing.median_time``; min and max shown too), and every ratio is against a
baseline timed in the same process:

1. ``adam step``: forward + backward + ``torch.optim.Adam.step`` on a copy of the model (the unit).
2. ``TNGD step``: ``TNGD(method="exact", analog_time_tau=50, lr=0.01, damping=0.01)`` on the ideal
   hardware (``kT = 1e-6``): the whole step (gradient, ``GGNOperator`` Gram, the exact draw of the
   device state after 50 tau by the default ``auto`` propagator, block Lanczos on the Gram here,
   the update), against the Adam step and against an
   ``NGD(method="woodbury", damping=0.01)`` step (the same Gram, a Cholesky solve instead). The
   headline's TNGD / NGD ratio is the median of ``--pairs`` (60) pair ratios, the two steps
   alternating (``_timing.interleaved_times``), so the drifting load of a shared machine cancels
   (timed apart, the two medians moved 1.08-1.38x between runs here; with 21 pairs the median
   still moved 1.13-1.22x).
3. The device alone, on one fixed batch: ``A = U U^T + lam I`` (``U`` from the ``GGNOperator``,
   its Gram computed once, ``lam = 0.01``), ``x0 = g``, ``kappa = 1e-6``, one path of 50 tau:
   ``LowRankOU(...).sample`` (the ``auto`` propagator, and the ``eigh`` reference) against
   ``thermo.lowrank.euler_maruyama`` at ``dt = 0.1 tau`` (500 steps, each a GGN-vector product
   ``op.matvec(v) + lam v``). Accuracy (``kappa = 0``, deterministic means) against a float64
   replica of the same operator: the EM mean and the exact mean at ``t = 50``, and the exact
   mean at a large ``t`` against the closed form ``(G + lam I)^-1 g`` (``woodbury_solve``).
   The headline's EM / exact ratio is the median over ``max(5, --repeats)`` interleaved rounds,
   each one EM path against one exact draw, each after the same 0.3 s pause (timed apart, it
   moved 94-133x between runs here).
4. For context, the cost model of the published simulation: 500 GGN-vector products per
   iteration (the measured product time x 500) against our whole exact step.
5. ``TNGD step, published hardware``: the same step with ``hardware="published"`` (16-bit
   coupling DAC, input DAC and ADC): still the exact path, on the quantized arrays ``J_f``,
   ``H_L``, ``J_f^T`` (``J_f`` formed layer by layer, ``r = b d_z = 640``), against the ideal step.

Then where the time of a TNGD step goes (a replica of ``TNGD._step_lowrank`` with timers around
its pieces, and the optimizer's own ``last_stats``).

Run: python benchmarks/bench_tngd.py [--threads 1] [--repeats 7] [--pairs 60] [--task digits-cnn]
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
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved_times, print_spreads, record, sample_times  # noqa: E402
from digital.curvature import batch_loss, flatten_params
from digital.ggn import GGNOperator, woodbury_solve
from digital.ngd import NGD
from digital.tasks import build_task
from digital.tngd import TNGD
from thermo import HardwareSpec
from thermo.lowrank import LowRankCurvature, LowRankOU, euler_maruyama

T_TAU = 50.0  # analog time per step (tau)
DT_TAU = 0.1  # Euler-Maruyama step (tau), the published simulation's
LAM = 0.01  # damping
KAPPA = 1e-6  # thermal noise (the ideal hardware's kT)
LR = 0.01


def timed(fn, what: str, repeats: int, warmup: int, pause_s: float = 0.3) -> list[float]:
    """Every time of ``_timing.sample_times`` (kept with its spread for ``print_spreads``), so the
    table can show the spread next to the median."""
    return sample_times(fn, repeats, warmup, pause_s, what=what)


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double(), ref.double()
    return float(torch.linalg.vector_norm(a - ref) / torch.linalg.vector_norm(ref))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every pool (default 1 for stable numbers; pinned by _timing.pin_threads)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--task", default="digits-cnn")
    parser.add_argument("--pairs", type=int, default=60, help="interleaved TNGD / NGD pairs of the headline ratio")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start_all = time.perf_counter()

    task = build_task(args.task, seed=0)
    model = task.model.float()
    b = task.batch_size
    x = task.train.inputs[:b].float()
    y = task.train.targets[:b]
    loss_name = task.loss

    def make_step(m: torch.nn.Module, opt: torch.optim.Optimizer, needs_batch: bool):
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = batch_loss(m(x), y, loss_name)
            loss.backward()
            return loss

        def step() -> None:
            if needs_batch:
                opt.set_batch(x, y)
            opt.step(closure)

        return step

    # -- contenders 1-2: whole optimizer steps ---------------------------------------------------------
    adam_model, tngd_model, ngd_model = (copy.deepcopy(model) for _ in range(3))
    adam = torch.optim.Adam(adam_model.parameters(), lr=1e-3)
    hw = HardwareSpec.ideal(kT=KAPPA)
    tngd = TNGD(tngd_model, lr=LR, damping=LAM, loss=loss_name, analog_time_tau=T_TAU, hardware=hw, method="exact")
    ngd = NGD(ngd_model, lr=LR, damping=LAM, loss=loss_name, method="woodbury")
    adam_step = make_step(adam_model, adam, False)
    tngd_step_raw = make_step(tngd_model, tngd, True)
    ngd_step_raw = make_step(ngd_model, ngd, True)
    pub_model = copy.deepcopy(model)
    tngd_pub = TNGD(pub_model, lr=LR, damping=LAM, loss=loss_name, analog_time_tau=T_TAU, hardware="published")
    assert tngd_pub.method == "exact"  # the coupling DAC is modelled there, not on the dense simulator
    tngd_pub_step = make_step(pub_model, tngd_pub, True)
    tngd_stats: list[dict] = []
    ngd_stats: list[dict] = []

    def tngd_step() -> None:
        tngd_step_raw()
        tngd_stats.append(dict(tngd.last_stats))

    def ngd_step() -> None:
        ngd_step_raw()
        ngd_stats.append(dict(ngd.last_stats))

    # -- contender 3: the device alone on one fixed batch ----------------------------------------------
    op = GGNOperator(model, x, y, loss_name, reduced_factor=True)
    K = op.gram()
    _, g = op.gradient()
    x0 = g.clone()  # TNGD's first step starts from x0 = g
    curv = LowRankCurvature(apply_u=op.apply_u, apply_ut=op.apply_ut, gram=K, damping=LAM, n=op.n)
    n_products = [0]

    def a_matvec(V: torch.Tensor) -> torch.Tensor:
        n_products[0] += 1
        return op.matvec(V) + LAM * V

    v = torch.randn(op.n, generator=torch.Generator().manual_seed(0))
    op.matvec(v)  # caches the vjp linearization (the exact path and EM both reuse it)
    gen = torch.Generator()

    def exact_path() -> torch.Tensor:  # one exact draw of x(50 tau), the default (auto) propagator
        return LowRankOU(curv, KAPPA).sample(x0, g, T_TAU, gen.manual_seed(1))

    def exact_path_eigh() -> torch.Tensor:  # the reference propagator: eigh of the Gram + the draw
        return LowRankOU(curv, KAPPA, propagator="eigh").sample(x0, g, T_TAU, gen.manual_seed(1))

    def exact_path_with_gram() -> torch.Tensor:  # ... and a fresh operator with its Gram
        fresh = GGNOperator(model, x, y, loss_name, check=False, reduced_factor=True)
        c = LowRankCurvature(apply_u=fresh.apply_u, apply_ut=fresh.apply_ut, gram=fresh.gram(), damping=LAM, n=fresh.n)
        return LowRankOU(c, KAPPA).sample(x0, g, T_TAU, gen.manual_seed(1))

    def em_path() -> torch.Tensor:  # 500 GGN-vector products
        return euler_maruyama(a_matvec, x0, g, T_TAU, DT_TAU, KAPPA, 1, gen.manual_seed(1))

    # -- correctness first: accuracy of the two device paths (kappa = 0, means) ------------------------
    model64 = copy.deepcopy(model).double()
    op64 = GGNOperator(model64, x.double(), y, loss_name, reduced_factor=True)
    curv64 = LowRankCurvature(apply_u=op64.apply_u, apply_ut=op64.apply_ut, gram=op64.gram(), damping=LAM, n=op64.n)
    ou64 = LowRankOU(curv64, 0.0)
    g64, x064 = g.double(), x0.double()
    ref_t = ou64.mean(x064, g64, T_TAU)  # float64 exact mean at t = 50 tau: the reference
    ou32 = LowRankOU(curv, 0.0)
    exact_t = ou32.mean(x0, g, T_TAU)
    auto_how = ou32.last_propagation
    eigh32 = LowRankOU(curv, 0.0, propagator="eigh")
    eigh_t = eigh32.mean(x0, g, T_TAU)
    n_products[0] = 0
    em_t = euler_maruyama(a_matvec, x0, g, T_TAU, DT_TAU, 0.0, 1)[:, 0]
    em_steps = n_products[0]
    em64_t = euler_maruyama(lambda V: op64.matvec(V) + LAM * V, x064, g64, T_TAU, DT_TAU, 0.0, 1)[:, 0]
    t_large = 5000.0 / LAM  # exp(-lam t) = exp(-5000): the state has converged to A^-1 g
    wood64 = woodbury_solve(op64, g64, LAM)
    wood32 = woodbury_solve(op, g, LAM)
    exact_inf = ou32.mean(x0, g, t_large)
    exact64_inf = ou64.mean(x064, g64, t_large)
    s = torch.linalg.eigvalsh(op64.gram())
    print(
        f"{args.task}, float32, b = {b}, d_z = {op.d_z}, N = {op.n}, r = {op.rank}, threads = {args.threads}; "
        f"lam = {LAM:g}, kappa = {KAPPA:g}, t = {T_TAU:g} tau, EM dt = {DT_TAU:g} tau ({em_steps} steps)"
    )
    print(
        f"A = U U^T + lam I: eigenvalues in [{LAM:g}, {float(s.max()) + LAM:.3f}], numerical rank "
        f"{eigh32.numerical_rank} of {op.rank}; EM stable for dt < 2 / lambda_max = {2 / (float(s.max()) + LAM):.3f} tau"
    )
    print("accuracy of the means (kappa = 0), relative 2-norm error:")
    print(f"  vs float64 exact mean at t = {T_TAU:g} tau (|ref| = {float(ref_t.norm()):.4g}):")
    print(f"    exact path, float32, auto                    {rel(exact_t, ref_t):.2e}  ({auto_how})")
    print(f"    exact path, float32, eigh                    {rel(eigh_t, ref_t):.2e}")
    print(f"    Euler-Maruyama dt = {DT_TAU:g}, float32               {rel(em_t, ref_t):.2e}")
    print(f"    Euler-Maruyama dt = {DT_TAU:g}, float64               {rel(em64_t, ref_t):.2e}  (discretization alone)")
    print(f"  vs the closed form (G + lam I)^-1 g, float64 woodbury_solve, at t = {t_large:g} tau:")
    print(f"    exact path, float64                          {rel(exact64_inf, wood64):.2e}")
    print(f"    exact path, float32                          {rel(exact_inf, wood64):.2e}")
    print(f"    woodbury_solve, float32 (for scale)          {rel(wood32, wood64):.2e}")
    print(
        f"  (the t = {T_TAU:g} mean is {rel(ref_t, wood64):.2f} from A^-1 g: lam t = {LAM * T_TAU:g}, "
        "the damping-only modes have not relaxed)"
    )

    # -- timings -------------------------------------------------------------------------------------
    timings: dict[str, float] = {}
    spread: dict[str, tuple[float, float]] = {}
    contenders = {
        "adam step (fwd+bwd+step)": (adam_step, args.repeats),
        "NGD-woodbury step": (ngd_step, args.repeats),
        f"TNGD exact step, t = {T_TAU:g} tau": (tngd_step, args.repeats),
        "TNGD step, published hardware (quantized)": (tngd_pub_step, args.repeats),
        "GGN-vector product (reused operator)": (lambda: op.matvec(v), args.repeats),
        f"eigh of the {op.rank}x{op.rank} Gram": (lambda: torch.linalg.eigh(K), args.repeats),
        "exact path: eigh + sample (1 path)": (exact_path_eigh, args.repeats),
        "exact path: auto (Krylov) sample (1 path)": (exact_path, args.repeats),
        "exact path: fresh Gram + auto sample": (exact_path_with_gram, args.repeats),
        f"EM path: dt = {DT_TAU:g}, {em_steps} products (1 path)": (em_path, max(3, args.repeats // 2)),
    }
    for name, (fn, reps) in contenders.items():
        ts = timed(fn, name, reps, 2 if reps == args.repeats else 1)
        timings[name], spread[name] = statistics.median(ts), (min(ts), max(ts))
    del tngd_stats[:2], ngd_stats[:2]  # the warm-up steps (the first one runs the hook check)
    # the headline ratio from interleaved pairs: each TNGD step against the NGD step beside it,
    # so that the load of a shared machine, which drifts over seconds, cancels in the ratio
    pairs = max(args.pairs, 2)
    paired = interleaved_times({"tngd": tngd_step, "ngd": ngd_step}, pairs, warmup=0, pause_s=0.1)
    tngd_pair_t = record("TNGD step, interleaved with NGD", paired["tngd"]).median_s
    ngd_pair_t = record("NGD-woodbury step, interleaved with TNGD", paired["ngd"]).median_s
    pair_ratios = [a / b for a, b in zip(paired["tngd"], paired["ngd"])]
    pair_ratio = statistics.median(pair_ratios)
    deciles = statistics.quantiles(pair_ratios, n=10)
    # the EM headline the same way: each EM path (0.6 s) against the exact draw beside it, each after
    # the same pause (timed apart, the 5 ms draw drifted 4.9-6.6 ms between runs: 94-133x). Back to
    # back, with warm caches, a draw takes about 3.2 ms; the paused one is what a training step sees.
    em_rounds = max(5, args.repeats)
    paired_em = interleaved_times({"em": em_path, "exact": exact_path}, em_rounds, warmup=0, pause_s=0.3)
    record("EM path, interleaved with the exact draw", paired_em["em"])
    record("exact draw (auto), interleaved with EM", paired_em["exact"])
    em_ratios = [e / x for e, x in zip(paired_em["em"], paired_em["exact"])]
    em_ratio = statistics.median(em_ratios)

    tngd_how = tngd.device.process.last_propagation if tngd.device is not None else "?"
    unit = timings["adam step (fwd+bwd+step)"]
    tngd_t = timings[f"TNGD exact step, t = {T_TAU:g} tau"]
    ngd_t = timings["NGD-woodbury step"]
    exact_t_s = timings["exact path: auto (Krylov) sample (1 path)"]
    eigh_t_s = timings["exact path: eigh + sample (1 path)"]
    exact_g_s = timings["exact path: fresh Gram + auto sample"]
    em_s = timings[f"EM path: dt = {DT_TAU:g}, {em_steps} products (1 path)"]
    mv_s = timings["GGN-vector product (reused operator)"]
    print(f"\n{'operation':<48} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'x adam':>9}")
    for name, t in timings.items():
        lo, hi = spread[name]
        print(f"{name:<48} {1e3 * t:>10.3f} {1e3 * lo:>10.3f} {1e3 * hi:>10.3f} {t / unit:>9.2f}")
    print(
        f"TNGD / NGD-Woodbury step, {pairs} interleaved pairs: median of the pair ratios {pair_ratio:.3f} "
        f"(p10 {deciles[0]:.3f}, p90 {deciles[-1]:.3f}); medians {1e3 * tngd_pair_t:.2f} / {1e3 * ngd_pair_t:.2f} ms; "
        f"timed apart (the table): {tngd_t / ngd_t:.3f}"
    )
    pub_t = timings["TNGD step, published hardware (quantized)"]
    print(f"TNGD on published hardware / ideal: {pub_t / tngd_t:.2f}x "
          f"(J_f rel. quantization error {tngd_pub.programmed.jacobian_rel_error:.1e})")

    # -- where the time of a TNGD step goes --------------------------------------------------------------
    def med(key: str, stats: list[dict]) -> float:
        return statistics.median(d[key] for d in stats)

    print("\nTNGD.last_stats / NGD.last_stats (medians over the timed steps, ms):")
    print(
        f"  TNGD: gradient {1e3 * med('gradient_s', tngd_stats):.2f}, curvature (operator + Gram) "
        f"{1e3 * med('curvature_s', tngd_stats):.2f}, device (propagation + draw) {1e3 * med('device_s', tngd_stats):.2f}, "
        f"update {1e3 * med('update_s', tngd_stats):.2f}"
    )
    print(
        f"  NGD:  gradient {1e3 * med('gradient_s', ngd_stats):.2f}, curvature (operator + Gram) "
        f"{1e3 * med('curvature_s', ngd_stats):.2f}, solve (Cholesky + U^T g + U y) {1e3 * med('solve_s', ngd_stats):.2f}, "
        f"update {1e3 * med('update_s', ngd_stats):.2f}"
    )

    # a replica of TNGD._step_lowrank on tngd_model with timers around each piece
    parts: dict[str, list[float]] = {}

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        parts.setdefault(name, []).append(now - t0)
        return now

    for _ in range(args.repeats):
        time.sleep(0.3)
        t0 = time.perf_counter()
        tngd.zero_grad()
        batch_loss(tngd_model(x), y, loss_name).backward()
        gg = flatten_params([p.grad for p in tngd_model.parameters()])
        t0 = lap("gradient (fwd + bwd)", t0)
        fresh = GGNOperator(tngd_model, x, loss=loss_name, check=False, reduced_factor=True)
        t0 = lap("GGNOperator (no-grad fwd + L)", t0)
        Kf = fresh.gram()
        parts.setdefault("  Gram: hooked fwd + batched bwd", []).append(fresh.last_gram_stats["sensitivities_s"])
        parts.setdefault("  Gram: layer reductions", []).append(fresh.last_gram_stats["layers_s"])
        t0 = lap("Gram total", t0)
        cf = LowRankCurvature(apply_u=fresh.apply_u, apply_ut=fresh.apply_ut, gram=Kf, damping=LAM, n=fresh.n)
        ou = LowRankOU(cf, KAPPA)  # auto: no eigh at construction on this rank
        t0 = lap("LowRankOU (auto: no eigh)", t0)
        ou.sample(gg, gg, T_TAU, gen.manual_seed(2))
        t0 = lap("draw: U^T, block Lanczos on K, U", t0)
        z = torch.randn(fresh.n, 1, generator=gen.manual_seed(2))
        fresh.apply_ut(torch.stack([gg, gg, z[:, 0]], dim=1))
        t0 = lap("  of which U^T [x0 g z] (jvp, 3 columns)", t0)
        fresh.apply_u(torch.ones(fresh.rank, 1, dtype=gg.dtype))
        t0 = lap("  of which U c (vjp pullback)", t0)
    print(f"\nTNGD step replica, {args.repeats} runs (medians, ms; % of the timed TNGD step {1e3 * tngd_t:.2f} ms):")
    total = 0.0
    for name, ts in parts.items():
        m = statistics.median(ts)
        total += 0.0 if name.startswith("  ") else m
        print(f"  {name:<40} {1e3 * m:>9.2f}  {100 * m / tngd_t:>5.1f}%")
    print(f"  {'sum of the pieces':<40} {1e3 * total:>9.2f}  {100 * total / tngd_t:>5.1f}%")
    lanczos_ms = 1e3 * (statistics.median(parts["draw: U^T, block Lanczos on K, U"])
                        - statistics.median(parts["  of which U^T [x0 g z] (jvp, 3 columns)"])
                        - statistics.median(parts["  of which U c (vjp pullback)"]))
    print(f"  (block Lanczos on the Gram, the draw less its U^T and U products: {lanczos_ms:.2f} ms; "
          f"propagation: {ou.last_propagation})")

    # -- the published simulation's cost model -------------------------------------------------------
    warm_mv = em_s / em_steps  # per product inside the EM loop (back to back, caches warm)
    print(
        f"\npublished simulation cost model, {em_steps} GGN-vector products per iteration (gradient not counted):\n"
        f"  {em_steps} x {1e3 * mv_s:.3f} ms (isolated product, median) = {1e3 * em_steps * mv_s:8.1f} ms  "
        f"= {em_steps * mv_s / tngd_t:5.1f}x our whole exact TNGD step ({1e3 * tngd_t:.1f} ms)\n"
        f"  {em_steps} x {1e3 * warm_mv:.3f} ms (in the EM loop, measured) = {1e3 * em_s:8.1f} ms  "
        f"= {em_s / tngd_t:5.1f}x our whole exact TNGD step"
    )
    print(
        f"exact vs EM on the device alone, {em_rounds} interleaved rounds (one EM path, one exact draw): "
        f"median EM / (auto sample) {em_ratio:.1f}x (range {min(em_ratios):.1f}-{max(em_ratios):.1f}x)"
    )
    print(
        f"exact vs EM on the device alone, timed apart: EM / (auto sample) = {em_s / exact_t_s:.1f}x; "
        f"EM / (eigh + sample) = {em_s / eigh_t_s:.1f}x; EM / (fresh Gram + auto sample) = {em_s / exact_g_s:.1f}x"
    )
    print(f"(total benchmark wall time {time.perf_counter() - start_all:.0f} s)")
    print_spreads(THREADS)
    print(
        f"headline: TNGD step / Adam step = {tngd_t / unit:.1f}x (target <= 20x); "
        f"TNGD step / NGD-Woodbury step = {pair_ratio:.2f}x (target <= 1.2x; median of {pairs} interleaved pairs); "
        f"EM dt={DT_TAU:g} / exact propagation = {em_ratio:.0f}x "
        f"(target >= 100x; median of {em_rounds} interleaved rounds); "
        f"propagator {tngd_how}"
    )


if __name__ == "__main__":
    main()
