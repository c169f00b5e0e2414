"""Where a swept knob keeps K-FAC's second-order advantage over Adam.

One rule serves the noise-tolerance and design-space studies: a setting keeps the advantage when
its mean final training loss over seeds stays below Adam's on the same task, and none of its runs
needed the exact fallback or failed (the device alone trained). The verdict for a knob is the
start of the run of its values, from the most favourable end, that all keep it: the smallest bit
width from which every wider one does, the largest planned error up to which every smaller one
does. A value regaining the advantage after one lost it does not count.
"""

from __future__ import annotations

from collections.abc import Iterable


def keeps_advantage(train_loss: float, adam_loss: float, problems: int) -> bool:
    """Mean final training loss below Adam's, with no fallback or failed run (``problems``)."""
    return train_loss < adam_loss and problems == 0


def kept_from(values: Iterable[tuple[float, bool]], descending: bool) -> float | None:
    """The last value of the run, from the most favourable end, whose settings all keep the
    advantage: ``values`` are ``(value, keeps)`` pairs; ``descending`` when larger values are
    more favourable (bit widths), ascending otherwise (planned errors). None if even the most
    favourable does not keep it."""
    kept = None
    for value, keeps in sorted(values, reverse=descending):
        if not keeps:
            break
        kept = value
    return kept
