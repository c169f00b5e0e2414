"""Argument types and the option groups that several ``tcd`` commands share.

Every count is checked where it is parsed: ``--steps 0``, ``--seeds 2.5`` or ``--bits 4.5`` stop
with argparse's one-line usage error instead of running a default or truncating.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (``0``, ``-3``, ``2.5`` and ``1e3`` are refused)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, and intervals where 0 means never)."""
    return _whole_number(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def floats(text: str) -> tuple[float, ...]:
    """``"1,4,16"`` -> ``(1.0, 4.0, 16.0)``; at least one number."""
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def positive_floats(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers > 0."""
    values = floats(text)
    if not all(0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers > 0, got {text!r}")
    return values


def non_negative_floats(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers >= 0 (mismatch sigmas)."""
    values = floats(text)
    if not all(0 <= v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}")
    return values


def positive_ints(text: str) -> tuple[int, ...]:
    """``"4,8,16"`` -> ``(4, 8, 16)``: whole numbers >= 1 (``4.5`` is refused, not truncated)."""
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers >= 1, got {text!r}")
    return values


def strings(text: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; at least one name."""
    values = tuple(t.strip() for t in text.split(",") if t.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def key_values(pairs: list[str], flag: str) -> dict[str, object]:
    """``["damping=1e-2", "fisher_type=mc"]`` -> ``{"damping": 0.01, "fisher_type": "mc"}``."""
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


HARDWARE_HELP = "a hardware preset (ideal, published, noisy) or a .toml/.yaml hardware file"
SYSTEM_HELP = "a .toml/.yaml system file (GPU, link, analog hardware, chips) replacing the presets"


def add_training_arguments(parser: argparse.ArgumentParser, optimizer: bool = True) -> None:
    """The options of one training run (``tcd train``, ``tcd cotrain``)."""
    parser.add_argument("--task", default="digits-mlp", help="digits-mlp, digits-cnn, digits-vit, graphs-gnn, digits-linear-mse")
    if optimizer:
        parser.add_argument("--optimizer", default="kfac", help="kfac, ngd, tngd, adam, adamw or sgd (default kfac)")
        parser.add_argument("--solver", default="exact", help="solver backend of kfac/ngd: exact, cg or thermo (default exact)")
    parser.add_argument("--lr", type=positive_float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--steps", type=positive_int, default=200, help="training steps (default 200)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="examples per step (default: the task's)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="initialization and batch-order seed")
    parser.add_argument("--eval-every", type=non_negative_int, default=50, help="evaluate train/test every N steps (0: at the end)")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="optimizer option, repeatable (e.g. damping=1e-2)")
    parser.add_argument("--solver-opt", action="append", default=[], metavar="KEY=VALUE", help="solver option, repeatable (e.g. target_rel_error=1e-3)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="pin torch, BLAS and numba to N threads (default: their own; on a busy shared machine 1 "
                        "is often fastest for the small built-in models)")


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    """A described system: a file, or presets."""
    parser.add_argument("--system", type=Path, default=None, help=SYSTEM_HELP)
    parser.add_argument("--gpu", default="A100", help="GPU preset when no --system (V100, A100, H100)")
    parser.add_argument("--link", default="paper-50gbps", help="link preset when no --system")
    parser.add_argument("--hardware", default="published", help=HARDWARE_HELP + " when no --system")
    parser.add_argument("--chips", type=positive_int, default=1, help="analog chips when no --system")


def add_sweep_arguments(
    parser: argparse.ArgumentParser, out: str, workers: int | None = None,
    workers_help: str = "process-pool size (default: CPU count)",
) -> None:
    """The options every study shares: where its points run, where it writes, the progress bar."""
    parser.add_argument("--workers", type=positive_int, default=workers, help=workers_help)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (or 'local'); default: process pool")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"output folder (default {out})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
