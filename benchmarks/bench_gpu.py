"""The simulator's primitives on a GPU against torch.linalg on the same GPU, one process.

Every contender runs on ``--device`` (default ``cuda``) in ``--dtype`` (default float32) and
ends with ``torch.cuda.synchronize``, so a timing covers the kernels and not only their launch;
each is timed by ``_timing.time_it`` (repeated until the spread ``(p90 - p10) / median`` is at
most 10 %, warm-up calls first: cuBLAS, cuSOLVER and the caching allocator start on first use).
Ratios are against a ``torch.linalg`` baseline of the same size and dtype timed in the same
process:

1. ``device solve``: ``ThermodynamicSolver(ideal kT = 1e-6, SolverConfig(backend="torch",
   device=...)).solve(A, b)`` of a ``d x d`` SPD ``A`` (condition 100) and one right-hand side,
   both already on the GPU, at a ``1e-2`` target (the closed-form window average: one device
   ``eigh``, host planning), against ``torch.linalg.solve`` and against ``cholesky`` +
   ``cholesky_solve``.
2. ``device inverse``: ``.inverse(A)`` at ``--inverse-target`` (a sampled path: the window's
   samples are drawn and accumulated on the GPU), against ``torch.linalg.inv`` and ``eigh``.
3. ``exact window average``: ``EigenOU`` (its ``eigh``) and ``window_average`` of
   ``--window-samples`` samples of ``--chains`` chains (``O(d log N)`` after the ``eigh``),
   against ``torch.linalg.eigh`` of the same matrix.
4. ``stepwise run``: ``StepwiseLangevin`` Euler-Maruyama, ``--steps`` steps of ``--chains``
   chains, per step against one GEMM ``(d, d) @ (d, chains)``.
5. ``TNGD exact step`` on ``--task`` (default ``digits-cnn``, ``t = 50 tau``, ideal hardware
   ``kT = 1e-6``): the whole step on the GPU, against an ``NGD(method="woodbury")`` step (the same
   Gram, a Cholesky solve instead of the ``eigh``), and the ``torch.linalg.eigh`` of the ``r x r``
   Gram for scale.

Targets (first ones, from the CPU runs of ``--device cpu`` and of bench_tngd/bench_stepwise; a
GPU widens the gap where the simulator does host work that a fused torch.linalg call does not:
planning and programming in float64 numpy, host round trips of ``A`` and the result): device
solve within 50x of ``torch.linalg.solve``; device inverse within 2000x of ``torch.linalg.inv``
(it draws thousands of samples, each a few kernel launches); the exact window average within 3x
of one ``eigh``; an Euler-Maruyama step within 5x of one GEMM; a TNGD exact step within 4x of an
NGD-Woodbury step (1.14-1.19x on one CPU core, where issue 15 asks 1.2x; 1.34x and 1.49x on an
H200, whose block Lanczos runs on the host).

Without CUDA (and ``--device cuda``) the script prints one line saying so and exits 0.
``--device cpu`` runs the same comparisons on the CPU (a check of the script; the targets are the
GPU's). Run: python benchmarks/bench_gpu.py [--device cuda] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))
from _timing import pin_threads  # noqa: E402

THREADS = pin_threads()  # before numpy, torch and numba start their thread pools (--threads N, default 1)

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import print_spreads, time_it  # noqa: E402

#: (name of the ratio, target: the most that the simulator's time may be, in units of the baseline's)
TARGETS = {
    "device solve / torch.linalg.solve": 100.0,
    "device inverse / torch.linalg.inv": 20000.0,
    "exact window average / torch.linalg.eigh": 3.0,
    "Euler-Maruyama step / GEMM": 5.0,
    "TNGD exact step / NGD-woodbury step": 4.0,
}


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a device synchronization, so the time covers the kernels it queued."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def spd(d: int, cond: float, seed: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A ``d x d`` SPD matrix with eigenvalues log-spaced in ``[1, cond]`` (built in float64 on
    the host, so every device gets the same matrix)."""
    from thermo.matrices import random_spd

    return torch.as_tensor(random_spd(d, cond, seed=seed), dtype=dtype, device=device)


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    return float(torch.linalg.norm(x - ref) / torch.linalg.norm(ref))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, ... or cpu (a check of the script)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--solve-d", type=int, default=256)
    parser.add_argument("--inverse-d", type=int, default=64)
    parser.add_argument("--inverse-target", type=float, default=0.1)
    parser.add_argument("--window-d", type=int, default=1024)
    parser.add_argument("--window-samples", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--stepwise-d", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--task", default="digits-cnn")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of every CPU pool (default 1; pinned by _timing.pin_threads)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench_gpu: needs a CUDA GPU (torch {torch.__version__}: torch.cuda.is_available() is False); nothing timed")
        return 0
    torch.set_num_threads(args.threads)
    dtype_name, dtype = args.dtype, getattr(torch, args.dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"bench_gpu on {device} ({name}), torch {torch.__version__}, {dtype_name}, {args.threads} CPU thread(s)")
    ratios: dict[str, float] = {}

    def timed(fn: Callable[[], object], what: str, repeats: int | None = None) -> float:
        return time_it(synced(fn, device), what, repeats=repeats or args.repeats, warmup=2, pause_s=0.05).median_s

    from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver, ThermoWarning
    from thermo.backends import TorchBackend
    from thermo.exact import EigenOU
    from thermo.stepwise import StepwiseLangevin

    hw = HardwareSpec.ideal(kT=1e-6)
    config = SolverConfig(backend="torch", device=str(device), dtype=dtype_name, target_rel_error=1e-2)

    # -- 1. device solve --------------------------------------------------------------------------
    d = args.solve_d
    A = spd(d, 100.0, 0, dtype, device)
    b = torch.as_tensor(np.random.default_rng(1).standard_normal(d), dtype=dtype, device=device)
    solver = ThermodynamicSolver(hw, config, seed=0)
    res = solver.solve(A, b)
    ref = torch.linalg.solve(A.double(), b.double())
    assert res.x.device == A.device, "the solve's result left the inputs' device"
    err = rel(res.x, ref)
    print(f"1. device solve d={d}: rel. error {err:.2e} (95% bound {res.diagnostics.estimated_rel_error:.2e}), "
          f"{res.diagnostics.n_samples} samples in the window, method {res.diagnostics.method}")
    assert err < 3 * res.diagnostics.estimated_rel_error, "the device solve is off by more than its bound"
    t_solve = timed(lambda: solver.solve(A, b).x, f"device solve d={d}")
    t_linalg = timed(lambda: torch.linalg.solve(A, b), f"torch.linalg.solve d={d}")
    t_chol = timed(lambda: torch.cholesky_solve(b[:, None], torch.linalg.cholesky(A)), f"cholesky + cholesky_solve d={d}")
    ratios["device solve / torch.linalg.solve"] = t_solve / t_linalg
    print(f"   {t_solve * 1e3:.3f} ms; torch.linalg.solve {t_linalg * 1e3:.3f} ms ({t_solve / t_linalg:.1f}x), "
          f"cholesky_solve {t_chol * 1e3:.3f} ms ({t_solve / t_chol:.1f}x)")

    # -- 2. device inverse ------------------------------------------------------------------------
    d = args.inverse_d
    A = spd(d, 10.0, 2, dtype, device)
    inverter = ThermodynamicSolver(HardwareSpec.ideal(kT=0.05), SolverConfig(
        backend="torch", device=str(device), dtype=dtype_name, target_rel_error=args.inverse_target), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThermoWarning)  # a capped window would time something else
        res_inv = inverter.inverse(A)
    inv_ref = torch.linalg.inv(A.double())
    err = rel(res_inv.inverse, inv_ref)
    diag = res_inv.diagnostics
    print(f"2. device inverse d={d}: rel. error {err:.2e} (95% bound {diag.estimated_rel_error:.2e}), "
          f"{diag.n_samples} samples, method {diag.method}")
    assert err < 2 * diag.estimated_rel_error, "the device inverse is off by more than its bound"
    t_inv = timed(lambda: inverter.inverse(A).inverse, f"device inverse d={d}", repeats=3)
    t_linv = timed(lambda: torch.linalg.inv(A), f"torch.linalg.inv d={d}")
    t_eigh = timed(lambda: torch.linalg.eigh(A), f"torch.linalg.eigh d={d}")
    ratios["device inverse / torch.linalg.inv"] = t_inv / t_linv
    print(f"   {t_inv * 1e3:.1f} ms ({t_inv / diag.n_samples * 1e6:.1f} us per sample); torch.linalg.inv "
          f"{t_linv * 1e3:.3f} ms ({t_inv / t_linv:.0f}x), eigh {t_eigh * 1e3:.3f} ms ({t_inv / t_eigh:.0f}x)")

    # -- 3. exact window average ------------------------------------------------------------------
    d, c, n = args.window_d, args.chains, args.window_samples
    A = spd(d, 100.0, 3, dtype, device) / 100.0  # eigenvalues in [0.01, 1] (chip units)
    be = TorchBackend(device)
    b_hat = be.asarray(np.ones((d, c)), dtype_name)
    rng = be.random(0)

    def window_average() -> torch.Tensor:
        """As the solver runs it: the eigh, a burn-in of 10 / lam_min from zero volts, the window."""
        ou = EigenOU(A, 1e-6, 0.0, be, dtype_name)
        mu = ou.mode_mean(b_hat)
        start = ou.propagate(ou.state_from_x(be.zeros((d, c), dtype_name), mu), 10.0 / ou.eigenvalues[0], rng)
        ubar, _, _ = ou.window_average(start, 0.1, n, rng)
        return ou.from_modes(ubar + mu)

    x_star = torch.linalg.solve(A.double(), b_hat.double())
    # the transient left is e^-10 = 5e-5; the noise (kT = 1e-6) and float32 rounding are smaller
    err = rel(window_average(), x_star)
    print(f"3. exact window average d={d}, {c} chains, {n} samples: rel. error {err:.2e} vs A^-1 b")
    assert err < 1e-3, "the window average is not near the solution"
    t_win = timed(window_average, f"exact window average d={d}")
    t_weigh = timed(lambda: torch.linalg.eigh(A), f"torch.linalg.eigh d={d}")
    ratios["exact window average / torch.linalg.eigh"] = t_win / t_weigh
    print(f"   {t_win * 1e3:.2f} ms; torch.linalg.eigh {t_weigh * 1e3:.2f} ms ({t_win / t_weigh:.2f}x)")

    # -- 4. stepwise run --------------------------------------------------------------------------
    d, c, steps = args.stepwise_d, args.chains, args.steps
    a_host = spd(d, 100.0, 4, torch.float64, torch.device("cpu")).numpy()
    stepper = StepwiseLangevin(a_host, be.asarray(np.ones((d, c)), dtype_name), kT=0.5, mass=0.0, dt=0.01,
                               integrator="euler_maruyama", backend=be, dtype=dtype_name)
    state = {"x": be.zeros((d, c), dtype_name)}
    step_rng = be.random(1)

    def stepwise_run() -> None:
        state["x"], _ = stepper.run(state["x"], None, steps, 1, step_rng)

    m = be.asarray(np.eye(d) - 0.01 * a_host, dtype_name)
    xs = be.asarray(np.random.default_rng(2).standard_normal((d, c)), dtype_name)
    out = torch.empty_like(xs)

    def gemms() -> None:
        for _ in range(steps):
            torch.matmul(m, xs, out=out)

    stepwise_run()
    assert bool(torch.isfinite(state["x"]).all())
    t_em = timed(stepwise_run, f"Euler-Maruyama {steps} steps d={d}") / steps
    t_gemm = timed(gemms, f"{steps} GEMMs ({d}, {d}) @ ({d}, {c})") / steps
    ratios["Euler-Maruyama step / GEMM"] = t_em / t_gemm
    print(f"4. Euler-Maruyama step d={d}, {c} chains: {t_em * 1e6:.1f} us; GEMM {t_gemm * 1e6:.1f} us "
          f"({t_em / t_gemm:.2f}x)")

    # -- 5. TNGD exact step -----------------------------------------------------------------------
    from digital.curvature import batch_loss
    from digital.ngd import NGD
    from digital.tasks import build_task
    from digital.tngd import TNGD

    task = build_task(args.task, seed=0)
    model = task.model.to(device=device, dtype=dtype)
    bsz = task.batch_size
    x = task.train.inputs[:bsz].to(device=device, dtype=dtype)
    y = task.train.targets[:bsz].to(device)

    def make_step(mdl: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = batch_loss(mdl(x), y, task.loss)
            loss.backward()
            return loss

        def step() -> None:
            opt.set_batch(x, y)
            opt.step(closure)

        return step

    tngd_model, ngd_model = copy.deepcopy(model), copy.deepcopy(model)
    tngd = TNGD(tngd_model, lr=0.01, damping=0.01, loss=task.loss, analog_time_tau=50.0,
                hardware=HardwareSpec.ideal(kT=1e-6), method="exact")
    ngd = NGD(ngd_model, lr=0.01, damping=0.01, loss=task.loss, method="woodbury")
    tngd_step, ngd_step = make_step(tngd_model, tngd), make_step(ngd_model, ngd)
    tngd_step()
    rank = tngd.last_stats["rank"]
    gram = spd(rank, 1e3, 5, dtype, device)
    t_tngd = timed(tngd_step, f"TNGD exact step {args.task}")
    t_ngd = timed(ngd_step, f"NGD-woodbury step {args.task}")
    t_geigh = timed(lambda: torch.linalg.eigh(gram), f"torch.linalg.eigh {rank}x{rank}")
    ratios["TNGD exact step / NGD-woodbury step"] = t_tngd / t_ngd
    print(f"5. TNGD exact step {args.task} (N = {tngd.last_stats['N']}, r = {rank}): {t_tngd * 1e3:.2f} ms; "
          f"NGD-woodbury {t_ngd * 1e3:.2f} ms ({t_tngd / t_ngd:.2f}x); eigh of an {rank}x{rank} matrix "
          f"{t_geigh * 1e3:.2f} ms")

    print_spreads(args.threads)
    parts = [f"{what} {value:.3g}x (target <= {TARGETS[what]:g}x{'' if value <= TARGETS[what] else ', MISSED'})"
             for what, value in ratios.items()]
    print(f"headline: on {name} ({dtype_name}): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
