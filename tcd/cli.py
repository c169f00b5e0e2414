"""Command-line interface: ``tcd <command> [options]`` (also ``python -m tcd``).

Exit status: 0 done; 1 a run stopped (divergence, a non-finite value) after writing what it had;
2 bad input (the one-line message names it and the fix); 130 interrupted (Ctrl-C: what was saved
and how to resume is printed); 141 the reader of the output went away (``tcd presets | head``).
``--debug`` shows the traceback instead of the one-line message.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cosim.step_graphs import METHODS
from cosim.system import GPU_PRESETS
from digital.optimizers import OPTIMIZERS
from digital.solvers import SOLVERS
from studies.registry import STUDIES, in_words, timed_names, write_index

from .arguments import (
    DEVICE_HELP,
    HARDWARE_HELP,
    SYSTEM_HELP,
    add_device_knobs,
    add_sweep_arguments,
    add_system_arguments,
    add_training_arguments,
    device_knobs,
    key_values,
    non_negative_int,
    positive_float,
    positive_int,
    strings,
    system_from_args,
)
from .plots import plot_history, plot_projection

EXIT_OK, EXIT_STOPPED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


class _Parser(argparse.ArgumentParser):
    """Every sub-command also takes ``--debug`` (so it may stand anywhere on the line)."""

    def add_subparsers(self, **kwargs: Any) -> Any:  # type: ignore[override]
        action = super().add_subparsers(**kwargs)
        original = action.add_parser

        def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
            sub = original(name, **kw)
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error instead of its one-line message")
            return sub

        action.add_parser = add_parser  # type: ignore[method-assign]
        return action


def _factor_or_none(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    value = positive_float(text)
    if value <= 1:
        raise argparse.ArgumentTypeError(f"expected a factor > 1 or 'none', got {text!r}")
    return value


def _version() -> str:
    from thermo.provenance import package_version

    return f"tcd (thermo-codesign) {package_version()}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tcd",
        description="Thermodynamic co-design simulator: analog Langevin linear algebra for "
        "second-order training.",
        epilog="Exit status: 0 done, 1 a run stopped (divergence, non-finite value) after writing its history, "
        "2 bad input, 130 interrupted (finished work is kept; rerun to resume).",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of its one-line message")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="the end-to-end answer: Adam, digital K-FAC, thermodynamic K-FAC and TNGD trained and co-simulated; "
             "time to a loss target, speedups, break-even devices",
        description="Trains the digits MLP with Adam, digital K-FAC, thermodynamic K-FAC (its solves on the simulated "
        "device) and TNGD, same seed and epochs, co-simulates every step on one system, and reports each method's "
        "projected time to a training-loss target, final test accuracy, speedup over Adam and, for the two "
        "thermodynamic methods, the device that would break even with Adam and with digital K-FAC. Writes demo.csv, "
        "demo.png and demo.md. Finished runs are kept; a rerun reuses them.",
    )
    demo.add_argument("--epochs", type=positive_float, default=20.0,
                      help="training epochs of every method (default 20; a fraction trains part of an epoch)")
    demo.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (default: the task's, 64)")
    demo.add_argument("--loss-target", type=positive_float, default=None,
                      help="training loss (nats) to time every method to (default: the loss Adam ends at)")
    demo.add_argument("--seed", type=non_negative_int, default=0, help="initialization, batch-order and device-noise seed")
    demo.add_argument("--system", default=None, help=SYSTEM_HELP)
    demo.add_argument("--gpu", default="A100", help=f"GPU preset when no --system ({', '.join(GPU_PRESETS)}; default A100)")
    demo.add_argument("--device", default="published", help=DEVICE_HELP + " when no --system (default published)")
    add_device_knobs(demo)
    demo.add_argument("--workers", type=positive_int, default=None, help="process-pool size (default: CPU count)")
    demo.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default results/demo)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    tr = sub.add_parser(
        "train",
        help=f"train a model with one of {', '.join(OPTIMIZERS)} on a pluggable solver; write CSV/PNG",
        description="Train one of the built-in tasks. The run is named after its whole configuration (two "
        "configurations never share files) and checkpoints itself beside its CSV: a rerun of the same command "
        "resumes where it stopped. A run that diverges stops, writes its history and exits with status 1.",
    )
    add_training_arguments(tr)
    tr.add_argument("--hardware", default=None, help=HARDWARE_HELP + " for --solver thermo or --optimizer tngd (default ideal)")
    tr.add_argument("--on-nonfinite", choices=("stop", "fallback"), default="stop", help="stop, or redo with the exact solver")
    tr.add_argument("--divergence-factor", type=_factor_or_none, default=100.0,
                    help="stop when the smoothed loss grows past this factor of its best (default 100; 'none': never)")
    tr.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file (default OUT/<run name>.ckpt; resumed if it exists)")
    tr.add_argument("--no-checkpoint", action="store_true", help="neither resume from nor write a checkpoint")
    tr.add_argument("--out", type=Path, default=Path("results/train"), help="output folder (default results/train)")
    tr.add_argument("--no-progress", action="store_true", help="hide the progress bar and the evaluations printed as they happen")

    ct = sub.add_parser(
        "cotrain",
        help="train K-FAC through the simulated device and project its wall-clock time on a described system",
        description="Trains the run for real with the thermo solver (the system's hardware) and with the exact "
        "backend, then projects both on the system from what each step asked of the device.",
    )
    add_training_arguments(ct, optimizer=False)
    add_system_arguments(ct)
    ct.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    pj = sub.add_parser(
        "project",
        help="project the wall-clock time of whole training runs per method on a described system",
        description="Co-simulated (SimPy) time to train for the given steps with each method on a GPU, a "
        "link and analog chips. Every figure the projection uses is printed beside it.",
    )
    pj.add_argument("--task", default=None, help="a built-in task whose model is costed (default: --mlp)")
    pj.add_argument("--mlp", default="512x8", metavar="WIDTHxDEPTH", help="a square MLP to cost (default 512x8)")
    pj.add_argument("--batch-size", type=positive_int, default=128, help="examples per step (default 128)")
    add_system_arguments(pj)
    pj.add_argument("--steps", action="append", default=[], metavar="METHOD=N",
                    help=f"steps per method, repeatable; methods: {METHODS.help()} (default: adam=1000 kfac=1000 tkfac=1000)")
    pj.add_argument("--inverse-every", type=positive_int, default=10, help="K-FAC inverse update interval (default 10)")
    pj.add_argument("--target-rel-error", type=positive_float, default=1e-2, help="accuracy of analog inversions (default 1e-2)")
    pj.add_argument("--condition-number", type=positive_float, default=1e3, help="condition number of a damped factor (default 1e3)")
    pj.add_argument("--out", type=Path, default=Path("results/project"), help="output folder (default results/project)")

    cal = sub.add_parser(
        "calibrate",
        help="fit the roofline to timings of the real K-FAC path on this machine; save a system file",
        description="Measures this machine's peak FLOP/s and memory bandwidth, times the phases of real K-FAC "
        "steps on the given tasks, fits the roofline's efficiencies and launch overhead, prints measured against "
        "predicted per phase, and saves a system description whose GPU is this machine.",
    )
    cal.add_argument("--tasks", type=strings, default=("digits-mlp", "digits-cnn"), help="comma-separated tasks to time (default digits-mlp,digits-cnn)")
    cal.add_argument("--batch-size", type=positive_int, default=64, help="examples per step (default 64)")
    cal.add_argument("--out", type=Path, default=Path("results/calibration/system.toml"), help="system file to write (.toml or .yaml)")
    cal.add_argument("--kernels", action="store_true", help="also time float32 GEMM, Cholesky, Cholesky inverse and eigh at "
                     "every factor size of the AlgoPerf workloads, write kernels.json beside the system file and give "
                     "the system's GPU those rates (use it with: tcd study projections --kernels FILE)")
    cal.add_argument("--on", default="cpu", choices=("cpu", "cuda"), help="where --kernels times them (default cpu)")

    study = sub.add_parser("study", help="run a study: CSV of every point, a PNG plot and a Markdown report")
    studies = study.add_subparsers(dest="study", required=True, metavar="STUDY")
    _add_study_parsers(studies)

    presets = sub.add_parser("presets", help="print the hardware, device, GPU and link presets")
    presets.add_argument("names", nargs="*", help="presets to show, of any kind (default: all)")
    return parser


def _add_study_parsers(studies: Any) -> None:
    """One sub-command per registered study (its own options), then ``all``."""
    for entry in STUDIES.entries():
        parser = studies.add_parser(entry.name, help=entry.summary, description=entry.value.description)
        entry.value.add_arguments(parser)

    every = studies.add_parser(
        "all",
        help="every study at its default size (or --full), each in OUT/<study>, and an index page",
        description=f"Runs {in_words(STUDIES.names())} one after the other, "
        "each writing its CSV, "
        "PNG and Markdown report into OUT/<study>/, then OUT/README.md linking the reports: "
        "`tcd study all --out docs/studies` produces the study pages of the documentation.",
    )
    every.add_argument("--full", action="store_true", help="every study at its full size")
    add_sweep_arguments(every, "results/studies", workers_help=f"process-pool size of every study but the "
                        f"{in_words(timed_names())} ones, which measure on one worker (default: CPU count)")


def _output_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) and prove it writable, before any work is done
    (:func:`studies.sweep.check_output_folder`, the check every sweep runs)."""
    from studies.sweep import check_output_folder

    check_output_folder(path)
    return path


def _pin(threads: int | None) -> None:
    """``--threads``: pin this process's thread pools (studies pin their workers themselves)."""
    if threads is not None:
        from studies.sweep import pin_threads

        pin_threads(threads)


def _wrote(*paths: Path | str) -> str:
    return "wrote " + ", ".join(str(p) for p in paths)


def _cmd_demo(args: argparse.Namespace) -> int:
    from studies import demo
    from studies.projections import describe_system

    cfg = demo.DemoConfig(
        epochs=args.epochs, batch_size=args.batch_size, loss_target=args.loss_target, seed=args.seed,
        gpu=args.gpu, device=args.device, system=args.system, knobs=tuple(sorted(device_knobs(args).items())),
        workers=args.workers, out_dir=_output_dir(args.out),
    )
    out = demo.run(cfg, progress=not args.no_progress)
    print(f"loss target {out.results.target:.4g} nats ({out.results.target_source}); projected on "
          f"{describe_system(demo.system_of(cfg))}")
    for line in demo.table_text(out.results):
        print(line)
    print(_wrote(out.csv, out.png, out.report))
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from digital.errors import TrainingInterrupted, TrainingStopped
    from digital.train import EVALUATION_HEADER, TrainConfig, format_evaluation, sidecar_path, train

    optimizer_options = key_values(args.opt, "--opt")
    solver_options = key_values(args.solver_opt, "--solver-opt")
    is_tngd = OPTIMIZERS.get(args.optimizer).takes_hardware  # an unknown name stops here, listing the names
    if args.hardware is not None:
        if not is_tngd and not (args.solver in SOLVERS and SOLVERS.canonical(args.solver) == "thermo"):
            raise ValueError(f"--hardware applies to --solver thermo or --optimizer tngd, not to {args.optimizer} with "
                             f"--solver {args.solver}; drop --hardware or add --solver thermo")
        (optimizer_options if is_tngd else solver_options)["hardware"] = args.hardware
    config = TrainConfig(
        task=args.task, optimizer=args.optimizer, lr=args.lr, optimizer_options=optimizer_options,
        solver=args.solver, solver_options=solver_options, steps=args.steps, batch_size=args.batch_size,
        seed=args.seed, eval_every=args.eval_every, on_nonfinite=args.on_nonfinite,
        divergence_factor=args.divergence_factor,
    )
    _pin(args.threads)
    out = _output_dir(args.out)
    stem = config.run_name()
    checkpoint = None if args.no_checkpoint else (args.checkpoint or out / f"{stem}.ckpt")
    if checkpoint is not None and checkpoint.exists():
        print(f"resuming {stem} from {checkpoint} (--no-checkpoint starts afresh)")
    try:
        result = train(config, checkpoint=checkpoint, progress=not args.no_progress)
    except TrainingInterrupted as exc:
        paths = _write_run(exc.result, out, stem)
        if checkpoint is not None and exc.checkpoint_step:
            resume = f"the checkpoint {checkpoint} holds step {exc.checkpoint_step}: rerun the same command to resume"
        elif checkpoint is not None:
            resume = "no checkpoint was written yet: a rerun starts afresh"
        else:
            resume = "drop --no-checkpoint to make a run resumable"
        print(f"tcd train: interrupted after step {len(exc.result.history)} of {config.steps}; history written to "
              f"{paths[0]}; {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TrainingStopped as exc:
        result = getattr(exc, "result", None)
        written = f"; history of {len(result.history)} steps written to {_write_run(result, out, stem)[0]}" if result else ""
        print(f"tcd train: {_one_line(exc)}{written}", file=sys.stderr)  # "training stopped/diverged ..."
        return EXIT_STOPPED
    csv_path, png_path = _write_run(result, out, stem)
    if args.no_progress:  # with progress on, each evaluation was printed as it happened
        print(EVALUATION_HEADER)
        for row in result.history:
            if "train_loss" in row:
                print(format_evaluation(row))
    final = result.final
    analog = sum(row.get("analog_time_s", 0.0) for row in result.history)
    wall = sum(row["step_s"] for row in result.history[result.resumed_from :])
    print(f"final train loss {final['train_loss']:.4f}, test accuracy {final['test_accuracy']:.4f}; "
          f"host time {wall:.2f} s; analog device time {analog * 1e3:.3f} ms")
    print(_wrote(csv_path, sidecar_path(csv_path), png_path))
    return EXIT_OK


def _write_run(result: Any, out: Path, stem: str) -> tuple[Path, Path]:
    """The history CSV (with its configuration and provenance beside it) and the loss plot."""
    csv_path = result.to_csv(out / f"{stem}.csv")
    title = stem if result.status == "completed" else f"{stem} ({result.status})"
    return csv_path, plot_history(result.history, out / f"{stem}.png", title=title)


def _cmd_cotrain(args: argparse.Namespace) -> int:
    from cosim.cotrain import cosimulate_training
    from digital.train import TrainConfig

    _pin(args.threads)
    system = system_from_args(args)
    config = TrainConfig(
        task=args.task, optimizer="kfac", lr=args.lr, optimizer_options=key_values(args.opt, "--opt"),
        solver="thermo", solver_options=key_values(args.solver_opt, "--solver-opt"), steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, eval_every=args.eval_every,
    )
    report = cosimulate_training(config, system, progress=not args.no_progress)
    print(report.table())
    print("assumptions:")
    for key, value in report.assumptions.items():
        print(f"  {key} = {value}")
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from cosim import SystemSpec
    from cosim.calibration import calibrate_from_training_runs
    from digital.tasks import build_task

    runs, labels = [], []
    for name in args.tasks:
        task = build_task(name)
        sub = task.train.subset(torch.arange(min(args.batch_size, len(task.train))))
        runs.append((task.model, sub.inputs, sub.targets))
        labels.append(name)
    report = calibrate_from_training_runs(runs, labels=labels)
    print(report.table())
    gpu = report.after
    _output_dir(args.out.parent)
    if args.kernels:
        from cosim.kernels import calibrate_kernels, factor_sizes
        from studies.projections import WORKLOADS, workload_shape

        sizes = factor_sizes(workload_shape(w, 8) for w in WORKLOADS)
        kernels = calibrate_kernels(sizes, device=args.on, source=f"factor sizes of {', '.join(WORKLOADS)}")
        print(kernels.table())
        print(f"wrote {kernels.save(args.out.parent / 'kernels.json')} (rates relative to GEMM: "
              + ", ".join(f"{k} {v:.3g}" for k, v in kernels.relative().items()) + ")")
        gpu = kernels.apply(gpu)
    system = dataclasses.replace(SystemSpec.default(), gpu=gpu, name="this machine",
                                 notes=f"GPU replaced by this machine, calibrated on {', '.join(labels)}")
    path = system.save(args.out)
    print(f"wrote {path} (use it with: tcd project --system {path})")
    return EXIT_OK


def _cmd_study(args: argparse.Namespace) -> int:
    _output_dir(args.out)
    if args.study == "all":
        return _study_all(args)
    study = STUDIES.get(args.study)
    cfg = study.config_from_args(args)
    csv_path = study.run(cfg, progress=not args.no_progress)
    for line in study.outcome(cfg, csv_path):
        print(line)
    print(_wrote(*study.written(cfg, csv_path)))
    return EXIT_OK


def _study_all(args: argparse.Namespace) -> int:
    """``tcd study all``: each registered study in turn, as its own command, then the index page."""
    common = [*(["--full"] if args.full else []), *(["--no-progress"] if args.no_progress else []),
              *(["--scheduler", args.scheduler] if args.scheduler else [])]
    for name in STUDIES.names():
        workers = ["--workers", str(args.workers)] if args.workers and not STUDIES.get(name).timed else []
        print(f"== tcd study {name}")
        status = main(["study", name, "--out", str(args.out / name), *common, *workers,
                       *(["--debug"] if getattr(args, "debug", False) else [])])
        if status:
            return status
    command = "tcd study all" + (" --full" if args.full else "") + f" --out {args.out}"
    print(f"wrote {write_index(args.out, command)}")
    return EXIT_OK


def _ratio(value: float) -> str:
    """A speedup with three significant digits, never ``0.00x`` (``0.000123x``, ``1.23e+04x``)."""
    return f"{value:.3g}x"


def _cmd_project(args: argparse.Namespace) -> int:
    import dataclasses

    from cosim import LayerShape, ModelShape, compare, project_run, write_csv
    from cosim.runs import offload_bound
    from studies.projections import describe_system

    system = system_from_args(args)
    if args.task is not None:
        import torch

        from digital.tasks import build_task

        task = build_task(args.task)
        inputs = task.train.subset(torch.arange(min(args.batch_size, len(task.train)))).inputs
        shape = ModelShape.from_model(task.model, inputs, name=args.task)
    else:
        width, sep, depth = args.mlp.lower().partition("x")
        if not sep or not width.isdigit() or not depth.isdigit() or int(width) < 1 or int(depth) < 1:
            raise ValueError(f"--mlp expects WIDTHxDEPTH with whole numbers >= 1, such as 512x8, got {args.mlp!r}")
        layers = tuple(LayerShape(f"fc{i}", int(width), int(width)) for i in range(int(depth)))
        shape = ModelShape(layers, args.batch_size, int(width), name=f"mlp {args.mlp}")
    steps = key_values(args.steps, "--steps") or {"adam": 1000, "kfac": 1000, "tkfac": 1000}
    runs = {}
    for method, n in steps.items():
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} in --steps; known: {', '.join(METHODS)}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"--steps {method}= needs a whole number >= 1, got {n!r}")
        step = METHODS.get(method).step(inv_update_steps=args.inverse_every, target_rel_error=args.target_rel_error,
                                        factor_condition_number=args.condition_number)
        runs[method] = (step, n)
    projections = compare(shape, system, runs)
    base = projections[0]
    digital_kfac = next((p for p in projections if p.label == "kfac"), None)
    print(f"model: {shape.name}, {shape.n_params:,} parameters, batch {shape.batch_size}; system: "
          f"{describe_system(system)}")
    kfac_column = f" {'vs kfac':>10}" if digital_kfac is not None and base is not digital_kfac else ""
    print(f"{'method':<11} {'steps':>8} {'per step':>12} {'total':>12} {'vs ' + base.label:>10}{kfac_column} "
          f"{'energy':>12}  bottleneck")
    for p in projections:
        busiest = max(p.utilization, key=p.utilization.get) if p.utilization else "-"
        vs_kfac = f" {_ratio(digital_kfac.total_s / p.total_s):>10}" if kfac_column else ""
        print(f"{p.label:<11} {p.n_steps:>8} {p.time_per_step_s * 1e3:>9.4g} ms {p.total_s:>10.4g} s "
              f"{_ratio(base.total_s / p.total_s):>10}{vs_kfac} {p.energy_j:>10.4g} J  "
              f"{busiest} {p.utilization.get(busiest, 0):.0%}")
    print("(speedups: the first method's time, or digital K-FAC's, over each method's; > 1x is faster)")
    adam = next((p for p in projections if runs[p.label][0].method == "adam"), None)
    for p in projections:
        step = runs[p.label][0]
        if step.method == "kfac" and step.inverse_on == "analog":
            # the digital K-FAC it replaces work of: same intervals, same steps (projected already when listed)
            twin = dataclasses.replace(step, inverse_on="gpu")
            digital = next((q for q in projections if runs[q.label] == (twin, p.n_steps)), None) \
                or project_run(shape, system, twin, p.n_steps, "kfac")
            bound = offload_bound(digital, step.analog_op, adam)
            print(f"bound of {p.label}: the device replaces {100 * bound.share:.3g}% of digital K-FAC's run; no device "
                  f"beats {_ratio(bound.vs_kfac)} over digital K-FAC" + (
                      f" or {_ratio(bound.vs_adam)} over adam" if bound.vs_adam is not None else "")
                  + f" (this one: {_ratio(digital.total_s / p.total_s)})")
    print("assumptions:")
    for key, value in base.assumptions.items():
        if not key.startswith("step."):
            print(f"  {key} = {value}")
    for p in projections:
        step_keys = ("step.method", "step.inverse_on", "step.analog_op", "step.inv_update_steps",
                     "step.target_rel_error", "step.factor_condition_number")
        print(f"  {p.label}: " + ", ".join(f"{k[5:]}={p.assumptions[k]}" for k in step_keys))
    out = _output_dir(args.out)
    csv_path = write_csv(projections, out / "projection.csv")
    sidecar = _write_sidecar(csv_path, {"model": shape.name, "batch_size": shape.batch_size, "steps": steps,
                                        "inverse_every": args.inverse_every, "target_rel_error": args.target_rel_error,
                                        "condition_number": args.condition_number, "system": system.to_dict()})
    png_path = plot_projection(projections, out / "projection.png")
    print(_wrote(csv_path, sidecar, png_path))
    return EXIT_OK


def _write_sidecar(csv_path: Path, config: dict[str, Any]) -> Path:
    """``<csv stem>.json`` beside a CSV: the configuration that produced it and its provenance."""
    import json

    from thermo.provenance import provenance

    path = csv_path.with_suffix(".json")
    path.write_text(json.dumps({"config": config, "provenance": provenance()}, indent=2, default=repr) + "\n")
    return path


_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"),
                (1e-12, "p"), (1e-15, "f"))
_UNIT_OF_SUFFIX = {"_s": "s", "_hz": "Hz", "_bps": "bit/s", "_w": "W", "_j": "J", "_v": "V", "_s2": "s^2"}


def _si(value: float, unit: str) -> str:
    """``5e10, "bit/s"`` -> ``'50 Gbit/s'``; ``1e-6, "s"`` -> ``'1 us'`` (4 significant digits)."""
    if value == 0 or not abs(value) < float("inf"):
        return f"{value:g} {unit}"
    scale, prefix = next(((f, p) for f, p in _SI_PREFIXES if abs(value) >= f), _SI_PREFIXES[-1])
    return f"{value / scale:.4g} {prefix}{unit}"


def _readable(value: object, field: str = "") -> str:
    """A field value as a person reads it: SI prefixes for the units named by the field's suffix
    (``_s``, ``_hz``, ``_bps``...), 4 significant digits, ``-`` for None (ideal / unbounded)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        unit = next((u for suffix, u in sorted(_UNIT_OF_SUFFIX.items(), key=lambda kv: -len(kv[0]))
                     if field.endswith(suffix)), None)
        if "(" in field:  # a unit given in the row name: "peak_flops.float32 (FLOP/s)"
            unit = field[field.index("(") + 1 : field.rindex(")")]
        if unit is not None and isinstance(value, float):
            return _si(value, unit)
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return str(value)


def _table(title: str, columns: dict[str, dict[str, object]]) -> list[str]:
    """``columns`` maps a preset name to its fields; one row per field."""
    names = list(columns)
    fields = list(dict.fromkeys(f for c in columns.values() for f in c))
    cells = {n: [_readable(columns[n].get(f), f) for f in fields] for n in names}
    width = max(16, *(len(n) + 2 for n in names), *(len(c) + 2 for col in cells.values() for c in col))
    lines = [title, f"{'field':<28}" + "".join(f"{n:>{width}}" for n in names)]
    lines += [f"{f:<28}" + "".join(f"{cells[n][i]:>{width}}" for n in names) for i, f in enumerate(fields)]
    return lines


def _cmd_presets(args: argparse.Namespace) -> int:
    import dataclasses

    from cosim.system import GPU_PRESETS, PRECISIONS
    from thermo.device import DEVICES, LINKS
    from thermo.hardware import PRESETS

    registries = {"hardware": PRESETS, "device": DEVICES, "GPU": GPU_PRESETS, "link": LINKS}
    unknown = sorted(n for n in args.names if not any(n in r for r in registries.values()))
    if unknown:
        raise ValueError(f"unknown preset(s) {unknown}; "
                         + "; ".join(f"{kind}: {', '.join(r)}" for kind, r in registries.items()))

    def chosen(names: Any) -> list[str]:
        return [n for n in names if not args.names or any(n.lower() == w.lower() for w in args.names)]

    blocks: list[list[str]] = []
    hardware = chosen(PRESETS)
    if hardware:
        specs = {n: dataclasses.asdict(PRESETS.get(n)()) for n in hardware}
        blocks.append(_table("hardware presets: one chip (thermo.HardwareSpec; '-' is an ideal converter or an "
                             "unbounded chip)", specs))
    devices = chosen(DEVICES)
    if devices:
        cols = {}
        for n in devices:
            d = DEVICES.get(n)()
            cols[n] = {"n_chips": d.n_chips, "link": d.link.name or "custom", "link bandwidth_bps": d.link.bandwidth_bps,
                       "link latency_s": d.link.latency_s, "coupling_delivery": d.coupling_delivery.value,
                       "dac_channels": d.dac_channels or "one per unit", "adc_channels": d.adc_channels or "one per unit",
                       "resident_couplings": d.resident_couplings, "replicas": d.replicas,
                       "chip n_units": d.chip.n_units, "chip bits_A": d.chip.bits_A, "chip tau_s": d.chip.tau_s,
                       "chip sample_rate_hz": d.chip.sample_rate_hz, "chip dac_conversion_s": d.chip.dac_conversion_s,
                       "chip adc_conversion_s": d.chip.adc_conversion_s, "chip readout": d.chip.readout}
        blocks.append(_table("device presets: chips, link and knobs (thermo.DeviceSpec; sources: "
                             "python -c \"import thermo; print(thermo.device_preset('NAME').source)\")", cols))
    gpus = chosen(GPU_PRESETS)
    if gpus:
        cols = {}
        for n in gpus:
            g = GPU_PRESETS.get(n)
            cols[n] = {**{f"peak_flops.{k} (FLOP/s)": g.peak_flops.get(k) for k in PRECISIONS},
                       "memory_bandwidth (B/s)": g.memory_bandwidth_bps, "launch_overhead_s": g.launch_overhead_s,
                       "compute_efficiency": g.compute_efficiency, "memory_efficiency": g.memory_efficiency,
                       "power_w": g.power_w}
        blocks.append(_table("GPU presets (cosim.GPUSpec)", cols))
    links = chosen(LINKS)
    if links:
        cols = {n: {"bandwidth_bps": LINKS.get(n).bandwidth_bps, "latency_s": LINKS.get(n).latency_s} for n in links}
        blocks.append(_table("link presets (thermo.device.LinkSpec)", cols))
    print("\n\n".join("\n".join(b) for b in blocks))
    return EXIT_OK


_COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "project": _cmd_project,
    "cotrain": _cmd_cotrain,
    "calibrate": _cmd_calibrate,
    "study": _cmd_study,
    "presets": _cmd_presets,
}


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (a ``KeyError`` is not quoted)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _silence_stdout() -> None:
    """After a closed pipe: send what Python still flushes at exit to /dev/null, not to a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _one_line_warnings(name: str) -> Any:
    """``warnings.showwarning`` that prints ``<command>: warning: <message>`` (no file and line)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        print(f"{name}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    name = f"tcd {args.command}" + (f" {args.study}" if args.command == "study" else "")
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.showwarning = _one_line_warnings(name)
            return _COMMANDS[args.command](args)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        from studies.sweep import SweepInterrupted

        if isinstance(exc, SweepInterrupted):
            print(f"{name}: {_one_line(exc)}", file=sys.stderr)
        elif args.command in ("study", "demo"):  # interrupted outside a sweep: its store is whole
            print(f"{name}: interrupted; every finished point is kept in the study's store: rerun the same command to "
                  "resume", file=sys.stderr)
        else:
            print(f"{name}: interrupted before it finished; nothing of it was written: rerun the command",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes one line
        if args.debug:
            raise
        if isinstance(exc, (ValueError, LookupError, OSError)):
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, RuntimeError):
            print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_STOPPED
        print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback, "
              "and report it)", file=sys.stderr)
        return EXIT_STOPPED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
