"""Small models for the training studies, written in plain ``torch.nn``.

Every layer K-FAC is meant to precondition is an ``nn.Linear`` or ``nn.Conv2d`` module (so the
optimizer's hooks can see it); weight-sharing layers (ViT patch embedding and attention
projections, GNN node transforms) are ``nn.Linear`` applied to ``(B, R, d)`` tensors. Other
parameters (LayerNorm, position embedding) are left to a first-order fallback.

Initialisation uses torch's global RNG only, so ``torch.manual_seed`` fixes every model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from thermo.errors import ShapeMismatchError

from .errors import UnsupportedConfigurationError

ACTIVATIONS = ("tanh", "relu", "gelu", "identity")


def _activation(name: str) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "identity":
        return nn.Identity()
    raise UnsupportedConfigurationError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) != value or value < 1:
            raise UnsupportedConfigurationError(f"{name} must be a positive integer, got {value!r}")


def model_inputs_call(model: nn.Module, inputs: Tensor | Sequence[Tensor]) -> Tensor:
    """Call ``model`` on one batch's inputs: ``model(*inputs)`` for a tuple/list (e.g. the
    ``(x, adj, mask)`` of a graph batch), ``model(inputs)`` for a single tensor."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


class MLP(nn.Module):
    """Fully connected network ``Linear -> act -> ... -> Linear`` (no activation on the logits).

    Input ``(B, in_features)`` or ``(B, C, H, W)`` (flattened from dim 1, so ``C*H*W`` must equal
    ``in_features``); output ``(B, out_features)``. ``activation="identity"`` gives a deep linear
    network (exactly linear when ``bias=False``).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        _check_positive(in_features=in_features, out_features=out_features)
        for i, h in enumerate(hidden):
            _check_positive(**{f"hidden[{i}]": h})
        _activation(activation)  # validate before building anything
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        widths = (in_features, *hidden, out_features)
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(d_in, d_out, bias=bias))
            if i < len(widths) - 2:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, in_features)`` or ``(B, ...)`` with ``in_features`` trailing elements."""
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ShapeMismatchError(
                f"MLP expects {self.in_features} features per example, got {x.shape[1]}"
            )
        return self.net(x)


class SmallCNN(nn.Module):
    """One ``Conv2d`` (same padding) + ReLU, flatten, ``Linear -> ReLU -> Linear``: the
    "one convolutional and two linear layers" network of the thermodynamic-NGD paper.

    Input ``(B, in_channels, image_size, image_size)``; output ``(B, n_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        n_classes: int = 10,
        channels: int = 8,
        kernel_size: int = 3,
        hidden: int = 32,
    ) -> None:
        super().__init__()
        _check_positive(
            in_channels=in_channels,
            image_size=image_size,
            n_classes=n_classes,
            channels=channels,
            kernel_size=kernel_size,
            hidden=hidden,
        )
        if kernel_size % 2 == 0:
            # padding k//2 keeps the spatial size only for odd kernels
            raise UnsupportedConfigurationError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.conv = nn.Conv2d(in_channels, channels, kernel_size, padding=kernel_size // 2)
        self.fc1 = nn.Linear(channels * image_size * image_size, hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, in_channels, image_size, image_size)`` -> logits ``(B, n_classes)``."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ShapeMismatchError(f"SmallCNN expects inputs (B, {expected}), got {tuple(x.shape)}")
        h = F.relu(self.conv(x)).flatten(1)
        return self.fc2(F.relu(self.fc1(h)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v``, ``out`` ``nn.Linear`` layers
    (unlike ``nn.MultiheadAttention``'s packed ``in_proj_weight``, each is visible to K-FAC).

    Input and output ``(B, T, dim)``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        _check_positive(dim=dim, heads=heads)
        if dim % heads:
            raise UnsupportedConfigurationError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        hd = D // self.heads

        def split(t: Tensor) -> Tensor:  # (B, T, D) -> (B, heads, T, hd)
            return t.view(B, T, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        # explicit softmax: deterministic and double-backward friendly on every backend
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(B, T, D)
        return self.out(y)


class TransformerBlock(nn.Module):
    """Pre-norm block ``x + attn(LN(x))`` then ``x + mlp(LN(x))``; ``(B, T, dim)`` in and out."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        _check_positive(mlp_dim=mlp_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class SmallViT(nn.Module):
    """Vision transformer for small images.

    Patches of ``patch_size x patch_size`` are flattened to ``(B, T, C*p*p)`` with
    ``T = (image_size / patch_size)^2`` and embedded by one ``nn.Linear`` shared over the ``T``
    patches; a learned position embedding ``(1, T, dim)`` is added; ``depth`` pre-norm blocks;
    final LayerNorm; mean pool over tokens; ``nn.Linear`` head.

    Input ``(B, in_channels, image_size, image_size)``; output ``(B, n_classes)``.
    """

    def __init__(
        self,
        image_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 1,
        dim: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 64,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        _check_positive(
            image_size=image_size,
            patch_size=patch_size,
            in_channels=in_channels,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=mlp_dim,
            n_classes=n_classes,
        )
        if image_size % patch_size:
            raise UnsupportedConfigurationError(
                f"image_size ({image_size}) must be divisible by patch_size ({patch_size})"
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.n_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_channels * patch_size * patch_size, dim)
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, self.n_patches, dim))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def patchify(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, T, C*p*p)``, patches in row-major order."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ShapeMismatchError(f"SmallViT expects inputs (B, {expected}), got {tuple(x.shape)}")
        p = self.patch_size
        patches = F.unfold(x, kernel_size=p, stride=p)  # (B, C*p*p, T)
        return patches.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, C, H, W)`` -> logits ``(B, n_classes)``."""
        h = self.patch_embed(self.patchify(x)) + self.pos_embed
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(dim=1))


def _check_graph_batch(x: Tensor, adj: Tensor, mask: Tensor) -> None:
    if x.dim() != 3 or adj.dim() != 3 or mask.dim() != 2:
        raise ShapeMismatchError(
            f"graph batch must be x (B, n, F), adj (B, n, n), mask (B, n); got "
            f"{tuple(x.shape)}, {tuple(adj.shape)}, {tuple(mask.shape)}"
        )
    B, n, _ = x.shape
    if tuple(adj.shape) != (B, n, n) or tuple(mask.shape) != (B, n):
        raise ShapeMismatchError(
            f"graph batch shapes disagree: x {tuple(x.shape)}, adj {tuple(adj.shape)}, "
            f"mask {tuple(mask.shape)} (expected adj ({B}, {n}, {n}), mask ({B}, {n}))"
        )


class GraphConv(nn.Module):
    """Graph convolution on dense padded batches: ``mask * linear(adj @ x)``.

    ``x`` ``(B, n_max, in_features)``, ``adj`` ``(B, n_max, n_max)`` (normalised, self loops
    included, zero on padding), ``mask`` ``(B, n_max)`` (1 on real nodes). The ``nn.Linear`` is
    shared over the ``n_max`` nodes. Output ``(B, n_max, out_features)``, zero on padding (the
    bias would otherwise make padded rows nonzero).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        _check_positive(in_features=in_features, out_features=out_features)
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        _check_graph_batch(x, adj, mask)
        return mask.to(x.dtype).unsqueeze(-1) * self.linear(adj @ x)


class SmallGNN(nn.Module):
    """``n_layers`` GraphConv + ReLU, masked mean pooling over real nodes, ``nn.Linear`` head.

    ``forward(x (B, n_max, in_features), adj (B, n_max, n_max), mask (B, n_max))`` -> logits
    ``(B, n_classes)``. Invariant to a consistent permutation of the nodes and blind to the
    features of padded nodes (``adj`` is zero there and the mask zeroes their rows).
    """

    def __init__(self, in_features: int, hidden: int = 32, n_classes: int = 3, n_layers: int = 2) -> None:
        super().__init__()
        _check_positive(in_features=in_features, hidden=hidden, n_classes=n_classes, n_layers=n_layers)
        widths = [in_features] + [hidden] * n_layers
        self.convs = nn.ModuleList(GraphConv(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        _check_graph_batch(x, adj, mask)
        m = mask.to(x.dtype)
        # zero padded features up front: adj is zero there anyway, but this makes it explicit
        h = x * m.unsqueeze(-1)
        for conv in self.convs:
            h = F.relu(conv(h, adj, m))
        counts = m.sum(dim=1, keepdim=True).clamp_min(1.0)  # empty graphs pool to zero
        pooled = h.sum(dim=1) / counts
        return self.head(pooled)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "ACTIVATIONS",
    "MLP",
    "SmallCNN",
    "SelfAttention",
    "TransformerBlock",
    "SmallViT",
    "GraphConv",
    "SmallGNN",
    "model_inputs_call",
    "count_parameters",
]
