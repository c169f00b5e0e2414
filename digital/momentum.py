"""Heavy-ball momentum shared by the second-order optimizers."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def heavy_ball(state: dict[str, Any], direction: Tensor, momentum: float) -> Tensor:
    """``m <- momentum m + direction`` in ``state["momentum_buffer"]`` (started at ``direction``);
    returns ``m``, or ``direction`` itself when ``momentum`` is zero."""
    if not momentum:
        return direction
    buf = state.get("momentum_buffer")
    if buf is None:
        buf = state["momentum_buffer"] = direction.clone()
    else:
        buf.mul_(momentum).add_(direction)
    return buf
