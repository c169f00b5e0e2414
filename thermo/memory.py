"""The memory budget: a plan that would allocate more refuses before it starts.

A simulation path that forms dense arrays (the chip simulator's ``d x d`` couplings and its
batched chains, a formed Jacobian) asks :func:`check_memory` first. The budget is, in bytes,
``TCD_MEMORY_BUDGET`` from the environment when set (``"8e9"``, ``"8GB"``, ``"512MiB"``), else
half of this machine's physical memory: a plan beyond it would swap or be killed, so it is
refused with a message naming the size, the budget and the alternative path.
"""

from __future__ import annotations

import os
import re

from .errors import MemoryBudgetError

ENV_VAR = "TCD_MEMORY_BUDGET"
_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"8e9"``, ``"8GB"``, ``"512 MiB"`` -> bytes; a clear error for anything else."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise MemoryBudgetError(f"cannot read {text!r} as a size in bytes; write e.g. 8e9, 8GB or 512MiB")
    try:
        value = float(match.group(1)) * _UNITS[unit]
    except ValueError:
        raise MemoryBudgetError(f"cannot read {text!r} as a size in bytes; write e.g. 8e9, 8GB or 512MiB") from None
    if not value > 0:
        raise MemoryBudgetError(f"a memory budget must be > 0 bytes, got {text!r}")
    return int(value)


def physical_memory_bytes() -> int:
    """This machine's physical memory (bytes)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget_bytes() -> int:
    """The budget in force (bytes): ``TCD_MEMORY_BUDGET`` or half the physical memory."""
    text = os.environ.get(ENV_VAR)
    return parse_bytes(text) if text else physical_memory_bytes() // 2


def format_bytes(n: float) -> str:
    """``1.6e10`` -> ``'16.0 GB'`` (decimal units, as memory sizes are quoted)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def check_memory(n_bytes: float, what: str, alternative: str, budget: int | None = None) -> None:
    """Refuse a plan of ``n_bytes`` above the budget, naming ``what`` it is and the ``alternative``.

    ``alternative`` completes "use ... instead" (e.g. ``"an ideal coupling DAC (exact low-rank
    path)"``); the message also says how to raise the budget.
    """
    limit = memory_budget_bytes() if budget is None else budget
    if n_bytes > limit:
        raise MemoryBudgetError(
            f"{what} would need {format_bytes(n_bytes)}, above the memory budget of {format_bytes(limit)}; "
            f"use {alternative} instead, or raise the budget with {ENV_VAR}=<bytes>"
        )
