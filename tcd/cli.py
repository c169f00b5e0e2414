"""Command-line interface: ``tcd <command> [options]`` (also ``python -m tcd``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _strings(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _add_training_arguments(parser: argparse.ArgumentParser, optimizer: bool = True) -> None:
    parser.add_argument("--task", default="digits-mlp", help="digits-mlp, digits-cnn, digits-vit, graphs-gnn, digits-linear-mse")
    if optimizer:
        parser.add_argument("--optimizer", default="kfac", help="kfac, ngd, tngd, adam, adamw or sgd (default kfac)")
        parser.add_argument("--solver", default="exact", help="solver backend of kfac/ngd: exact, cg or thermo (default exact)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per step (default: the task's)")
    parser.add_argument("--seed", type=int, default=0, help="initialization and batch-order seed")
    parser.add_argument("--eval-every", type=int, default=50, help="evaluate train/test every N steps")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="optimizer option, repeatable (e.g. damping=1e-2)")
    parser.add_argument("--solver-opt", action="append", default=[], metavar="KEY=VALUE", help="solver option, repeatable (e.g. target_rel_error=1e-3)")


def _add_system_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", type=Path, default=None, help="system description (.toml or .yaml)")
    parser.add_argument("--gpu", default="A100", help="GPU preset when no --system (V100, A100, H100)")
    parser.add_argument("--link", default="paper-50gbps", help="link preset when no --system")
    parser.add_argument("--hardware", default="published", help="analog hardware preset when no --system")
    parser.add_argument("--chips", type=int, default=1, help="analog chips when no --system")


def _system(args: argparse.Namespace) -> object:
    from cosim import SystemSpec

    if args.system is not None:
        return SystemSpec.load(args.system)
    return SystemSpec.from_presets(gpu=args.gpu, link=args.link, hardware=args.hardware, n_chips=args.chips)


def _add_sweep_arguments(
    parser: argparse.ArgumentParser, out: str, workers: int | None = None,
    workers_help: str = "process-pool size (default: CPU count)",
) -> None:
    """The options every study shares: where its points run, where it writes, the progress bar."""
    parser.add_argument("--workers", type=int, default=workers, help=workers_help)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (or 'local'); default: process pool")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"output folder (default {out})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcd",
        description="Thermodynamic co-design simulator: analog Langevin linear algebra for "
        "second-order training.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="solve a random SPD system on simulated hardware; print accuracy and analog time, write CSV/PNG",
        description="Accuracy of a thermodynamic solve against analog time for hardware presets. "
        "Finished points are kept in the CSV; a rerun skips them.",
    )
    demo.add_argument("--size", type=int, default=64, help="matrix size d (default 64)")
    demo.add_argument("--kappa", type=float, default=100.0, help="condition number (default 100)")
    demo.add_argument("--presets", type=_strings, default=("ideal", "published", "noisy"), help="comma-separated hardware presets")
    demo.add_argument("--windows", type=_floats, default=(1.0, 4.0, 16.0, 64.0, 256.0), help="sampling windows in tau, comma-separated")
    demo.add_argument("--seeds", type=int, default=3, help="noise seeds per point (default 3)")
    demo.add_argument("--workers", type=int, default=None, help="process-pool size (default: CPU count)")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default results/demo)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    tr = sub.add_parser(
        "train",
        help="train a model with K-FAC, NGD, TNGD, Adam or SGD on a pluggable solver; write CSV/PNG",
        description="Train one of the built-in tasks. With --checkpoint the run saves itself and a "
        "rerun with the same options resumes where it stopped.",
    )
    _add_training_arguments(tr)
    tr.add_argument("--hardware", default=None, help="hardware preset of the thermo solver or of tngd (default ideal)")
    tr.add_argument("--on-nonfinite", choices=("stop", "fallback"), default="stop", help="stop, or redo with the exact solver")
    tr.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file (resume if it exists)")
    tr.add_argument("--out", type=Path, default=Path("results/train"), help="output folder (default results/train)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ct = sub.add_parser(
        "cotrain",
        help="train K-FAC through the simulated device and project its wall-clock time on a described system",
        description="Trains the run for real with the thermo solver (the system's hardware) and with the exact "
        "backend, then projects both on the system from what each step asked of the device.",
    )
    _add_training_arguments(ct, optimizer=False)
    _add_system_arguments(ct)
    ct.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    pj = sub.add_parser(
        "project",
        help="project the wall-clock time of whole training runs per method on a described system",
        description="Co-simulated (SimPy) time to train for the given steps with each method on a GPU, a "
        "link and analog chips. Every figure the projection uses is printed beside it.",
    )
    pj.add_argument("--task", default=None, help="a built-in task whose model is costed (default: --mlp)")
    pj.add_argument("--mlp", default="512x8", metavar="WIDTHxDEPTH", help="a square MLP to cost (default 512x8)")
    pj.add_argument("--batch-size", type=int, default=128, help="examples per step (default 128)")
    _add_system_arguments(pj)
    pj.add_argument("--steps", action="append", default=[], metavar="METHOD=N",
                    help="steps per method, repeatable; methods adam, sgd, kfac (digital), tkfac (thermodynamic, inverses), tkfac-solve (thermodynamic, solves), tngd "
                         "(default: adam=1000 kfac=1000 tkfac=1000)")
    pj.add_argument("--inverse-every", type=int, default=10, help="K-FAC inverse update interval (default 10)")
    pj.add_argument("--target-rel-error", type=float, default=1e-2, help="accuracy of analog inversions (default 1e-2)")
    pj.add_argument("--condition-number", type=float, default=1e3, help="condition number of a damped factor (default 1e3)")
    pj.add_argument("--out", type=Path, default=Path("results/project"), help="output folder (default results/project)")

    cal = sub.add_parser(
        "calibrate",
        help="fit the roofline to timings of the real K-FAC path on this machine; save a system file",
        description="Measures this machine's peak FLOP/s and memory bandwidth, times the phases of real K-FAC "
        "steps on the given tasks, fits the roofline's efficiencies and launch overhead, prints measured against "
        "predicted per phase, and saves a system description whose GPU is this machine.",
    )
    cal.add_argument("--tasks", default="digits-mlp,digits-cnn", help="comma-separated tasks to time (default digits-mlp,digits-cnn)")
    cal.add_argument("--batch-size", type=int, default=64, help="examples per step (default 64)")
    cal.add_argument("--out", type=Path, default=Path("results/calibration/system.toml"), help="system file to write (.toml or .yaml)")

    study = sub.add_parser("study", help="run a study: CSV of every point, a PNG plot and a Markdown report")
    studies = study.add_subparsers(dest="study", required=True, metavar="STUDY")
    asym = studies.add_parser(
        "asymptotic",
        help="per-layer time of digital vs thermodynamic K-FAC against layer width n; fitted exponents",
        description="Digital inversion (measured here and projected for a GPU) against the analog device's timing "
        "model, for layer widths and factor condition numbers. Finished points are kept; a rerun skips them.",
    )
    asym.add_argument("--full", action="store_true", help="the real-hardware size (n up to 16,384)")
    asym.add_argument("--sizes", type=_floats, default=None, help="layer widths, comma-separated (overrides the default)")
    asym.add_argument("--kappas", type=_floats, default=None, help="factor condition numbers, comma-separated")
    asym.add_argument("--gpu", default="A100", help="GPU preset of the roofline projection (default A100)")
    asym.add_argument("--hardware", default="published", help="analog hardware preset (default published)")
    asym.add_argument("--chips", type=int, default=1, help="analog chips (default 1)")
    asym.add_argument("--target-rel-error", type=float, default=1e-2, help="accuracy of the analog results (default 1e-2)")
    _add_sweep_arguments(asym, "results/asymptotic", workers=1,
                         workers_help="process-pool size (default 1: the measurements stay clean)")

    nz = studies.add_parser(
        "noise",
        help="K-FAC through the simulated device across bit widths, kT, mismatch and windows vs exact and Adam",
        description="Final loss and accuracy with seeds and 95%% confidence intervals, and the smallest bit width "
        "that keeps K-FAC ahead of Adam. Finished points are kept; a rerun skips them.",
    )
    nz.add_argument("--full", action="store_true", help="the full size (every knob on MLP and CNN, 600 steps, 5 seeds, more widths)")
    nz.add_argument("--tasks", type=_strings, default=None, help="tasks, comma-separated (default digits-mlp,digits-cnn; "
                    "the CNN sweeps bit widths only)")
    nz.add_argument("--steps", type=int, default=None, help="training steps per run")
    nz.add_argument("--seeds", type=int, default=None, help="seeds per point")
    nz.add_argument("--bits", type=_floats, default=None, help="bit widths, comma-separated")
    _add_sweep_arguments(nz, "results/noise")

    pr = studies.add_parser(
        "projections",
        help="projected time to target for ViT/ImageNet and the ogbg-molpcba GNN: Adam, digital and thermodynamic K-FAC",
        description="AlgoPerf baseline steps, K-FAC step ratios (published and measured here) and a sensitivity sweep "
        "over the device time constant, bits, link bandwidth and chips.",
    )
    pr.add_argument("--full", action="store_true", help="the full size (step ratios 0.5-1, denser sensitivity grids, "
                    "600 measured steps)")
    pr.add_argument("--workloads", type=_strings, default=None, help="vit-imagenet,gnn-molpcba (default both)")
    pr.add_argument("--gpu", default="V100", help="GPU preset (default V100, AlgoPerf's reference)")
    pr.add_argument("--chips", type=int, default=16, help="analog chips of the base system (default 16)")
    pr.add_argument("--knobs", type=_strings, default=None, help="sensitivity knobs: tau_scale,bits,link_scale,n_chips (default all)")
    pr.add_argument("--no-measure", action="store_true", help="skip measuring K-FAC's step ratio on the digits MLP")
    _add_sweep_arguments(pr, "results/projections")

    ds = studies.add_parser(
        "designspace",
        help="hardware design space: projected speedup against accuracy loss, with the Pareto front",
        description="Each design (converter bits, planned solve error, mismatch, time constant) trains K-FAC through "
        "the device for its accuracy loss against the exact backend and projects an AlgoPerf workload's time to "
        "target for its speedup over digital K-FAC. Finished points are kept; a rerun skips them.",
    )
    ds.add_argument("--full", action="store_true", help="the full size (600 steps, 5 seeds, a denser grid)")
    ds.add_argument("--task", default=None, help="model trained through each design (default digits-mlp)")
    ds.add_argument("--steps", type=int, default=None, help="training steps per run")
    ds.add_argument("--seeds", type=int, default=None, help="seeds per design")
    ds.add_argument("--bits", type=_floats, default=None, help="converter bit widths, comma-separated")
    ds.add_argument("--target-errors", type=_floats, default=None, help="planned relative errors of the solves")
    ds.add_argument("--mismatch", type=_floats, default=None, help="static mismatch sigmas, comma-separated")
    ds.add_argument("--tau-scales", type=_floats, default=None, help="time-constant multipliers, comma-separated")
    ds.add_argument("--workload", default=None, help="vit-imagenet or gnn-molpcba (default vit-imagenet)")
    _add_sweep_arguments(ds, "results/designspace")

    from studies.tngd import EXPERIMENTS

    for experiment, published in EXPERIMENTS.items():
        tn = studies.add_parser(
            f"tngd-{experiment}",
            help=f"thermodynamic NGD on the digits CNN, published experiment '{experiment}'",
            description=f"Published outcome: {published} Runs over seeds with 95%% confidence intervals and reports "
            "whether ours agrees. Finished points are kept; a rerun skips them.",
        )
        tn.add_argument("--full", action="store_true", help="the full size (20 epochs, 5 seeds, wider runtime sweep)")
        tn.add_argument("--epochs", type=int, default=None, help="training epochs per run (default 10)")
        tn.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 3)")
        tn.add_argument("--task", default=None, help="model and data (default digits-cnn)")
        _add_sweep_arguments(tn, f"results/tngd-{experiment}")

    every = studies.add_parser(
        "all",
        help="every study at its default size (or --full), each in OUT/<study>, and an index page",
        description="Runs asymptotic, noise, projections, designspace and the six tngd-* studies one after the other, "
        "each writing its CSV, "
        "PNG and Markdown report into OUT/<study>/, then OUT/README.md linking the reports: "
        "`tcd study all --out docs/studies` produces the study pages of the documentation.",
    )
    every.add_argument("--full", action="store_true", help="every study at its full size")
    _add_sweep_arguments(every, "results/studies", workers_help="process-pool size of every study but the "
                         "asymptotic one, which measures on one worker (default: CPU count)")

    presets = sub.add_parser("presets", help="print the hardware presets")
    presets.add_argument("names", nargs="*", help="presets to show (default: all)")
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from studies import solver_demo

    cfg = solver_demo.DemoConfig(
        size=args.size,
        condition_number=args.kappa,
        presets=args.presets,
        windows_tau=args.windows,
        seeds=args.seeds,
        workers=args.workers,
        out_dir=args.out,
    )
    csv_path = solver_demo.run(cfg, progress=not args.no_progress)
    rows = solver_demo.summarize(solver_demo.read_rows(csv_path))
    print(f"{'preset':<10} {'window/tau':>10} {'rms rel err':>12} {'theory':>10} {'analog us':>10}")
    for s in rows:
        print(
            f"{s['preset']:<10} {s['window_tau']:>10g} {s['rel_error_rms']:>12.3e} "
            f"{s['predicted_rel_error']:>10.3e} {s['analog_time_us']:>10.1f}"
        )
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')}, {csv_path.with_suffix('.md')}")
    return 0


def _options(pairs: list[str], flag: str) -> dict[str, object]:
    """``["damping=1e-2", "fisher_type=mc"]`` -> ``{"damping": 0.01, "fisher_type": "mc"}``."""
    import ast

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        try:
            value: object = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word such as mc or published
        out[key.strip()] = value
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from digital.train import TrainConfig, train

    optimizer_options = _options(args.opt, "--opt")
    solver_options = _options(args.solver_opt, "--solver-opt")
    if args.hardware is not None:
        target = optimizer_options if args.optimizer.lower() == "tngd" else solver_options
        target["hardware"] = args.hardware
    config = TrainConfig(
        task=args.task, optimizer=args.optimizer, lr=args.lr, optimizer_options=optimizer_options,
        solver=args.solver, solver_options=solver_options, steps=args.steps, batch_size=args.batch_size,
        seed=args.seed, eval_every=args.eval_every, on_nonfinite=args.on_nonfinite,
    )
    result = train(config, checkpoint=args.checkpoint, progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.task}_{args.optimizer}_{args.solver}_seed{args.seed}"
    csv_path = result.to_csv(args.out / f"{stem}.csv")
    png_path = _plot_history(result.history, args.out / f"{stem}.png", title=stem)
    final = result.final
    print(f"{'step':>6} {'train loss':>11} {'test loss':>10} {'test acc':>9}")
    for row in result.history:
        if "train_loss" in row:
            print(f"{row['step']:>6} {row['train_loss']:>11.4f} {row['test_loss']:>10.4f} {row['test_accuracy']:>9.4f}")
    analog = sum(row.get("analog_time_s", 0.0) for row in result.history)
    wall = sum(row["step_s"] for row in result.history[result.resumed_from :])
    print(f"final train loss {final['train_loss']:.4f}, test accuracy {final['test_accuracy']:.4f}; "
          f"host time {wall:.2f} s; analog device time {analog * 1e3:.3f} ms")
    print(f"wrote {csv_path}, {png_path}")
    return 0


def _cmd_cotrain(args: argparse.Namespace) -> int:
    from cosim.cotrain import cosimulate_training
    from digital.train import TrainConfig

    system = _system(args)
    config = TrainConfig(
        task=args.task, optimizer="kfac", lr=args.lr, optimizer_options=_options(args.opt, "--opt"),
        solver="thermo", solver_options=_options(args.solver_opt, "--solver-opt"), steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, eval_every=args.eval_every,
    )
    report = cosimulate_training(config, system, progress=not args.no_progress)
    print(report.table())
    print("assumptions:")
    for key, value in report.assumptions.items():
        print(f"  {key} = {value}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from cosim import SystemSpec
    from cosim.calibration import calibrate_from_training_runs
    from digital.tasks import build_task

    runs, labels = [], []
    for name in _strings(args.tasks):
        task = build_task(name)
        sub = task.train.subset(torch.arange(min(args.batch_size, len(task.train))))
        runs.append((task.model, sub.inputs, sub.targets))
        labels.append(name)
    report = calibrate_from_training_runs(runs, labels=labels)
    print(report.table())
    system = dataclasses.replace(SystemSpec.default(), gpu=report.after, name="this machine",
                                 notes=f"GPU replaced by this machine, calibrated on {', '.join(labels)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = system.save(args.out)
    print(f"wrote {path} (use it with: tcd project --system {path})")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    if args.study == "noise":
        return _study_noise(args)
    if args.study == "projections":
        return _study_projections(args)
    if args.study == "designspace":
        return _study_designspace(args)
    if args.study == "all":
        return _study_all(args)
    if args.study.startswith("tngd-"):
        return _study_tngd(args)
    from studies import asymptotic

    overrides: dict[str, object] = dict(
        gpu=args.gpu, hardware=args.hardware, n_chips=args.chips, target_rel_error=args.target_rel_error,
        workers=args.workers, scheduler=args.scheduler, out_dir=args.out,
    )
    if args.sizes:
        overrides["sizes"] = tuple(int(n) for n in args.sizes)
    if args.kappas:
        overrides["condition_numbers"] = tuple(args.kappas)
    cfg = asymptotic.AsymptoticConfig.full(**overrides) if args.full else asymptotic.AsymptoticConfig(**overrides)
    csv_path = asymptotic.run(cfg, progress=not args.no_progress)
    print(asymptotic.summary(asymptotic.sweep.read_rows(csv_path), cfg))
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')}, {csv_path.with_suffix('.md')}")
    return 0


def _study_noise(args: argparse.Namespace) -> int:
    from studies import noise

    overrides: dict[str, object] = dict(workers=args.workers, scheduler=args.scheduler, out_dir=args.out)
    for name in ("tasks", "steps", "seeds"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.bits:  # every task sweeps the widths given
        overrides["bits"] = tuple(int(b) for b in args.bits)
        overrides["bits_only"] = {task: overrides["bits"] for task in noise.NoiseConfig().bits_only}
    cfg = noise.NoiseConfig.full(**overrides) if args.full else noise.NoiseConfig(**overrides)
    csv_path = noise.run(cfg, progress=not args.no_progress)
    summary = noise.summarize(noise.sweep.read_rows(csv_path))
    for task in cfg.tasks:
        smallest = noise.smallest_precision(summary, task)
        print(f"{task}: smallest bit width keeping K-FAC ahead of Adam: {smallest if smallest is not None else 'none'}")
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')}, {csv_path.with_suffix('.md')}")
    return 0


def _study_projections(args: argparse.Namespace) -> int:
    from studies import projections

    overrides: dict[str, object] = dict(gpu=args.gpu, n_chips=args.chips, measure_ratio=not args.no_measure,
                                        workers=args.workers, scheduler=args.scheduler, out_dir=args.out)
    if args.workloads:
        overrides["workloads"] = args.workloads
    if args.knobs:
        overrides["knobs"] = args.knobs
    cfg = projections.ProjectionConfig.full(**overrides) if args.full else projections.ProjectionConfig(**overrides)
    csv_path = projections.run(cfg, progress=not args.no_progress)
    for r in projections.sweep.read_rows(csv_path):
        if r["knob"] == "base":
            print(f"{r['workload']:<13} K-FAC steps x{r['step_ratio']:<6g} Adam {r['adam_s'] / 3600:8.3g} h  "
                  f"digital K-FAC {r['kfac_s'] / 3600:8.3g} h  thermodynamic K-FAC {r['tkfac_s'] / 3600:8.3g} h "
                  f"({r['speedup_vs_adam']:.3g}x Adam, bottleneck {r['tkfac_bottleneck']})")
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')}, {csv_path.with_suffix('.md')}")
    return 0


def _study_tngd(args: argparse.Namespace) -> int:
    from studies import tngd

    experiment = args.study.removeprefix("tngd-")
    overrides: dict[str, object] = dict(workers=args.workers, scheduler=args.scheduler, out_dir=args.out)
    for name in ("epochs", "seeds", "task"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    cfg = (tngd.TNGDStudyConfig.full(experiment, **overrides) if args.full
           else tngd.TNGDStudyConfig(experiment=experiment, **overrides))
    csv_path = tngd.run(cfg, progress=not args.no_progress)
    rows = tngd.sweep.read_rows(csv_path)
    agrees, evidence = tngd.agreement(cfg, rows, tngd.summarize(rows))
    print(f"published: {tngd.EXPERIMENTS[experiment]}")
    print(f"ours: {evidence}")
    print(f"verdict: {tngd.verdict_text(agrees)}")
    print(f"wrote {csv_path}, {csv_path.with_suffix('.png')}, {csv_path.with_suffix('.md')}")
    return 0


STUDY_ORDER = ("asymptotic", "noise", "projections", "designspace", "tngd-wallclock", "tngd-analog-time", "tngd-delay",
               "tngd-noise", "tngd-bits", "tngd-runtime")


def _study_all(args: argparse.Namespace) -> int:
    common = [*(["--full"] if args.full else []), *(["--no-progress"] if args.no_progress else []),
              *(["--scheduler", args.scheduler] if args.scheduler else [])]
    pages = []
    for name in STUDY_ORDER:
        workers = ["--workers", str(args.workers)] if args.workers and name not in ("asymptotic", "tngd-runtime") else []
        print(f"== tcd study {name}")
        status = main(["study", name, "--out", str(args.out / name), *common, *workers])
        if status:
            return status
        report = args.out / name / f"{name}.md"
        pages.append((name, report.read_text().splitlines()[0].lstrip("# ")))
    index = ["# Studies", "", "Each page below was written by its study (`tcd study all"
             + (" --full" if args.full else "") + f" --out {args.out}`); the CSVs of every point lie beside it.", ""]
    index += [f"- [{title}]({name}/{name}.md): `tcd study {name}`" for name, title in pages]
    (args.out / "README.md").write_text("\n".join(index) + "\n")
    print(f"wrote {args.out / 'README.md'}")
    return 0


def _study_designspace(args: argparse.Namespace) -> int:
    from studies import designspace

    overrides: dict[str, object] = dict(workers=args.workers, scheduler=args.scheduler, out_dir=args.out)
    for name in ("task", "steps", "seeds", "workload"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    for flag, name in (("target_errors", "target_rel_error"), ("mismatch", "mismatch_sigma"), ("tau_scales", "tau_scale")):
        if getattr(args, flag):
            overrides[name] = getattr(args, flag)
    if args.bits:
        overrides["bits"] = tuple(int(b) for b in args.bits)
    cfg = designspace.DesignSpaceConfig.full(**overrides) if args.full else designspace.DesignSpaceConfig(**overrides)
    csv_path = designspace.run(cfg, progress=not args.no_progress)
    front = [r for r in designspace.sweep.read_rows(csv_path) if r["pareto"]]
    print(f"Pareto front ({len(front)} designs): speedup over digital K-FAC, accuracy loss (percentage points)")
    for r in sorted(front, key=lambda r: -r["speedup_vs_kfac"]):
        print(f"  {r['bits']:>2} bits, target error {r['target_rel_error']:<5g} mismatch {r['mismatch_sigma']:<5g} "
              f"tau x{r['tau_scale']:<5g}: {r['speedup_vs_kfac']:.3g}x, {100 * r['accuracy_loss']:+.2f} pp")
    print(f"wrote {csv_path} (per design), {cfg.out_dir / 'designspace_training.csv'}, "
          f"{cfg.out_dir / 'designspace_projections.csv'} (every point), {csv_path.with_suffix('.png')}, "
          f"{csv_path.with_suffix('.md')}")
    return 0


def _plot_history(history: list[dict[str, object]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], lw=0.8, alpha=0.6, label="batch loss")
    evals = [r for r in history if "train_loss" in r]
    ax.plot([r["step"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train loss")
    ax.plot([r["step"] for r in evals], [r["test_loss"] for r in evals], "s-", label="test loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


_PROJECT_METHODS = {
    "adam": {"method": "adam"},
    "sgd": {"method": "sgd"},
    "kfac": {"method": "kfac", "inverse_on": "gpu"},
    "tkfac": {"method": "kfac", "inverse_on": "analog"},
    "tkfac-solve": {"method": "kfac", "inverse_on": "analog", "analog_op": "solve"},
    "tngd": {"method": "tngd"},
}


def _cmd_project(args: argparse.Namespace) -> int:
    from cosim import LayerShape, ModelShape, StepModel, compare, write_csv

    system = _system(args)
    if args.task is not None:
        import torch

        from digital.tasks import build_task

        task = build_task(args.task)
        inputs = task.train.subset(torch.arange(min(args.batch_size, len(task.train)))).inputs
        shape = ModelShape.from_model(task.model, inputs, name=args.task)
    else:
        width, sep, depth = args.mlp.lower().partition("x")
        if not sep or not width.isdigit() or not depth.isdigit():
            raise ValueError(f"--mlp expects WIDTHxDEPTH such as 512x8, got {args.mlp!r}")
        layers = tuple(LayerShape(f"fc{i}", int(width), int(width)) for i in range(int(depth)))
        shape = ModelShape(layers, args.batch_size, int(width), name=f"mlp {args.mlp}")
    steps = _options(args.steps, "--steps") or {"adam": 1000, "kfac": 1000, "tkfac": 1000}
    runs = {}
    for method, n in steps.items():
        if method not in _PROJECT_METHODS:
            raise ValueError(f"unknown method {method!r} in --steps; known: {', '.join(_PROJECT_METHODS)}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"--steps {method}= needs a positive integer, got {n!r}")
        step = StepModel(**_PROJECT_METHODS[method], inv_update_steps=args.inverse_every,
                         target_rel_error=args.target_rel_error, factor_condition_number=args.condition_number)
        runs[method] = (step, n)
    projections = compare(shape, system, runs)
    base = projections[0]
    print(f"model: {shape.name}, {shape.n_params:,} parameters, batch {shape.batch_size}; system: "
          f"{system.gpu.name}, link {system.link.bandwidth_bps / 1e9:g} Gb/s, {system.analog.n_chips} analog chip(s)")
    print(f"{'method':<11} {'steps':>8} {'per step':>12} {'total':>12} {'vs ' + base.label:>14} {'energy':>12}  bottleneck")
    for p in projections:
        busiest = max(p.utilization, key=p.utilization.get) if p.utilization else "-"
        print(f"{p.label:<11} {p.n_steps:>8} {p.time_per_step_s * 1e3:>9.3f} ms {p.total_s:>10.2f} s "
              f"{base.total_s / p.total_s:>13.2f}x {p.energy_j:>10.1f} J  {busiest} {p.utilization.get(busiest, 0):.0%}")
    print("assumptions:")
    for key, value in base.assumptions.items():
        if not key.startswith("step."):
            print(f"  {key} = {value}")
    for p in projections:
        step_keys = ("step.method", "step.inverse_on", "step.analog_op", "step.inv_update_steps",
                     "step.target_rel_error", "step.factor_condition_number")
        print(f"  {p.label}: " + ", ".join(f"{k[5:]}={p.assumptions[k]}" for k in step_keys))
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(projections, args.out / "projection.csv")
    png_path = _plot_projection(projections, args.out / "projection.png")
    print(f"wrote {csv_path}, {png_path}")
    return 0


def _plot_projection(projections: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = sorted({k for p in projections for k in p.phase_s})
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(projections)
    for phase in phases:
        # busy time per phase, summed over tasks (phases overlap, so bars can exceed the makespan)
        values = [p.phase_s.get(phase, 0.0) / p.n_steps * 1e3 for p in projections]
        ax.bar([p.label for p in projections], values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.scatter([p.label for p in projections], [p.time_per_step_s * 1e3 for p in projections], color="k", zorder=3,
               marker="_", s=600, label="time per step")
    ax.set_ylabel("busy time per step (ms)")
    ax.set_title("projected step: busy time per phase and the step time")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cmd_presets(args: argparse.Namespace) -> int:
    import dataclasses

    from thermo.hardware import PRESETS, preset

    names = args.names or sorted(PRESETS)
    specs = {n: preset(n) for n in names}
    fields = [f.name for f in dataclasses.fields(next(iter(specs.values())))]
    print(f"{'field':<24}" + "".join(f"{n:>16}" for n in names))
    for f in fields:
        print(f"{f:<24}" + "".join(f"{str(getattr(s, f)):>16}" for s in specs.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "project":
            return _cmd_project(args)
        if args.command == "cotrain":
            return _cmd_cotrain(args)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        if args.command == "study":
            return _cmd_study(args)
        return _cmd_presets(args)
    except (ValueError, RuntimeError) as exc:
        print(f"tcd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
