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
        return _cmd_presets(args)
    except (ValueError, RuntimeError) as exc:
        print(f"tcd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
