"""Argument types and the option groups that several ``tcd`` commands share.

Every count is checked where it is parsed: ``--steps 0``, ``--seeds 2.5`` or ``--bits 4.5`` stop
with argparse's one-line usage error instead of running a default or truncating. The types and
the sweep options are defined in :mod:`studies.options` (the studies declare their own options,
and ``studies`` may not import ``tcd``) and re-exported here for every command.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from cosim.system import GPU_PRESETS, SystemSpec
from digital.optimizers import OPTIMIZERS
from digital.solvers import SOLVERS
from digital.tasks import TASKS
from studies.options import (
    DEVICE_HELP,
    HARDWARE_HELP,
    LINK_HELP,
    SYSTEM_HELP,
    add_device_knobs,
    add_sweep_arguments,
    device_knobs,
    floats,
    non_negative_floats,
    non_negative_int,
    positive_float,
    positive_floats,
    positive_int,
    positive_ints,
    strings,
)

__all__ = [
    "HARDWARE_HELP", "SYSTEM_HELP", "add_sweep_arguments", "add_system_arguments", "add_training_arguments", "floats",
    "key_values", "system_from_args", "non_negative_floats", "non_negative_int", "positive_float", "positive_floats", "positive_int",
    "positive_ints", "strings",
]


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


def add_training_arguments(parser: argparse.ArgumentParser, optimizer: bool = True) -> None:
    """The options of one training run (``tcd train``, ``tcd cotrain``)."""
    parser.add_argument("--task", default="digits-mlp", help=f"{', '.join(TASKS)} (default digits-mlp)")
    if optimizer:
        parser.add_argument("--optimizer", default="kfac", help=f"{', '.join(OPTIMIZERS)} (default kfac)")
        parser.add_argument("--solver", default="exact",
                            help=f"solver backend of the optimizers that take one: {', '.join(SOLVERS)} (default exact)")
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
    """A described system: a file, or presets; the device knobs apply to either."""
    parser.add_argument("--system", type=Path, default=None, help=SYSTEM_HELP)
    parser.add_argument("--gpu", default="A100", help=f"GPU preset when no --system ({', '.join(GPU_PRESETS)})")
    parser.add_argument("--device", default="published", help=DEVICE_HELP + " when no --system (default published)")
    parser.add_argument("--link", default=None, help=LINK_HELP + " replacing the device's, when no --system")
    parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " replacing the device's chip, when no --system")
    parser.add_argument("--chips", type=positive_int, default=None, help="analog chips when no --system (default: the device's)")
    add_device_knobs(parser)


def system_from_args(args: argparse.Namespace) -> SystemSpec:
    """The system :func:`add_system_arguments` describes: the ``--system`` file, or the presets,
    with the device knobs given on the command line applied."""
    if args.system is not None:
        system = SystemSpec.load(args.system)
    else:
        system = SystemSpec.from_presets(gpu=args.gpu, link=args.link, hardware=args.hardware, n_chips=args.chips,
                                         device=args.device)
    knobs = device_knobs(args)
    return system.replace(device=system.device.replace(**knobs)) if knobs else system
