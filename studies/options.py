"""Command-line option types and groups that the studies declare (``tcd study <name>``), and the
mechanical mapping of parsed options onto a study config.

The studies declare their own options (:meth:`studies.protocol.Study.add_arguments`), so the
argument types live here, below ``tcd`` (layers import only downwards); ``tcd.arguments``
re-exports them for the other commands. Every count is checked where it is parsed: ``--steps 0``,
``--seeds 2.5`` or ``--bits 4.5`` stop with argparse's one-line usage error instead of running a
default or truncating.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from thermo.device import DEVICES, LINKS, CouplingDelivery
from thermo.hardware import PRESETS as HARDWARE_PRESETS

HARDWARE_HELP = f"a hardware preset ({', '.join(HARDWARE_PRESETS)}) or a .toml/.yaml hardware file"
SYSTEM_HELP = "a .toml/.yaml system file (GPU and device: chips, link, knobs) replacing the presets"
DEVICE_HELP = f"a device preset ({', '.join(DEVICES)}) or a .toml/.yaml device file"
LINK_HELP = f"a link preset ({', '.join(LINKS)})"
KNOBS = ("converter_channels", "coupling_delivery", "resident_couplings", "replicas")
"""The device knobs every command that describes a device takes (:func:`add_device_knobs`)."""


def add_device_knobs(parser: argparse.ArgumentParser) -> None:
    """The architecture knobs of :class:`thermo.DeviceSpec`, each left at the device's own value
    unless given (see :func:`device_knobs`)."""
    group = parser.add_argument_group("device knobs (default: the device's own)")
    group.add_argument("--converter-channels", type=positive_int, default=None, metavar="N",
                       help="DAC and ADC channels per chip (1: serial converters; default one per unit)")
    group.add_argument("--coupling-delivery", choices=[d.value for d in CouplingDelivery], default=None,
                       help="how couplings reach the chips: one shared link with a copy per chip, one broadcast "
                            "transfer, or one link per chip")
    group.add_argument("--resident-couplings", action=argparse.BooleanOptionalAction, default=None,
                       help="programmed couplings stay on a chip until they change")
    group.add_argument("--replicas", action=argparse.BooleanOptionalAction, default=None,
                       help="a chip larger than a matrix holds floor(units / n) copies and runs that many chains")


def device_knobs(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs given on the command line, as :class:`thermo.DeviceSpec` field changes."""
    out: dict[str, Any] = {}
    if getattr(args, "converter_channels", None) is not None:
        out["dac_channels"] = out["adc_channels"] = args.converter_channels
    for name in KNOBS[1:]:
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


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


def add_sweep_arguments(
    parser: argparse.ArgumentParser, out: str, workers: int | None = None,
    workers_help: str = "process-pool size (default: CPU count)",
) -> None:
    """The options every study shares: where its points run, where it writes, the progress bar."""
    parser.add_argument("--workers", type=positive_int, default=workers, help=workers_help)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (or 'local'); default: process pool")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"output folder (default {out})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options the user gave (``None`` means "the study's default"; 0 is refused by the parser)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def sweep_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields of :func:`add_sweep_arguments`' options: ``workers``, ``scheduler``, ``out_dir``."""
    return dict(workers=args.workers, scheduler=args.scheduler, out_dir=args.out)
