"""What K-FAC needs from each supported layer type: the rows of input activations and output
gradients whose outer products build the Kronecker factors, and the gradient of the layer's
parameters as one ``(d_out, d_in [+1])`` matrix.

Weight sharing (Eschenhagen et al. 2023): a layer applied at ``R`` positions per example
(tokens, patches, nodes, convolution locations) sees inputs ``(N, R, d_in)`` and output
gradients ``(N, R, d_out)``.

- ``expand`` treats positions as extra batch: ``A = sum_{n,r} a a^T / (N R)``,
  ``G = sum_{n,r} g g^T / N``; exact for deep linear networks whose loss sums over positions.
- ``reduce`` averages inputs and sums gradients over positions per example:
  ``A = sum_n abar abar^T / N``, ``G = sum_n gsum gsum^T / N``; exact for deep linear networks
  whose output is pooled over positions before the loss.

For an ordinary layer (``R = 1``) both are the classic K-FAC factors of Martens and Grosse
(2015). The scaling follows curvlinops' ``KFACLinearOperator`` (mean-reduced loss).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..curvature import conv_layout_reason

Approximation = Literal["expand", "reduce"]
SUPPORTED_TYPES = (nn.Linear, nn.Conv2d)


def unsupported_reason(module: nn.Module) -> str | None:
    """Why K-FAC cannot precondition this module's parameters, or None if it can."""
    if not isinstance(module, SUPPORTED_TYPES):
        return f"{type(module).__name__} is not a Linear or Conv2d layer"
    if not module.weight.requires_grad:
        return "weight is frozen"
    if module.bias is not None and not module.bias.requires_grad:
        return "bias is frozen while the weight trains"
    if isinstance(module, nn.Conv2d):
        return conv_layout_reason(module)
    return None


def input_rows(module: nn.Module, x: Tensor) -> Tensor:
    """Layer inputs as ``(N, R, d_in)`` with the shared positions in the middle (``R = 1``
    without weight sharing); for Conv2d the unfolded patches (channel-major, like the weight)."""
    if isinstance(module, nn.Conv2d):
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return patches.transpose(1, 2)  # (N, L, C k k)
    return x.reshape(x.shape[0], -1, x.shape[-1])


def output_rows(module: nn.Module, g: Tensor) -> Tensor:
    """Output gradients as ``(N, R, d_out)`` matching :func:`input_rows`."""
    if isinstance(module, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)  # (N, H'W', C_out)
    return g.reshape(g.shape[0], -1, g.shape[-1])


def input_covariance(a: Tensor, approx: Approximation, bias: bool) -> Tensor:
    """``A`` (``d_in [+1]`` square) from inputs ``(N, R, d_in)``; a bias appends a constant 1."""
    n, r, _ = a.shape
    if approx == "expand":
        rows, denom = a.reshape(n * r, -1), n * r
    else:
        rows, denom = a.mean(1), n
    if bias:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
    return _symmetric(rows.mT @ rows / denom)


def gradient_covariance(g: Tensor, approx: Approximation, n_examples: int) -> Tensor:
    """Contribution of one set of per-example output gradients ``(N, R, d_out)`` (one column of
    the loss-Hessian square root, one MC sample, or the empirical gradient) to ``G``."""
    rows = g.reshape(-1, g.shape[-1]) if approx == "expand" else g.sum(1)
    return _symmetric(rows.mT @ rows / n_examples)


def _symmetric(m: Tensor) -> Tensor:
    """A blocked GEMM's ``M^T M`` is symmetric only to rounding; solvers check symmetry."""
    return 0.5 * (m + m.mT)


def gradient_matrix(module: nn.Module) -> Tensor | None:
    """The layer's gradient as ``(d_out, d_in [+1])`` (bias as the last column), None when the
    weight has no gradient this step."""
    w = module.weight
    if w.grad is None:
        return None
    if module.bias is None:
        return _as_matrix(w.grad, None)
    bias_grad = module.bias.grad if module.bias.grad is not None else torch.zeros_like(module.bias)
    return _as_matrix(w.grad, bias_grad)


def parameter_matrix(module: nn.Module) -> Tensor:
    """The layer's parameters as ``(d_out, d_in [+1])``, laid out like :func:`gradient_matrix`."""
    return _as_matrix(module.weight, module.bias)


def _as_matrix(weight: Tensor, bias: Tensor | None) -> Tensor:
    matrix = weight.reshape(weight.shape[0], -1)
    return matrix if bias is None else torch.cat([matrix, bias[:, None]], dim=1)


def split_update(module: nn.Module, update: Tensor) -> list[tuple[nn.Parameter, Tensor]]:
    """Inverse of :func:`gradient_matrix`: the update matrix back as per-parameter tensors."""
    w = module.weight
    if module.bias is None:
        return [(w, update.reshape(w.shape))]
    return [(w, update[:, :-1].reshape(w.shape)), (module.bias, update[:, -1])]
