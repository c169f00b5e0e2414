"""Curvature in factored form for natural-gradient methods: per-example Jacobians of the network
outputs, square-root factors of the loss Hessian in the outputs, and the low-rank factor ``U`` of
the generalized Gauss-Newton matrix (GGN) of a batch.

Conventions (shared by NGD and TNGD):

* ``N`` is the number of trainable parameters, in ``model.named_parameters()`` order, each
  flattened row-major and concatenated (:func:`flatten_params`).
* The model maps a batch to outputs ``z`` of shape ``(b, d_z)`` (logits or regression values).
* The batch loss is the MEAN over examples of a per-example loss ``l(z_i, y_i)``:
  ``cross_entropy`` is ``-log softmax(z_i)[y_i]``, ``mse`` is ``0.5 * ||z_i - y_i||^2`` (a sum
  over outputs, not torch's default mean over them; :func:`batch_loss` computes both).
* ``H_i = d^2 l / dz_i^2`` (``d_z x d_z``) and the GGN is ``G = (1/b) sum_i J_i^T H_i J_i`` with
  ``J_i = dz_i / dtheta`` (``d_z x N``). For cross-entropy ``G`` is the Fisher; for a model linear
  in its parameters with ``mse`` it is the exact Hessian of the loss.

``G = U U^T`` with ``U`` of shape ``(N, b d_z)``: the rank ``r = b d_z`` is small when the batch is,
which is what Woodbury, matrix-free CG and the thermodynamic device exploit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from .errors import UnsupportedConfigurationError
from .losses import check_loss, loss_function

Inputs = Tensor | tuple[Tensor, ...]


# -- parameters as one vector --------------------------------------------------------------
def trainable_params(model: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters by name, in ``named_parameters()`` order, detached (the
    functional transforms differentiate with respect to these leaves, not the module's)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def flatten_params(tensors: Mapping[str, Tensor] | Iterable[Tensor]) -> Tensor:
    """Concatenate tensors (a name-to-tensor mapping in its order, or an iterable) flattened
    row-major into one vector of shape ``(N,)``."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a vector ``(N,)`` back into tensors shaped as ``like`` (views of ``vector``)."""
    total = sum(t.numel() for t in like.values())
    if vector.ndim != 1 or vector.numel() != total:
        raise UnsupportedConfigurationError(
            f"cannot unflatten a vector of shape {tuple(vector.shape)} into {total} parameters"
        )
    out: dict[str, Tensor] = {}
    offset = 0
    for name, t in like.items():
        out[name] = vector[offset : offset + t.numel()].view(t.shape)
        offset += t.numel()
    return out


# -- Jacobians -----------------------------------------------------------------------------
def per_example_jacobian(
    model: nn.Module, params: Mapping[str, Tensor], inputs: Inputs, *, return_outputs: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Jacobians ``J_i = dz_i / dtheta`` of every example's outputs, shape ``(b, d_z, N)``.

    ``params`` names the parameters to differentiate (others keep the module's values); columns
    follow its order. ``inputs`` is a tensor or a tuple of tensors with the batch dimension
    first (the model is called as ``model(*inputs)``). Each example runs through the model as a
    batch of one (``vmap`` over ``jacrev``), so layers that mix examples (batch norm in
    training mode) are not supported. With ``return_outputs`` also returns the outputs ``z``
    ``(b, d_z)`` of the same forward pass (detached).
    """
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    if not xs or any(x.ndim == 0 for x in xs):
        raise UnsupportedConfigurationError("inputs must be a tensor or tuple of tensors with a batch dimension first")
    names = list(params)

    def single(p: dict[str, Tensor], *x: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(model, p, tuple(t.unsqueeze(0) for t in x))
        if out.ndim != 2 or out.shape[0] != 1:
            raise UnsupportedConfigurationError(
                f"the model must map a batch to outputs of shape (b, d_z); a batch of one gave {tuple(out.shape)}"
            )
        out = out[0]
        return out, out  # (value to differentiate, auxiliary copy of the outputs)

    with torch.enable_grad():  # the transforms need autograd even inside an optimizer's no_grad step
        jac, outputs = vmap(jacrev(single, has_aux=True), in_dims=(None, *([0] * len(xs))))(dict(params), *xs)
    b, d_z = outputs.shape
    J = torch.cat([jac[n].reshape(b, d_z, -1) for n in names], dim=2)
    return (J, outputs.detach()) if return_outputs else J


# -- loss Hessians -------------------------------------------------------------------------
def loss_hessian_factor(outputs: Tensor, loss: str) -> Tensor:
    """Square-root factors ``L_i`` (``(b, d_z, d_z)``) with ``L_i L_i^T = H_i``, the Hessian of the
    per-example loss in the outputs ``(b, d_z)``.

    ``cross_entropy``: ``H = diag(p) - p p^T`` with ``p = softmax(z)``, factored as
    ``L = diag(sqrt p) - p sqrt(p)^T`` (``L L^T = diag p - 2 p p^T + p (sum p) p^T``, and
    ``sum p = 1``). ``mse`` (``0.5 ||z - y||^2``): ``H = L = I``.
    """
    p = _probabilities(outputs, loss)
    if p is None:
        return _identities(outputs)
    sqrt_p = p.sqrt()
    return torch.diag_embed(sqrt_p) - p[:, :, None] * sqrt_p[:, None, :]


def loss_hessian(outputs: Tensor, loss: str) -> Tensor:
    """The per-example loss Hessians ``H_i`` (``(b, d_z, d_z)``) in the outputs ``(b, d_z)``:
    ``diag(p) - p p^T`` (``p = softmax(z)``) for ``cross_entropy``, ``I`` for ``mse``; the
    diagonal blocks of the paper's ``H_L`` (``b d_z x b d_z``, block diagonal)."""
    p = _probabilities(outputs, loss)
    if p is None:
        return _identities(outputs)
    return torch.diag_embed(p) - p[:, :, None] * p[:, None, :]


def _probabilities(outputs: Tensor, loss: str) -> Tensor | None:
    """``softmax(z)`` (``(b, d_z)``, detached) for ``cross_entropy``; None for ``mse``, whose Hessian
    is the identity."""
    check_loss(loss)
    if outputs.ndim != 2:
        raise UnsupportedConfigurationError(f"outputs must be (b, d_z), got shape {tuple(outputs.shape)}")
    return None if loss == "mse" else torch.softmax(outputs.detach(), dim=-1)


def _identities(outputs: Tensor) -> Tensor:
    """``b`` identity matrices ``(b, d_z, d_z)`` in the dtype and device of ``outputs``."""
    b, d_z = outputs.shape
    return torch.eye(d_z, dtype=outputs.dtype, device=outputs.device).expand(b, d_z, d_z).clone()


def reduced_loss_hessian_factor(outputs: Tensor, loss: str) -> Tensor:
    """Factors of full column rank ``L~_i`` with ``L~_i L~_i^T = H_i``: ``(b, d_z, d_z - 1)`` for
    ``cross_entropy`` (``H = diag(p) - p p^T`` annihilates the all-ones vector, so rank ``d_z - 1``),
    and ``(b, d_z, d_z)`` (the identity) for ``mse``.

    The full factor ``L = diag(sqrt p) - p sqrt(p)^T`` has null space ``span(sqrt p)``; with ``B``
    an orthonormal basis of its complement (the last ``d_z - 1`` columns of the Householder
    reflector taking ``sqrt p`` to ``-e_1``), ``L B (L B)^T = L L^T``. The batch GGN's factor then
    has ``b (d_z - 1)`` columns instead of ``b d_z``, with the same ``U U^T``.
    """
    L = loss_hessian_factor(outputs, loss)
    if loss == "mse" or outputs.shape[1] < 2:
        return L
    u = torch.softmax(outputs.detach(), dim=-1).sqrt()
    w = u.clone()
    w[:, 0] += 1.0  # u_1 = sqrt(p_1) > 0: w^T w = 2 + 2 u_1 >= 2, no cancellation
    Q = torch.eye(u.shape[1], dtype=u.dtype, device=u.device) - 2.0 * w[:, :, None] * w[:, None, :] / (w * w).sum(
        -1
    )[:, None, None]
    return L @ Q[:, :, 1:]


def batch_loss(outputs: Tensor, targets: Tensor, loss: str) -> Tensor:
    """The mean batch loss whose GGN this module builds (:func:`digital.losses.loss_function`)."""
    return loss_function(check_loss(loss))(outputs, targets)


# -- the GGN -------------------------------------------------------------------------------
def ggn_factor(
    model: nn.Module, inputs: Inputs, loss: str, params: Mapping[str, Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """The factor ``U`` (``(N, r)``, ``r = b d_z``) with ``U U^T = G = (1/b) sum_i J_i^T H_i J_i``,
    and the outputs ``z`` (``(b, d_z)``) of the forward pass that built it (``H_i`` comes from them).

    Column ``i d_z + k`` of ``U`` is ``J_i^T L_i[:, k] / sqrt(b)``. ``params`` defaults to the
    model's trainable parameters (:func:`trainable_params`). Cost: ``d_z`` backward passes per
    example (``jacrev``) and ``O(b d_z^2 N)`` flops; memory ``O(b d_z N)``.
    """
    check_loss(loss)
    params = trainable_params(model) if params is None else params
    J, outputs = per_example_jacobian(model, params, inputs, return_outputs=True)
    b, d_z, n = J.shape
    L = loss_hessian_factor(outputs, loss).to(J.dtype)
    # U[:, i, k] = sum_z J[i, z, :] L[i, z, k]
    U = torch.einsum("bzn,bzk->nbk", J, L).reshape(n, b * d_z) / math.sqrt(b)
    return U, outputs


def ggn_matvec(U: Tensor) -> Callable[[Tensor], Tensor]:
    """The matrix-free GGN product ``v -> U (U^T v)`` for ``v`` of shape ``(N,)`` or ``(N, k)``
    (``O(N r k)``; ``G`` itself is never formed)."""

    def matvec(v: Tensor) -> Tensor:
        return U @ (U.mT @ v)

    return matvec


def conv_layout_reason(module: nn.Conv2d) -> str | None:
    """Why a Conv2d's patches cannot be read as ``unfold`` of its input (None if they can): the
    layout that K-FAC's factors and the GGN Gram's per-layer blocks both assume."""
    if module.groups != 1:
        return f"grouped convolution (groups={module.groups})"
    if module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r}"
    if isinstance(module.padding, str):
        return f"padding={module.padding!r} (give explicit padding)"
    return None

