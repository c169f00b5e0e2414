"""The batch GGN as a matrix-free operator: ``G = U U^T`` with ``U = J_f^T L / sqrt(b)``
(``(N, r)``, ``r = b d_z``), applied and reduced to its ``r x r`` Gram matrix WITHOUT forming the
per-example Jacobian ``J_f`` (``(b d_z, N)``) that :func:`digital.curvature.ggn_factor` builds.

Conventions are those of :mod:`digital.curvature`: ``N`` parameters flattened in the order of
the ``params`` mapping (default :func:`~digital.curvature.trainable_params`, i.e.
``model.named_parameters()`` order, each row-major), outputs ``z`` ``(b, d_z)``, the mean batch
loss, ``L_n`` (``d_z x d_z``) with ``L_n L_n^T = H_n`` from
:func:`~digital.curvature.loss_hessian_factor`, and column ``n d_z + k`` of ``U`` equal to
``J_n^T L_n[:, k] / sqrt(b)``. So ``GGNOperator(...).dense_u()`` equals ``ggn_factor(...)[0]``.

Operations of :class:`GGNOperator`:

* ``apply_ut(v)``: ``(N, k) -> (r, k)``, ``U^T v = L^T (J_f v) / sqrt(b)``: forward mode
  (``torch.func.jvp`` vmapped over the ``k`` columns, one batched forward pass).
* ``apply_u(c)``: ``(r, k) -> (N, k)``, ``U c = J_f^T (L c) / sqrt(b)``: reverse mode
  (``torch.func.vjp`` once, its pullback vmapped over the ``k`` columns).
* ``matvec(v) = U (U^T v)``, the GGN-vector product.
* ``gram()``: ``K = U^T U`` (``r x r``) assembled layer by layer (below), cached.
* ``dense_u()``: ``U`` explicitly, for reference and debugging only.
* ``dense_ut()``: ``U^T`` ``(r, N)`` assembled layer by layer from the same inputs and
  sensitivities as the Gram (each layer's Jacobian block), with the autodiff fallback for the
  other parameters; :func:`output_jacobian` uses it with ``L = I`` to form ``J_f`` itself, which
  the quantized TNGD device programs (:func:`thermo.lowrank_device.program_arrays`).

:func:`woodbury_solve` turns ``gram()`` into ``(G + lam I)^-1 g``.

The Gram, layer by layer
------------------------
One forward pass records every hooked layer's input and puts a zero "probe" on its output
(``out + probe``, so in-place operations downstream cannot corrupt what is recorded); ``d_z``
backward passes, batched into one with ``is_grads_batched`` (a vmap over the cotangents), each
with the cotangent ``L[:, :, k] / sqrt(b)`` on every example at once, give the output
sensitivities ``s_{n,k}`` of the L-mixed outputs: since the examples are independent, the
gradient of ``sum_n <L_n[:, k], z_n>`` with respect to layer outputs of example ``n`` is the
sensitivity of example ``n``'s own mixed output ``k``. No parameter gradients are formed.

For an ``nn.Linear`` (inputs ``(b, ..., in)``, the middle dimensions being ``P`` shared
positions: tokens, nodes; ``P = 1`` for a plain layer) and an ``nn.Conv2d`` (``P`` output
locations, inputs the unfolded patches, ``in = C_in k_h k_w``), the row ``x = (n, k)`` of ``U^T``
restricted to the weight is ``sum_p outer(s_{x,p}, a_{n,p})`` and to the bias ``sum_p s_{x,p}``.
Two ways to reduce them to the layer's share of ``K`` (flop counts in multiply-adds; ``w = 1`` if
the weight is among the parameters else 0, ``c = 1`` with a bias):

* ``pairwise``: ``K[x, y] = sum_{p,q} (a_{n,p} . a_{m,q}) (s_{x,p} . s_{y,q})``; cost
  ``w b^2 P^2 in + r^2 P^2 out + (w + c) r^2 P^2`` (input Gram, sensitivity Gram, contraction;
  the bias term is the sensitivity Gram summed over ``p, q``).
* ``block``: materialize the layer's Jacobian block ``(r, out in [+ out])`` and take its Gram;
  cost ``w r P in out + c r P out + r^2 (w in out + c out)``.

``strategy="auto"`` takes the cheaper per layer by these counts (:func:`pairwise_cost`,
:func:`block_cost`; recorded in :attr:`GGNOperator.plan`): in practice ``pairwise`` for unshared
layers (``P = 1``: ``r^2 out`` against ``r^2 in out``) and ``block`` for convolutions and token
layers (``P^2`` is large). ``"pairwise"`` / ``"block"`` force one for every hooked layer. Both
are chunked (over the rows' examples, resp. the output features) to keep intermediates near
``max_elements`` entries (pairwise cannot go below one example's ``d_z P r P``).

Fallback
--------
Parameters the hooks cannot cover use the Jacobian block of just those parameters, computed
per example by autodiff (``vmap(jacrev)`` over the examples, each a batch of one, other
parameters fixed), mixed with ``L`` and added as ``B B^T``. This covers LayerNorm, embeddings,
free ``nn.Parameter`` (position embeddings), grouped or string-padded convolutions, subclasses
overriding ``forward``, layers whose input lacks the batch dimension first, and any hooked
layer that fails the consistency check below. ``on_unsupported="raise"`` raises instead
(naming the layer), so a caller can insist on the fast path.

Consistency check (``check=True``): one extra backward pass with a random cotangent compares
the hooked layers' parameter gradients rebuilt from the recorded inputs and sensitivities with
autograd's. A mismatch (a weight also used outside its module's call, e.g. tied weights or
``F.linear(x, layer.weight)``, or ``nn.MultiheadAttention``'s ``out_proj``) moves that layer to
the fallback instead of returning a wrong Gram.

Assumptions
-----------
The examples are independent: example ``n``'s outputs depend on example ``n``'s inputs only
(the batched backward passes and the per-example fallback rely on it). Layers that couple the
examples are refused at construction: batch norm in training mode (or without running
statistics, which uses batch statistics in eval mode too). The forward pass must be
deterministic (``jvp``, ``vjp`` and the Gram each run it): dropout in training mode with
``p > 0`` is refused. The operator is a snapshot of the parameters at construction (they are
copied); build a new one after an optimizer step.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from thermo.errors import NotPositiveDefiniteError, ShapeMismatchError
from thermo.memory import check_memory

from .curvature import (
    Inputs,
    batch_loss,
    conv_layout_reason,
    loss_hessian_factor,
    reduced_loss_hessian_factor,
    trainable_params,
)
from .errors import NonFiniteGradientError, UnsupportedConfigurationError
from .losses import check_loss

STRATEGIES = ("auto", "pairwise", "block")
_MAX_ELEMENTS = 1 << 24


# -- per-layer cost model --------------------------------------------------------------------
def pairwise_cost(b: int, d_z: int, positions: int, d_in: int, d_out: int, weight: bool = True, bias: bool = True) -> int:
    """Multiply-adds of the ``pairwise`` Gram of one layer (see the module docstring)."""
    r, P2 = b * d_z, positions * positions
    return int(weight) * b * b * P2 * d_in + r * r * P2 * d_out + (int(weight) + int(bias)) * r * r * P2


def block_cost(b: int, d_z: int, positions: int, d_in: int, d_out: int, weight: bool = True, bias: bool = True) -> int:
    """Multiply-adds of the ``block`` Gram of one layer (see the module docstring)."""
    r = b * d_z
    cols = int(weight) * d_in * d_out + int(bias) * d_out
    return r * positions * cols + r * r * cols


@dataclass
class LayerPlan:
    """How one layer's share of the Gram is (or would be) computed; :attr:`GGNOperator.plan`."""

    module: str
    """Module name in ``model.named_modules()`` (``""`` for the root)."""
    layer_type: str
    params: tuple[str, ...]
    """The parameter names it covers."""
    method: str
    """``pairwise``, ``block`` or ``jacobian`` (the per-example autodiff fallback)."""
    positions: int = 0
    d_in: int = 0
    d_out: int = 0
    cost_pairwise: int = 0
    cost_block: int = 0
    reason: str = ""
    """Why the layer is on the fallback (empty otherwise)."""
    seconds: float = 0.0


@dataclass
class _Hooked:
    name: str
    module: nn.Module
    weight: str | None  # full parameter names in the operator's set, or None
    bias: str | None


def _batch_coupling_reason(module: nn.Module) -> str | None:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.training:
            return "is in training mode (batch statistics couple the examples); call model.eval() first"
        if module.running_mean is None:
            return "has no running statistics, so it normalises with batch statistics even in eval mode"
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        return "is in training mode: the forward pass is random and jvp, vjp and the Gram would disagree"
    return None


def _hook_reason(module: nn.Module) -> str | None:
    """Why the hook path cannot handle ``module`` (None if it can)."""
    if isinstance(module, nn.Linear):
        if type(module).forward is not nn.Linear.forward:
            return f"{type(module).__name__} overrides nn.Linear.forward"
        return None
    if isinstance(module, nn.Conv2d):
        if type(module).forward is not nn.Conv2d.forward:
            return f"{type(module).__name__} overrides nn.Conv2d.forward"
        return conv_layout_reason(module)
    return f"{type(module).__name__} is not an nn.Linear or nn.Conv2d"


def _as_columns(x: Tensor, rows: int, what: str) -> tuple[Tensor, bool]:
    if x.ndim not in (1, 2) or x.shape[0] != rows:
        raise ShapeMismatchError(f"{what} must have shape ({rows},) or ({rows}, k), got {tuple(x.shape)}")
    return (x[:, None], True) if x.ndim == 1 else (x, False)


class GGNOperator:
    """The GGN ``G = U U^T`` of one batch at the current parameters, matrix-free.

    Args:
        model: maps ``inputs`` (called as ``model(*inputs)`` for a tuple) to outputs ``(b, d_z)``.
        inputs: a tensor or tuple of tensors with the batch dimension first.
        targets: optional; checked against the outputs and used only by :meth:`gradient`
            (the GGN of ``cross_entropy`` and of ``mse`` does not depend on them).
        loss: ``cross_entropy`` or ``mse`` (``0.5 ||z - y||^2`` per example).
        params: name -> tensor of the parameters to differentiate, in the column order of ``U``;
            default :func:`~digital.curvature.trainable_params` (``named_parameters`` order,
            identical to ``flatten_params(trainable_params(model))``). Others keep the module's
            values. Copied: the operator is a snapshot.
        strategy: ``auto`` (per-layer cost model), ``pairwise`` or ``block``; the default of
            :meth:`gram`.
        on_unsupported: ``jacobian`` (per-example autodiff fallback for parameters the hooks
            cannot cover) or ``raise``.
        check: verify the hook path against autograd once (one extra backward pass).
        reduced_factor: use the loss factor of full column rank
            (:func:`~digital.curvature.reduced_loss_hessian_factor`): ``r = b (d_z - 1)`` for
            cross-entropy instead of ``b d_z``, the same GGN ``U U^T``, a smaller Gram.
        chunk_size: ``vmap`` chunk size over the columns of :meth:`apply_u` / :meth:`apply_ut`
            (None: all at once).
        max_elements: cap on the entries of the Gram's intermediates (chunking).

    Attributes: ``n`` (``N``), ``rank`` (``r = b width``), ``width`` (``d_z``, or ``d_z - 1`` reduced), ``batch_size``, ``d_z``, ``outputs``
    (``(b, d_z)``, detached), ``loss_factor`` (``L``, ``(b, d_z, width)``), ``param_names``,
    ``plan`` (list of :class:`LayerPlan`, after :meth:`gram`), ``last_gram_stats`` (seconds).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Inputs,
        targets: Tensor | None = None,
        loss: str = "cross_entropy",
        *,
        params: Mapping[str, Tensor] | None = None,
        strategy: str = "auto",
        on_unsupported: str = "jacobian",
        check: bool = True,
        reduced_factor: bool = False,
        chunk_size: int | None = None,
        max_elements: int = _MAX_ELEMENTS,
    ) -> None:
        self.loss = check_loss(loss)
        if strategy not in STRATEGIES:
            raise UnsupportedConfigurationError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if on_unsupported not in ("jacobian", "raise"):
            raise UnsupportedConfigurationError(f"on_unsupported must be 'jacobian' or 'raise', got {on_unsupported!r}")
        for name, module in model.named_modules():
            reason = _batch_coupling_reason(module)
            if reason is not None:
                raise UnsupportedConfigurationError(
                    f"GGNOperator assumes independent examples and a deterministic forward pass: "
                    f"{type(module).__name__} {name!r} {reason}"
                )
        xs = inputs if isinstance(inputs, tuple) else (inputs,)
        if not xs or any(not isinstance(x, Tensor) or x.ndim == 0 for x in xs):
            raise ShapeMismatchError("inputs must be a tensor or tuple of tensors with the batch dimension first")
        b = xs[0].shape[0]
        if any(x.shape[0] != b for x in xs):
            raise ShapeMismatchError(f"inputs disagree on the batch size: {[tuple(x.shape) for x in xs]}")
        if b == 0:
            raise ShapeMismatchError("the batch is empty")

        named = dict(model.named_parameters())
        given = trainable_params(model) if params is None else dict(params)
        if not given:
            raise UnsupportedConfigurationError("no parameters to differentiate (the model has no trainable parameters)")
        unknown = [n for n in given if n not in named]
        if unknown:
            raise UnsupportedConfigurationError(f"params names not in model.named_parameters(): {unknown}")
        for n, t in given.items():
            if tuple(t.shape) != tuple(named[n].shape):
                raise ShapeMismatchError(f"params[{n!r}] has shape {tuple(t.shape)}, the model's {tuple(named[n].shape)}")
        self.model = model
        self.params: dict[str, Tensor] = {n: t.detach().clone() for n, t in given.items()}
        # the other parameters are held fixed (and copied too: the operator is a snapshot)
        self._fixed = {n: p.detach().clone() for n, p in named.items() if n not in self.params}
        self.param_names = tuple(self.params)
        self._shapes = {n: t.shape for n, t in self.params.items()}
        self._xs = xs
        self.n = sum(t.numel() for t in self.params.values())

        with torch.no_grad():
            z = self._forward(self.params)
        if z.ndim != 2 or z.shape[0] != b:
            raise ShapeMismatchError(f"the model must map a batch of {b} to outputs (b, d_z); got {tuple(z.shape)}")
        self.outputs = z.detach()
        self.batch_size, self.d_z = b, z.shape[1]
        self.dtype, self.device = z.dtype, z.device
        if targets is not None:
            if self.loss == "cross_entropy" and tuple(targets.shape) != (b,):
                raise ShapeMismatchError(f"cross_entropy targets must be labels of shape ({b},), got {tuple(targets.shape)}")
            if self.loss == "mse" and tuple(targets.shape) != tuple(z.shape):
                raise ShapeMismatchError(f"mse targets must have the outputs' shape {tuple(z.shape)}, got {tuple(targets.shape)}")
        self.targets = targets
        if not bool(torch.isfinite(self.outputs).all()):
            raise NonFiniteGradientError("the model outputs contain NaN or infinity")
        factor = reduced_loss_hessian_factor if reduced_factor else loss_hessian_factor
        self.loss_factor = factor(self.outputs, self.loss).to(self.dtype)
        #: columns of each example's loss factor: ``d_z``, or ``d_z - 1`` reduced (cross-entropy)
        self.width = self.loss_factor.shape[2]
        self.rank = b * self.width
        self._scale = 1.0 / math.sqrt(b)

        self.strategy = strategy
        self.on_unsupported = on_unsupported
        self.check = check
        self.chunk_size = chunk_size
        self.max_elements = int(max_elements)
        self._vjp_fn: Any = None
        self._sens: tuple[dict[str, tuple[Tensor, Tensor]], dict[str, str], float] | None = None
        self._gram_cache: dict[str, Tensor] = {}
        self._chol_cache: dict[tuple[float, torch.dtype], Tensor] = {}
        self.plan: list[LayerPlan] = []
        self.last_gram_stats: dict[str, float] = {}
        self._hooked, self._fallback = self._classify(model)

    # -- plumbing ------------------------------------------------------------------------------
    batched_backward = True
    """Run the ``d_z`` sensitivity backward passes as one vmapped pass (``is_grads_batched``);
    False, or an op without a batching rule, runs them one by one."""

    def _forward(self, params: Mapping[str, Tensor]) -> Tensor:
        return functional_call(self.model, {**self._fixed, **params}, self._xs)

    def _flatten_batched(self, tensors: Mapping[str, Tensor], k: int) -> Tensor:
        """``{name: (k, *shape)}`` -> ``(k, N)`` in the operator's parameter order."""
        return torch.cat([tensors[n].reshape(k, -1) for n in self.param_names], dim=1)

    def _unflatten_batched(self, v: Tensor) -> dict[str, Tensor]:
        """``(k, N)`` -> ``{name: (k, *shape)}``."""
        out, offset = {}, 0
        for n in self.param_names:
            size = self._shapes[n].numel()
            out[n] = v[:, offset : offset + size].reshape(v.shape[0], *self._shapes[n])
            offset += size
        return out

    def _classify(self, model: nn.Module) -> tuple[list[_Hooked], dict[str, str]]:
        """Hooked layers and the fallback parameters (name -> reason)."""
        hooked: list[_Hooked] = []
        owned: set[str] = set()
        fallback: dict[str, str] = {}
        for mname, module in model.named_modules():
            local = [(f"{mname}.{pn}" if mname else pn, pn) for pn, _ in module.named_parameters(recurse=False)]
            mine = [(full, pn) for full, pn in local if full in self.params]
            if not mine:
                continue
            owned.update(full for full, _ in mine)
            reason = _hook_reason(module)
            if reason is None and any(pn not in ("weight", "bias") for _, pn in mine):
                reason = "has parameters other than weight and bias"
            if reason is not None:
                label = f"{type(module).__name__} {mname!r}: {reason}"
                fallback.update({full: label for full, _ in mine})
                continue
            names = {pn: full for full, pn in mine}
            hooked.append(_Hooked(mname, module, names.get("weight"), names.get("bias")))
        for n in self.params:
            if n not in owned:
                fallback[n] = f"parameter {n!r}: not found as a direct parameter of a module"
        if fallback and self.on_unsupported == "raise":
            raise UnsupportedConfigurationError(
                "GGNOperator(on_unsupported='raise'): cannot hook "
                + "; ".join(dict.fromkeys(fallback.values()))
                + " (on_unsupported='jacobian' covers them by per-example autodiff)"
            )
        return hooked, fallback

    def _check_columns(self, x: Tensor, rows: int, what: str) -> tuple[Tensor, bool]:
        if not isinstance(x, Tensor):
            raise ShapeMismatchError(f"{what} must be a tensor, got {type(x).__name__}")
        cols, squeeze = _as_columns(x, rows, what)
        return cols.to(self.dtype), squeeze

    # -- products ------------------------------------------------------------------------------
    def apply_ut(self, v: Tensor) -> Tensor:
        """``U^T v = L^T (J_f v) / sqrt(b)``: ``(N,)`` -> ``(r,)`` or ``(N, k)`` -> ``(r, k)``.

        One forward-mode pass (``jvp``) vmapped over the ``k`` columns; ``J_f`` is never formed.
        """
        V, squeeze = self._check_columns(v, self.n, "apply_ut: v")
        k = V.shape[1]
        tangents = self._unflatten_batched(V.mT)
        primals = self.params

        def column(t: dict[str, Tensor]) -> Tensor:
            return jvp(self._forward, (primals,), (t,))[1]

        with torch.enable_grad(), warnings.catch_warnings():
            # torch's first forward-AD call scripts its jvp decompositions (torch.jit.script)
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
            Jv = vmap(column, chunk_size=self.chunk_size)(tangents)  # (k, b, d_z)
        out = torch.einsum("cni,nij->njc", Jv, self.loss_factor).reshape(self.rank, k) * self._scale
        return out[:, 0] if squeeze else out

    def apply_u(self, c: Tensor) -> Tensor:
        """``U c = J_f^T (L c) / sqrt(b)``: ``(r,)`` -> ``(N,)`` or ``(r, k)`` -> ``(N, k)``.

        One reverse-mode linearization (``vjp``, cached) whose pullback is vmapped over the
        ``k`` columns."""
        C, squeeze = self._check_columns(c, self.rank, "apply_u: c")
        k = C.shape[1]
        if self._vjp_fn is None:
            with torch.enable_grad():
                _, self._vjp_fn = vjp(self._forward, self.params)
        cot = torch.einsum("nij,njc->cni", self.loss_factor, C.reshape(self.batch_size, self.width, k)) * self._scale
        with torch.enable_grad():
            (grads,) = vmap(self._vjp_fn, chunk_size=self.chunk_size)(cot)
        out = self._flatten_batched(grads, k).mT
        return out[:, 0] if squeeze else out

    def matvec(self, v: Tensor) -> Tensor:
        """The GGN-vector product ``G v = U (U^T v)`` for ``v`` ``(N,)`` or ``(N, k)``."""
        return self.apply_u(self.apply_ut(v))

    def gradient(self) -> tuple[Tensor, Tensor]:
        """``(loss, g)``: the mean batch loss at the targets and its flat gradient ``(N,)``."""
        if self.targets is None:
            raise UnsupportedConfigurationError("gradient() needs the targets: GGNOperator(model, inputs, targets, loss)")
        with torch.enable_grad():
            value, pull = vjp(lambda p: batch_loss(self._forward(p), self.targets, self.loss), self.params)
            (g,) = pull(torch.ones_like(value))
        return value.detach(), self._flatten_batched({n: t[None] for n, t in g.items()}, 1)[0]

    def dense_u(self, method: str = "apply_u") -> Tensor:
        """``U`` ``(N, r)`` explicitly (reference/debugging: ``O(N r)`` memory). ``apply_u``
        applies the operator to identity blocks; ``jacobian`` builds the per-example ``J_f`` as
        :func:`digital.curvature.ggn_factor` does (``vmap(jacrev)``), at the operator's snapshot."""
        if method == "apply_u":
            eye = torch.eye(self.rank, dtype=self.dtype, device=self.device)
            step = self.chunk_size or self.rank
            return torch.cat([self.apply_u(eye[:, i : i + step]) for i in range(0, self.rank, step)], dim=1)
        if method == "jacobian":
            return self._fallback_block(list(self.param_names)).mT
        raise UnsupportedConfigurationError(f"dense_u method must be 'apply_u' or 'jacobian', got {method!r}")

    def dense_ut(self) -> Tensor:
        """``U^T`` ``(r, N)`` formed layer by layer: per hooked layer its Jacobian block (the
        ``block`` Gram's rows, ``sum_p outer(s_{x,p}, a_{n,p})`` for the weight, ``sum_p s_{x,p}`` for
        the bias) from one sensitivity pass, the fallback parameters by per-example autodiff.
        Memory ``r N`` entries, checked against the budget first (:func:`thermo.memory.check_memory`)."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        check_memory(2 * self.rank * self.n * itemsize, f"the formed factor U^T ({self.rank} x {self.n})",
                     "a matrix-free path (gram(), apply_u, apply_ut)")
        sens, fallback, _ = self._sensitivities()
        offsets, start = {}, 0
        for name in self.param_names:
            size = self._shapes[name].numel()
            offsets[name] = (start, start + size)
            start += size
        out = torch.zeros(self.rank, self.n, dtype=self.dtype, device=self.device)
        for h in self._hooked:
            if h.name not in sens:  # a layer never called: its parameters have a zero Jacobian
                continue
            a, s = sens[h.name]
            if h.weight is not None:
                lo, hi = offsets[h.weight]
                out[:, lo:hi] = torch.einsum("nkpo,npi->nkoi", s, a).reshape(self.rank, hi - lo)
            if h.bias is not None:
                lo, hi = offsets[h.bias]
                out[:, lo:hi] = s.sum(dim=2).reshape(self.rank, hi - lo)
        names = [n for n in self.param_names if n in fallback]
        if names:
            block = self._fallback_block(names)
            col = 0
            for name in names:
                lo, hi = offsets[name]
                out[:, lo:hi] = block[:, col : col + hi - lo]
                col += hi - lo
        return out

    # -- the Gram ------------------------------------------------------------------------------
    def _sensitivities(self) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, str], float]:
        """One forward with hooks and the batched backward passes: per hooked layer its inputs
        ``a`` ``(b, P, in)`` and sensitivities ``s`` ``(b, d_z, P, out)`` (scaled by
        ``1/sqrt(b)``); plus the fallback parameters and the seconds it took."""
        if self._sens is not None:
            return self._sens
        t0 = time.perf_counter()
        b, d_z = self.batch_size, self.width  # one cotangent per column of the loss factor
        fallback = dict(self._fallback)
        p_req = {n: t.detach().requires_grad_(True) for n, t in self.params.items()}
        records: dict[str, list[tuple[Tensor, Tensor]]] = {h.name: [] for h in self._hooked}
        bad: dict[str, str] = {}
        handles = []

        def make_hook(name: str):
            def hook(module: nn.Module, args: tuple, kwargs: dict, out: Tensor) -> Tensor:
                x = args[0] if args else kwargs.get("input")
                if not isinstance(x, Tensor) or not isinstance(out, Tensor):
                    bad.setdefault(name, "called without a tensor input")
                    return out
                probe = torch.zeros_like(out, requires_grad=True)
                records[name].append((x.detach(), probe))
                return out + probe

            return hook

        try:
            for h in self._hooked:
                handles.append(h.module.register_forward_hook(make_hook(h.name), with_kwargs=True))
            with torch.enable_grad():
                z = self._forward(p_req)
        finally:
            for handle in handles:
                handle.remove()

        # layer inputs -> rows (b, P, in); layers whose inputs lack the batch dim go to the fallback
        rows: dict[str, Tensor] = {}
        for h in self._hooked:
            if h.name in bad or not records[h.name]:
                continue
            parts = []
            for x, _ in records[h.name]:
                if isinstance(h.module, nn.Conv2d):
                    if x.ndim != 4 or x.shape[0] != b:
                        bad[h.name] = f"input of shape {tuple(x.shape)} is not (b={b}, C, H, W)"
                        break
                    m = h.module
                    parts.append(F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2))
                else:
                    if x.ndim < 2 or x.shape[0] != b:
                        bad[h.name] = f"input of shape {tuple(x.shape)} does not have the batch dimension (b={b}) first"
                        break
                    parts.append(x.reshape(b, -1, x.shape[-1]))
            else:
                rows[h.name] = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

        probes = [p for h in self._hooked if h.name in rows for _, p in records[h.name]]
        L = self.loss_factor
        if self.check and self._hooked:
            self._check_hooks(z, p_req, rows, records, bad)
        grads: list[Tensor | None] = []
        if probes and z.requires_grad:
            cots = L.permute(2, 0, 1).contiguous() * self._scale  # (d_z, b, d_z): cots[k][n] = L_n[:, k]
            grads = []
            if self.batched_backward:
                try:
                    grads = list(
                        torch.autograd.grad(z, probes, cots, retain_graph=True, is_grads_batched=True, allow_unused=True)
                    )
                except RuntimeError:  # an op without a batching rule: one backward pass per output
                    grads = []
            self.last_gram_stats["batched_backward"] = bool(grads)
            if not grads:
                per_k = [
                    torch.autograd.grad(z, probes, cots[k], retain_graph=k < d_z - 1, allow_unused=True)
                    for k in range(d_z)
                ]
                grads = [
                    None if per_k[0][j] is None else torch.stack([g[j] for g in per_k]) for j in range(len(probes))
                ]
        sens: dict[str, tuple[Tensor, Tensor]] = {}
        gi = 0
        for h in self._hooked:
            if h.name not in rows:
                continue
            parts = []
            for _, probe in records[h.name]:
                g = grads[gi]
                gi += 1
                if g is None:
                    g = torch.zeros((d_z, *probe.shape), dtype=probe.dtype, device=probe.device)
                if isinstance(h.module, nn.Conv2d):
                    g = g.reshape(d_z, b, g.shape[2], -1).transpose(-1, -2)  # (d_z, b, P, out)
                else:
                    g = g.reshape(d_z, b, -1, g.shape[-1])
                parts.append(g.permute(1, 0, 2, 3))
            if h.name in bad:
                continue
            sens[h.name] = (rows[h.name], torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
        for h in self._hooked:
            if h.name in bad:
                label = f"{type(h.module).__name__} {h.name!r}: {bad[h.name]}"
                if self.on_unsupported == "raise":
                    raise UnsupportedConfigurationError(f"GGNOperator(on_unsupported='raise'): cannot hook {label}")
                fallback.update({n: label for n in (h.weight, h.bias) if n is not None})
        self._sens = (sens, fallback, time.perf_counter() - t0)
        return self._sens

    def _check_hooks(
        self,
        z: Tensor,
        p_req: dict[str, Tensor],
        rows: dict[str, Tensor],
        records: dict[str, list[tuple[Tensor, Tensor]]],
        bad: dict[str, str],
    ) -> None:
        """Rebuild the hooked parameters' gradient for a random cotangent from the recorded
        inputs and output gradients and compare with autograd's; mismatches go to ``bad``."""
        if not z.requires_grad:  # the outputs depend on no parameter: nothing to compare
            return
        b, d_z = self.batch_size, self.width
        gen = torch.Generator(device="cpu").manual_seed(0)
        w = torch.randn(b, d_z, generator=gen, dtype=torch.float64).to(device=self.device, dtype=self.dtype)
        cot = torch.einsum("nik,nk->ni", self.loss_factor, w) * self._scale
        # every hooked layer not already refused, called or not: a weight used only outside its
        # module's call has a nonzero true gradient and nothing recorded
        hooked = [h for h in self._hooked if h.name not in bad]
        pnames = [n for h in hooked for n in (h.weight, h.bias) if n is not None]
        probes = [p for h in hooked if h.name in rows for _, p in records[h.name]]
        out = torch.autograd.grad(z, [p_req[n] for n in pnames] + probes, cot, retain_graph=True, allow_unused=True)
        true = dict(zip(pnames, out[: len(pnames)]))
        pg = iter(out[len(pnames) :])
        tol = math.sqrt(torch.finfo(self.dtype).eps)
        for h in hooked:
            rebuilt: dict[str, tuple[Tensor, Tensor]] = {}  # name -> (gradient, sum of |terms|)
            if h.name in rows:
                parts = []
                for _, probe in records[h.name]:
                    g = next(pg)
                    g = torch.zeros_like(probe) if g is None else g
                    if isinstance(h.module, nn.Conv2d):
                        parts.append(g.reshape(b, g.shape[1], -1).transpose(1, 2))
                    else:
                        parts.append(g.reshape(b, -1, g.shape[-1]))
                s = torch.cat(parts, dim=1)  # (b, P, out)
                a = rows[h.name]
                if h.weight is not None:
                    shape = self._shapes[h.weight]
                    rebuilt[h.weight] = (
                        torch.einsum("npo,npi->oi", s, a).reshape(shape),
                        torch.einsum("npo,npi->oi", s.abs(), a.abs()).reshape(shape),
                    )
                if h.bias is not None:
                    rebuilt[h.bias] = (s.sum(dim=(0, 1)), s.abs().sum(dim=(0, 1)))
            for n in (h.weight, h.bias):
                if n is None:
                    continue
                zero = torch.zeros(self._shapes[n], dtype=self.dtype, device=self.device)
                g_rec, g_abs = rebuilt.get(n, (zero, zero))
                g_true = true[n] if true[n] is not None else zero
                # round-off of the rebuilt sum is relative to the sum of the terms' magnitudes
                scale = max(float(g_true.abs().max()), float(g_abs.max()), torch.finfo(self.dtype).tiny)
                err = float((g_rec - g_true).abs().max())
                if err > tol * scale:
                    bad[h.name] = (
                        f"the gradient of {n!r} rebuilt from the layer's inputs and outputs differs from autograd's "
                        f"(max error {err:.2e} of {scale:.2e}): the parameter is used outside the module's call"
                    )
                    break

    def layer_costs(self) -> list[LayerPlan]:
        """The per-layer plan the ``auto`` strategy would follow (runs the sensitivity pass)."""
        sens, fallback, _ = self._sensitivities()
        plans = []
        for h in self._hooked:
            if h.name not in sens:
                continue
            a, s = sens[h.name]
            P, d_in, d_out = a.shape[1], a.shape[2], s.shape[3]
            w, c = h.weight is not None, h.bias is not None
            cp = pairwise_cost(self.batch_size, self.width, P, d_in, d_out, w, c)
            cb = block_cost(self.batch_size, self.width, P, d_in, d_out, w, c)
            names = tuple(n for n in (h.weight, h.bias) if n is not None)
            plans.append(LayerPlan(h.name, type(h.module).__name__, names, "pairwise" if cp <= cb else "block", P, d_in, d_out, cp, cb))
        if fallback:
            names = tuple(n for n in self.param_names if n in fallback)
            reasons = "; ".join(dict.fromkeys(fallback[n] for n in names))
            plans.append(LayerPlan("(fallback)", "per-example jacrev", names, "jacobian", reason=reasons))
        return plans

    def gram(self, strategy: str | None = None) -> Tensor:
        """``K = U^T U = L^T (J_f J_f^T) L / b`` (``(r, r)``, symmetric), layer by layer; cached
        per strategy. ``strategy`` overrides the operator's (``auto``, ``pairwise``, ``block``).
        Fills :attr:`plan` and :attr:`last_gram_stats`."""
        strategy = self.strategy if strategy is None else strategy
        if strategy not in STRATEGIES:
            raise UnsupportedConfigurationError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if strategy in self._gram_cache:
            return self._gram_cache[strategy]
        t0 = time.perf_counter()
        fresh = self._sens is None
        sens, fallback, t_sens = self._sensitivities()
        plans = self.layer_costs()
        K = torch.zeros(self.rank, self.rank, dtype=self.dtype, device=self.device)
        by_name = {h.name: h for h in self._hooked}
        for plan in plans:
            t1 = time.perf_counter()
            if plan.method == "jacobian":
                B = self._fallback_block([n for n in self.param_names if n in fallback])
                K += B @ B.mT
            else:
                if strategy != "auto":
                    plan.method = strategy
                h = by_name[plan.module]
                a, s = sens[plan.module]
                fn = _pairwise_gram if plan.method == "pairwise" else _block_gram
                K += fn(a, s, h.weight is not None, h.bias is not None, self.max_elements)
            plan.seconds = time.perf_counter() - t1
        K = 0.5 * (K + K.mT)
        self.plan = plans
        self.last_gram_stats = {
            **self.last_gram_stats,
            "sensitivities_s": t_sens if fresh else 0.0,
            "layers_s": sum(p.seconds for p in plans),
            "total_s": time.perf_counter() - t0,
        }
        self._gram_cache[strategy] = K
        return K

    def _fallback_block(self, names: list[str]) -> Tensor:
        """Rows of ``U^T`` restricted to ``names`` (``(r, N_sub)``) by per-example autodiff."""
        fixed = {**self._fixed, **self.params}
        sub = {n: self.params[n] for n in names}
        xs = self._xs

        def single(p: dict[str, Tensor], *x: Tensor) -> Tensor:
            out = functional_call(self.model, {**fixed, **p}, tuple(t.unsqueeze(0) for t in x))
            return out[0]

        with torch.enable_grad():
            jac = vmap(jacrev(single), in_dims=(None, *([0] * len(xs))))(sub, *xs)
        b, d_z = self.batch_size, self.d_z
        J = torch.cat([jac[n].reshape(b, d_z, -1) for n in names], dim=2)
        return torch.einsum("nip,nik->nkp", J, self.loss_factor).reshape(self.rank, -1) * self._scale

    def cholesky(self, damping: float) -> Tensor:
        """Lower Cholesky factor of ``lam I + K`` (cached per damping), in the operator's dtype
        or, if that fails (float32 round-off with a small damping), in float64."""
        key = (float(damping), self.dtype)
        if key in self._chol_cache:
            return self._chol_cache[key]
        K = self.gram()
        eye = torch.eye(self.rank, dtype=K.dtype, device=K.device)
        factor, info = torch.linalg.cholesky_ex(K + damping * eye)
        if int(info) != 0 or not bool(torch.isfinite(factor).all()):
            K64 = K.to(torch.float64)
            factor, info = torch.linalg.cholesky_ex(K64 + damping * eye.to(torch.float64))
            if int(info) != 0 or not bool(torch.isfinite(factor).all()):
                raise NotPositiveDefiniteError(
                    f"lam I + K (r = {self.rank}, damping {damping:g}) is not positive definite even in float64; "
                    "the Gram has non-finite entries or the damping is too small for its round-off"
                )
        self._chol_cache[key] = factor
        return factor


# -- the two Gram reductions -----------------------------------------------------------------
def _pairwise_gram(a: Tensor, s: Tensor, weight: bool, bias: bool, max_elements: int) -> Tensor:
    """``sum_{p,q} (w (a_{n,p}.a_{m,q}) + c) (s_{x,p}.s_{y,q})`` for ``a`` ``(b, P, in)``, ``s``
    ``(b, d_z, P, out)``; chunked over the example of the row."""
    b, d_z, P, out = s.shape
    r = b * d_z
    A = torch.einsum("npi,mqi->npmq", a, a) if weight else None  # (b, P, b, P)
    S_all = s.reshape(r * P, out)
    K = s.new_zeros(r, r)
    step = max(1, max_elements // max(1, d_z * P * r * P))
    for n0 in range(0, b, step):
        n1 = min(b, n0 + step)
        S = (s[n0:n1].reshape(-1, out) @ S_all.mT).view(n1 - n0, d_z, P, b, d_z, P)
        Kc = s.new_zeros(n1 - n0, d_z, b, d_z)
        if weight:
            if P == 1:
                Kc += A[n0:n1, 0, :, 0][:, None, :, None] * S[:, :, 0, :, :, 0]
            else:
                Kc += torch.einsum("npmq,nkpmlq->nkml", A[n0:n1], S)
        if bias:
            Kc += S.sum(dim=(2, 5))
        K[n0 * d_z : n1 * d_z] = Kc.reshape(-1, r)
    return K


def _block_gram(a: Tensor, s: Tensor, weight: bool, bias: bool, max_elements: int) -> Tensor:
    """Gram of the layer's Jacobian block ``(r, out in [+ out])`` built from ``a`` ``(b, P, in)``
    and ``s`` ``(b, d_z, P, out)``; chunked over the output features."""
    b, d_z, _, out = s.shape
    r, d_in = b * d_z, a.shape[2]
    K = s.new_zeros(r, r)
    if weight:
        step = max(1, max_elements // max(1, r * d_in))
        for o0 in range(0, out, step):
            Jw = torch.einsum("nkpo,npi->nkoi", s[..., o0 : o0 + step], a).reshape(r, -1)
            K += Jw @ Jw.mT
    if bias:
        Jb = s.sum(dim=2).reshape(r, out)
        K += Jb @ Jb.mT
    return K


# -- the output Jacobian -----------------------------------------------------------------------
def output_jacobian(
    model: nn.Module, inputs: Inputs, *, params: Mapping[str, Tensor] | None = None, check: bool = True
) -> tuple[Tensor, Tensor]:
    """``J_f`` ``(b d_z, N)`` (row ``n d_z + k`` is ``dz_{n,k} / dtheta``, columns in the order of
    ``params``) and the outputs ``z`` ``(b, d_z)``, formed layer by layer.

    It is :meth:`GGNOperator.dense_ut` of the operator whose loss factor is the identity (the
    ``mse`` GGN, ``U^T = J_f / sqrt(b)``), rescaled: one forward pass with hooks and ``d_z``
    batched backward passes, no per-example ``jacrev`` except for layers the hooks cannot cover.
    Memory ``b d_z N`` entries (checked against the budget)."""
    op = GGNOperator(model, inputs, loss="mse", params=params, check=check)
    return op.dense_ut().mul_(math.sqrt(op.batch_size)), op.outputs


# -- Woodbury --------------------------------------------------------------------------------
def woodbury_solve(op: GGNOperator, g: Tensor, damping: float) -> Tensor:
    """``(G + lam I)^-1 g = (g - U (lam I + K)^-1 U^T g) / lam`` with ``K = op.gram()``.

    ``g``: ``(N,)`` or ``(N, k)``; ``damping`` ``lam > 0``. The ``r x r`` system is solved by
    Cholesky (:meth:`GGNOperator.cholesky`, float64 retry); ``U^T g`` and ``U y`` are the
    operator's jvp / vjp products. Returns ``g``'s shape in the operator's dtype.
    """
    if not (isinstance(damping, (int, float)) and math.isfinite(damping) and damping > 0):
        raise UnsupportedConfigurationError(f"damping must be a finite number > 0, got {damping!r}")
    if not isinstance(g, Tensor):
        raise ShapeMismatchError(f"g must be a tensor, got {type(g).__name__}")
    G, squeeze = _as_columns(g, op.n, "woodbury_solve: g")
    G = G.to(op.dtype)
    factor = op.cholesky(damping)
    rhs = op.apply_ut(G)
    y = torch.cholesky_solve(rhs.to(factor.dtype), factor).to(op.dtype)
    x = (G - op.apply_u(y)) / damping
    return x[:, 0] if squeeze else x


__all__ = ["STRATEGIES", "GGNOperator", "LayerPlan", "block_cost", "output_jacobian", "pairwise_cost", "woodbury_solve"]
