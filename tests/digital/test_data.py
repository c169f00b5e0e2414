"""Datasets and batch order: digits, generated graphs, IDX files, epoch_batches."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from digital.data import (
    ArrayDataset,
    batches_per_epoch,
    epoch_batches,
    load_digits,
    load_idx,
    make_graph_classification,
)
from digital.errors import UnsupportedConfigurationError
from digital.models import SmallGNN
from thermo.errors import InputError, ShapeMismatchError

# ------------------------------------------------------------------ ArrayDataset


def test_array_dataset_validates_first_dims_and_subsets() -> None:
    ds = ArrayDataset((torch.arange(10.0), torch.zeros(10, 3)), torch.arange(10))
    assert len(ds) == 10
    sub = ds.subset(torch.tensor([3, 1]))
    assert isinstance(sub.inputs, tuple)
    torch.testing.assert_close(sub.inputs[0], torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(sub.targets, torch.tensor([3, 1]))
    with pytest.raises(ShapeMismatchError, match=r"inputs\[1\] has 9"):
        ArrayDataset((torch.zeros(10), torch.zeros(9)), torch.zeros(10))
    with pytest.raises(ShapeMismatchError, match="inputs has 4"):
        ArrayDataset(torch.zeros(4, 2), torch.zeros(5))


# ------------------------------------------------------------------ digits


def test_digits_split_shapes_stratification_and_standardisation() -> None:
    train, test = load_digits(test_fraction=0.2, seed=0)
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 1
    assert train.inputs.shape[1:] == (1, 8, 8) and train.inputs.dtype == torch.float32
    assert train.targets.dtype == torch.long
    assert abs(train.inputs.mean().item()) < 1e-5
    assert abs(train.inputs.std(unbiased=False).item() - 1.0) < 1e-4
    assert abs(test.inputs.mean().item()) < 0.1  # test uses the train statistics, so ~0 only
    # stratified: class proportions agree between the splits
    p_train = torch.bincount(train.targets, minlength=10).float() / len(train)
    p_test = torch.bincount(test.targets, minlength=10).float() / len(test)
    assert (p_train - p_test).abs().max() < 0.01
    flat, _ = load_digits(seed=0, image=False, dtype=torch.float64)
    assert flat.inputs.shape == (len(train), 64) and flat.inputs.dtype == torch.float64
    torch.testing.assert_close(flat.inputs.float().reshape(-1, 1, 8, 8), train.inputs)


def test_digits_reproducible_by_seed() -> None:
    a, _ = load_digits(seed=1)
    b, _ = load_digits(seed=1)
    c, _ = load_digits(seed=2)
    torch.testing.assert_close(a.inputs, b.inputs)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.targets, c.targets)
    with pytest.raises(UnsupportedConfigurationError, match="test_fraction"):
        load_digits(test_fraction=1.0)


# ------------------------------------------------------------------ graphs


def test_graph_data_structure_and_reproducibility() -> None:
    train, test = make_graph_classification(n_graphs=60, n_classes=3, n_nodes=(5, 9), feature_dim=6, seed=3)
    x, adj, mask = train.inputs
    assert x.shape == (len(train), 9, 6) and adj.shape == (len(train), 9, 9) and mask.shape == (len(train), 9)
    assert len(train) + len(test) == 60 and len(test) == 12
    assert torch.bincount(test.targets).tolist() == [4, 4, 4]
    torch.testing.assert_close(adj, adj.transpose(1, 2))
    n_real = mask.sum(1)
    assert ((n_real >= 5) & (n_real <= 9)).all()
    pad = mask == 0
    assert pad.any()
    assert (x[pad] == 0).all()
    assert (adj * pad[:, :, None] == 0).all() and (adj * pad[:, None, :] == 0).all()
    # D^-1/2 (A + I) D^-1/2: the diagonal is 1/deg(A + I), positive on every real node
    diag = torch.diagonal(adj, dim1=1, dim2=2)
    assert (diag[~pad] > 0).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    again, _ = make_graph_classification(n_graphs=60, n_classes=3, n_nodes=(5, 9), feature_dim=6, seed=3)
    for t, u in zip(train.inputs, again.inputs):
        assert torch.equal(t, u)
    other, _ = make_graph_classification(n_graphs=60, n_classes=3, n_nodes=(5, 9), feature_dim=6, seed=4)
    assert not torch.equal(other.inputs[1], adj)


def test_graph_adjacency_is_the_normalised_one() -> None:
    train, _ = make_graph_classification(n_graphs=10, n_classes=2, n_nodes=(4, 6), seed=0)
    x, adj, mask = train.inputs
    for g in range(len(train)):
        n = int(mask[g].sum())
        a_hat = (adj[g, :n, :n] > 0).float()  # A + I
        d = a_hat.sum(1).rsqrt()
        torch.testing.assert_close(adj[g, :n, :n], d[:, None] * a_hat * d[None, :])
        degree = a_hat.sum(1) - 1  # feature: one-hot of clipped degree plus noise
        assert torch.equal(x[g, :n].argmax(1), degree.clamp(max=x.shape[-1] - 1).long())


def test_graph_classification_is_learnable_by_a_small_gnn() -> None:
    train, test = make_graph_classification(n_graphs=300, seed=0)
    torch.manual_seed(0)
    model = SmallGNN(train.inputs[0].shape[-1], hidden=32, n_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(40):
        for inputs, targets in epoch_batches(train, 32, seed=0, epoch=epoch):
            opt.zero_grad()
            F.cross_entropy(model(*inputs), targets).backward()
            opt.step()
    with torch.no_grad():
        acc = (model(*test.inputs).argmax(1) == test.targets).float().mean().item()
    assert acc > 0.8


def test_graph_config_errors() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="n_nodes"):
        make_graph_classification(n_nodes=(9, 5))
    with pytest.raises(UnsupportedConfigurationError, match="n_graphs"):
        make_graph_classification(n_graphs=4, n_classes=3)


# ------------------------------------------------------------------ IDX


def _write_idx(path: Path, magic: int, array: np.ndarray, header_dims=None) -> None:
    dims = array.shape if header_dims is None else header_dims
    payload = struct.pack(f">I{len(dims)}I", magic, *dims) + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    ip, lp = tmp_path / f"img{suffix}", tmp_path / f"lab{suffix}"
    _write_idx(ip, 0x803, images)
    _write_idx(lp, 0x801, labels)
    ds = load_idx(ip, lp)
    assert ds.inputs.shape == (7, 1, 5, 4) and ds.inputs.dtype == torch.float32
    torch.testing.assert_close(ds.inputs[:, 0], torch.from_numpy(images.astype(np.float32) / 255))
    assert ds.targets.dtype == torch.long and ds.targets.tolist() == labels.tolist()
    assert 0.0 <= ds.inputs.min() and ds.inputs.max() <= 1.0
    limited = load_idx(str(ip), str(lp), limit=3)
    assert len(limited) == 3 and torch.equal(limited.targets, ds.targets[:3])


def test_idx_errors(tmp_path: Path) -> None:
    images = np.zeros((4, 3, 3), dtype=np.uint8)
    labels = np.zeros(4, dtype=np.uint8)
    ip, lp = tmp_path / "img", tmp_path / "lab"
    _write_idx(ip, 0x803, images)
    _write_idx(lp, 0x801, labels)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_idx(tmp_path / "missing", lp)
    # wrong magic: labels file given as images
    with pytest.raises(InputError, match="magic"):
        load_idx(lp, lp)
    # truncated data: header promises 4 images, only 3 present
    trunc = tmp_path / "trunc"
    _write_idx(trunc, 0x803, images[:3], header_dims=(4, 3, 3))
    with pytest.raises(InputError, match="truncated"):
        load_idx(trunc, lp)
    # truncated header
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">II", 0x803, 4))
    with pytest.raises(InputError, match="truncated"):
        load_idx(short, lp)
    # mismatched counts
    lp5 = tmp_path / "lab5"
    _write_idx(lp5, 0x801, np.zeros(5, dtype=np.uint8))
    with pytest.raises(ShapeMismatchError, match="4 images"):
        load_idx(ip, lp5)


# ------------------------------------------------------------------ batching


def _dataset(n: int) -> ArrayDataset:
    return ArrayDataset((torch.arange(n), torch.arange(n) * 10.0), torch.arange(n))


def test_epoch_batches_are_deterministic_and_depend_on_epoch() -> None:
    ds = _dataset(50)

    def order(seed: int, epoch: int) -> list[int]:
        return torch.cat([t for _, t in epoch_batches(ds, 8, seed, epoch)]).tolist()

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)
    # the documented generator: a resumed run can regenerate epoch k without replaying 0..k-1
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(5 * 1_000_003 + 2))
    assert order(5, 2) == expected[:48].tolist()


def test_epoch_batches_cover_the_epoch_and_keep_inputs_aligned() -> None:
    ds = _dataset(23)
    batches = list(epoch_batches(ds, 5, seed=1, epoch=0, drop_last=False))
    assert [len(t) for _, t in batches] == [5, 5, 5, 5, 3] and len(batches) == batches_per_epoch(23, 5, False)
    seen = torch.cat([t for _, t in batches])
    assert sorted(seen.tolist()) == list(range(23))
    for (idx, scaled), targets in batches:
        assert torch.equal(idx, targets) and torch.equal(scaled, targets * 10.0)
    dropped = list(epoch_batches(ds, 5, seed=1, epoch=0))
    assert len(dropped) == batches_per_epoch(23, 5) == 4
    assert all(len(t) == 5 for _, t in dropped)
    plain = list(epoch_batches(ds, 10, seed=1, epoch=0, shuffle=False, drop_last=False))
    assert plain[0][1].tolist() == list(range(10))


def test_epoch_batches_errors() -> None:
    ds = _dataset(10)
    with pytest.raises(UnsupportedConfigurationError, match="batch_size"):
        epoch_batches(ds, 0, seed=0, epoch=0)
    with pytest.raises(UnsupportedConfigurationError, match="exceeds"):
        epoch_batches(ds, 11, seed=0, epoch=0)
    assert len(list(epoch_batches(ds, 11, seed=0, epoch=0, drop_last=False))) == 1
    with pytest.raises(UnsupportedConfigurationError, match="exceeds"):
        batches_per_epoch(10, 11)
    assert batches_per_epoch(10, 11, drop_last=False) == 1
