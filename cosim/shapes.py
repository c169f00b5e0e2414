"""What the cost model needs of a network: its K-FAC layers' shapes, the batch and the output width.

:meth:`ModelShape.from_model` records them by running the model once; the step graphs
(:mod:`cosim.step_graphs`) turn them into FLOPs, bytes and device jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


class WorkloadError(ValueError):
    """A model shape or step description that cannot be costed."""


@dataclass(frozen=True)
class LayerShape:
    """A layer K-FAC preconditions: ``d_in`` inputs (a convolution's ``C_in k k``) and ``d_out``
    outputs per position, applied at ``positions`` places per example (tokens, patches, nodes,
    output pixels; 1 for a plain layer)."""

    name: str
    d_in: int
    d_out: int
    positions: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        for f in ("d_in", "d_out", "positions"):
            if not (isinstance(getattr(self, f), int) and getattr(self, f) >= 1):
                raise WorkloadError(f"LayerShape {self.name!r}: {f} must be an integer >= 1, got {getattr(self, f)!r}")

    @property
    def dim_a(self) -> int:
        return self.d_in + int(self.bias)

    @property
    def dim_g(self) -> int:
        return self.d_out

    @property
    def n_params(self) -> int:
        return self.d_out * self.dim_a


@dataclass(frozen=True)
class ModelShape:
    """What the cost model needs of a network: its K-FAC layers, the batch size, the output
    width, and the parameters updated first-order (LayerNorm, embeddings...)."""

    layers: tuple[LayerShape, ...]
    batch_size: int
    output_dim: int
    other_params: int = 0
    name: str = ""
    unmodelled_step_s: float = 0.0
    """Seconds per step of digital work the layer model does not cover (a GNN's message gather
    and scatter, ...), charged to every method's forward-backward on the GPU: an anchor's
    residual (:func:`cosim.calibration.anchor_to_step` with ``mode="residual"``), not a model."""

    def __post_init__(self) -> None:
        if not self.layers:
            raise WorkloadError("ModelShape needs at least one layer")
        for f in ("batch_size", "output_dim"):
            if not (isinstance(getattr(self, f), int) and getattr(self, f) >= 1):
                raise WorkloadError(f"ModelShape.{f} must be an integer >= 1, got {getattr(self, f)!r}")
        if self.other_params < 0:
            raise WorkloadError(f"ModelShape.other_params must be >= 0, got {self.other_params!r}")
        if not (isinstance(self.unmodelled_step_s, (int, float)) and math.isfinite(self.unmodelled_step_s)
                and self.unmodelled_step_s >= 0):
            raise WorkloadError(f"ModelShape.unmodelled_step_s must be finite seconds >= 0, got {self.unmodelled_step_s!r}")

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers) + self.other_params

    @classmethod
    def from_model(cls, model: nn.Module, example_inputs: object, name: str = "") -> ModelShape:
        """Shapes recorded by running ``model`` once on ``example_inputs`` (a batch; a tuple is
        unpacked into the call): every Linear and Conv2d with the number of positions it was
        applied at."""
        from digital.models import model_inputs_call

        found: dict[str, LayerShape] = {}
        handles = []
        for lname, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor, lname: str = lname) -> None:
                    if isinstance(mod, nn.Conv2d):
                        d_in = mod.in_channels // mod.groups * math.prod(mod.kernel_size)
                        positions = output.shape[-2] * output.shape[-1]
                        d_out = mod.out_channels
                    else:
                        d_in, d_out = mod.in_features, mod.out_features
                        positions = output[0].numel() // d_out
                    found[lname] = LayerShape(lname, d_in, d_out, positions, mod.bias is not None)

                handles.append(module.register_forward_hook(hook))
        try:
            with torch.no_grad():
                out = model_inputs_call(model, example_inputs)
        finally:
            for h in handles:
                h.remove()
        layer_params = {id(p) for lname in found for p in model.get_submodule(lname).parameters(recurse=False)}
        other = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in layer_params)
        return cls(tuple(found.values()), int(out.shape[0]), int(out.shape[-1]), other, name)
