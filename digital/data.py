"""Datasets held in memory as tensors, and a reproducible batch order.

Everything here is small enough to live in RAM: scikit-learn's bundled 8x8 digits, generated
graph-classification data (dense padded batches), and MNIST-style IDX files read from disk.
Batch order is a pure function of ``(seed, epoch)`` so a resumed run regenerates it exactly.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from thermo.errors import InputError, ShapeMismatchError

from .errors import UnsupportedConfigurationError

Inputs = Tensor | tuple[Tensor, ...]
Batch = tuple[Inputs, Tensor]


@dataclass(frozen=True)
class ArrayDataset:
    """Examples stacked along dim 0.

    ``inputs``: one tensor ``(N, ...)`` or a tuple of them (e.g. graph ``(x, adj, mask)``);
    ``targets``: ``(N,)`` long class labels or ``(N, ...)`` float regression targets.
    """

    inputs: Inputs
    targets: Tensor

    def __post_init__(self) -> None:
        if isinstance(self.inputs, list):  # accept a list but store the documented tuple
            object.__setattr__(self, "inputs", tuple(self.inputs))
        parts = self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)
        if not parts:
            raise ShapeMismatchError("ArrayDataset.inputs is an empty tuple")
        for i, t in enumerate(parts):
            if not isinstance(t, Tensor) or t.dim() < 1:
                raise ShapeMismatchError(f"ArrayDataset.inputs[{i}] must be a tensor with a batch dim")
        if not isinstance(self.targets, Tensor) or self.targets.dim() < 1:
            raise ShapeMismatchError("ArrayDataset.targets must be a tensor with a batch dim")
        n = self.targets.shape[0]
        for i, t in enumerate(parts):
            if t.shape[0] != n:
                name = "inputs" if not isinstance(self.inputs, tuple) else f"inputs[{i}]"
                raise ShapeMismatchError(
                    f"ArrayDataset.{name} has {t.shape[0]} examples but targets has {n}"
                )

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, index: Tensor) -> ArrayDataset:
        """The examples at ``index`` (long indices or a bool mask over dim 0), in that order."""
        index = torch.as_tensor(index)
        if isinstance(self.inputs, tuple):
            inputs: Inputs = tuple(t[index] for t in self.inputs)
        else:
            inputs = self.inputs[index]
        return ArrayDataset(inputs, self.targets[index])

    @property
    def n_classes(self) -> int:
        """``max label + 1`` for long targets; the trailing size for float targets."""
        if self.targets.dtype == torch.long:
            return int(self.targets.max().item()) + 1 if len(self) else 0
        return int(self.targets.shape[-1]) if self.targets.dim() > 1 else 1


# --------------------------------------------------------------------------------------------
# scikit-learn digits


def load_digits(
    test_fraction: float = 0.2,
    seed: int = 0,
    image: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[ArrayDataset, ArrayDataset]:
    """scikit-learn's bundled handwritten digits (1797 images of 8x8, 10 classes).

    Pixel values (0..16) are scaled to [0, 1], then standardised with the train split's scalar
    mean and std (so no test statistics leak in). Inputs ``(N, 1, 8, 8)`` if ``image`` else
    ``(N, 64)``, of ``dtype``; targets long ``(N,)``. The split is stratified by class and
    reproducible from ``seed``. Returns ``(train, test)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise UnsupportedConfigurationError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    mean, std = x_tr.mean(), x_tr.std()
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    shape = (-1, 1, 8, 8) if image else (-1, 64)

    def make(xs: np.ndarray, ys: np.ndarray) -> ArrayDataset:
        return ArrayDataset(torch.from_numpy(xs).to(dtype).reshape(shape), torch.from_numpy(ys))

    return make(x_tr, y_tr), make(x_te, y_te)


# --------------------------------------------------------------------------------------------
# generated graph classification


def _normalised_adjacency(a: np.ndarray) -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` with ``D`` the degrees of ``A + I`` (never zero)."""
    a_hat = a + np.eye(a.shape[0])
    d = 1.0 / np.sqrt(a_hat.sum(axis=1))
    return d[:, None] * a_hat * d[None, :]


def make_graph_classification(
    n_graphs: int = 600,
    n_classes: int = 3,
    n_nodes: tuple[int, int] = (12, 16),
    feature_dim: int = 8,
    seed: int = 0,
    test_fraction: float = 0.2,
    p_in: float = 0.9,
    p_out: float = 0.02,
    noise: float = 0.1,
) -> tuple[ArrayDataset, ArrayDataset]:
    """Generated graph classification: class ``c`` is a stochastic block model with ``c + 1``
    communities (edge probability ``p_in`` inside a community, ``p_out`` across).

    Node counts are uniform in ``[n_nodes[0], n_nodes[1]]``. Node features (``feature_dim``):
    one-hot of the degree clipped to ``feature_dim - 1``, plus ``noise`` * N(0, 1). More
    communities mean smaller communities and lower degrees, which a mean-pooled GCN picks up.
    A mean-pooled GCN sees only local structure, and ``c`` communities of ``n`` nodes look
    locally like one community of ``n / c``: the classes stay separable only while
    ``n_nodes[1] / n_nodes[0]`` is below the ratio of neighbouring community counts (hence the
    default ``(12, 16)``: ratio 1.33 < 3/2; with ``(8, 16)`` a GCN tops out near 75%).

    Batches are padded to ``n_max = n_nodes[1]``: inputs ``(x (N, n_max, F), adj (N, n_max,
    n_max), mask (N, n_max))`` float, with ``adj = D^-1/2 (A + I) D^-1/2`` on real nodes and
    zeros on padding (also zero features on padding); targets long ``(N,)``. Class counts are
    balanced (``i % n_classes``) and the split is stratified. Reproducible from ``seed``.
    Returns ``(train, test)``.
    """
    lo, hi = n_nodes
    if not 1 <= lo <= hi:
        raise UnsupportedConfigurationError(f"n_nodes must satisfy 1 <= min <= max, got {n_nodes}")
    if n_classes < 1 or n_classes > lo:
        raise UnsupportedConfigurationError(
            f"n_classes must be in [1, n_nodes[0]] (one community per class index), got {n_classes}"
        )
    if feature_dim < 1:
        raise UnsupportedConfigurationError(f"feature_dim must be >= 1, got {feature_dim}")
    if not 0.0 < test_fraction < 1.0:
        raise UnsupportedConfigurationError(f"test_fraction must be in (0, 1), got {test_fraction}")
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0.0 <= p <= 1.0:
            raise UnsupportedConfigurationError(f"{name} must be in [0, 1], got {p}")
    n_test_per_class = [0] * n_classes
    labels = np.arange(n_graphs) % n_classes
    for c in range(n_classes):
        n_test_per_class[c] = int(round(test_fraction * int((labels == c).sum())))
    if n_graphs < 2 * n_classes or min(n_test_per_class) < 1 or any(
        t >= int((labels == c).sum()) for c, t in enumerate(n_test_per_class)
    ):
        raise UnsupportedConfigurationError(
            f"n_graphs={n_graphs} too small for {n_classes} classes with test_fraction={test_fraction}"
        )

    rng = np.random.default_rng(seed)
    x = np.zeros((n_graphs, hi, feature_dim))
    adj = np.zeros((n_graphs, hi, hi))
    mask = np.zeros((n_graphs, hi))
    for g in range(n_graphs):
        c = int(labels[g])
        n = int(rng.integers(lo, hi + 1))
        block = rng.permutation(np.arange(n) % (c + 1))  # near-equal community sizes
        prob = np.where(block[:, None] == block[None, :], p_in, p_out)
        upper = np.triu(rng.random((n, n)) < prob, k=1)
        a = (upper | upper.T).astype(np.float64)
        degree = np.minimum(a.sum(axis=1).astype(np.int64), feature_dim - 1)
        feats = np.eye(feature_dim)[degree] + noise * rng.standard_normal((n, feature_dim))
        x[g, :n] = feats
        adj[g, :n, :n] = _normalised_adjacency(a)
        mask[g, :n] = 1.0

    # stratified split: per class, a seeded shuffle picks the test graphs
    test = np.zeros(n_graphs, dtype=bool)
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        test[members[: n_test_per_class[c]]] = True

    def make(sel: np.ndarray) -> ArrayDataset:
        idx = np.flatnonzero(sel)
        inputs = tuple(torch.from_numpy(a[idx]).float() for a in (x, adj, mask))
        return ArrayDataset(inputs, torch.from_numpy(labels[idx].astype(np.int64)))

    return make(~test), make(test)


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (N,)


def _read_idx(path: Path, magic: int, n_dims: int) -> np.ndarray:
    """Read an uint8 IDX file (gzip if the name ends in ``.gz``): ``(N, *dims)`` array."""
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # bad gzip stream
        raise InputError(f"{path}: cannot read ({err})") from err
    header_size = 4 + 4 * n_dims
    if len(raw) < 4:
        raise InputError(f"{path}: truncated IDX file ({len(raw)} bytes, no magic number)")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise InputError(f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    if len(raw) < header_size:
        raise InputError(f"{path}: truncated IDX header ({len(raw)} of {header_size} bytes)")
    dims = struct.unpack(f">{n_dims}I", raw[4:header_size])
    n = dims[0]
    per_item = int(np.prod(dims[1:], dtype=np.int64))
    needed = header_size + n * per_item
    if len(raw) < needed:
        raise InputError(
            f"{path}: truncated IDX data ({len(raw) - header_size} bytes for {n} items of "
            f"shape {tuple(dims[1:])}, need {n * per_item})"
        )
    data = np.frombuffer(raw, dtype=np.uint8, count=n * per_item, offset=header_size)
    return data.reshape((n, *dims[1:]))


def load_idx(
    images_path: str | Path,
    labels_path: str | Path,
    limit: int | None = None,
) -> ArrayDataset:
    """MNIST-format images and labels (e.g. ``train-images-idx3-ubyte[.gz]``).

    Images (magic ``0x00000803``) become float32 ``(N, 1, H, W)`` scaled to [0, 1]; labels
    (magic ``0x00000801``) long ``(N,)``. ``limit`` keeps the first ``limit`` examples.
    Raises FileNotFoundError for a missing file, InputError for a wrong magic number or a
    truncated file, ShapeMismatchError when the two files hold different counts.
    """
    if limit is not None and limit < 1:
        raise UnsupportedConfigurationError(f"limit must be >= 1 or None, got {limit}")
    images = _read_idx(Path(images_path), IDX_IMAGES_MAGIC, 3)
    labels = _read_idx(Path(labels_path), IDX_LABELS_MAGIC, 1)
    if images.shape[0] != labels.shape[0]:
        raise ShapeMismatchError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return ArrayDataset(x, torch.from_numpy(labels.astype(np.int64)))


# --------------------------------------------------------------------------------------------
# batching


def batches_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches ``epoch_batches`` yields for ``n`` examples.

    Raises UnsupportedConfigurationError for ``batch_size < 1``, and for ``batch_size > n``
    with ``drop_last`` (an epoch without a batch would stall a training loop).
    """
    if batch_size < 1:
        raise UnsupportedConfigurationError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and batch_size > n:
        raise UnsupportedConfigurationError(
            f"batch_size ({batch_size}) exceeds the dataset size ({n}) with drop_last=True: "
            "the epoch would have no batch"
        )
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Tensor:
    """Example order of one epoch: ``randperm`` from ``Generator().manual_seed(seed *
    1_000_003 + epoch)`` (a pure function of ``(seed, epoch)``), or ``arange`` unshuffled."""
    if not shuffle:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def epoch_batches(
    dataset: ArrayDataset,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[Batch]:
    """Yield ``(inputs, targets)`` batches of one epoch in a deterministic order.

    With ``drop_last`` the trailing ``len % batch_size`` examples of the permutation are
    skipped (every step sees a full batch); without it every example appears exactly once.
    """
    n = len(dataset)
    n_batches = batches_per_epoch(n, batch_size, drop_last)  # validates batch_size
    # validated here, iterated lazily below: a bad batch_size fails at the call, not at next()
    return _iterate(dataset, epoch_order(n, seed, epoch, shuffle), batch_size, n_batches)


def _iterate(dataset: ArrayDataset, order: Tensor, batch_size: int, n_batches: int) -> Iterator[Batch]:
    for b in range(n_batches):
        sub = dataset.subset(order[b * batch_size : (b + 1) * batch_size])
        yield sub.inputs, sub.targets


__all__ = [
    "ArrayDataset",
    "Batch",
    "Inputs",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "batches_per_epoch",
    "epoch_batches",
    "epoch_order",
    "load_digits",
    "load_idx",
    "make_graph_classification",
]
