"""Shapes, gradient flow and structural properties of the small models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from digital.errors import UnsupportedConfigurationError
from digital.models import (
    MLP,
    GraphConv,
    SmallCNN,
    SmallGNN,
    SmallViT,
    model_inputs_call,
)
from thermo.errors import ShapeMismatchError


def _graph_batch(B: int = 3, n_max: int = 6, F: int = 4, seed: int = 0):
    """Random symmetric normalised graphs with 3..n_max real nodes each, zero padding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(B, n_max, F)
    adj = torch.zeros(B, n_max, n_max)
    mask = torch.zeros(B, n_max)
    for b in range(B):
        n = 3 + b % (n_max - 2)
        a = (torch.rand(n, n, generator=g) < 0.5).float().triu(1)
        a = a + a.T + torch.eye(n)
        d = a.sum(1).rsqrt()
        adj[b, :n, :n] = d[:, None] * a * d[None, :]
        x[b, :n] = torch.randn(n, F, generator=g)
        mask[b, :n] = 1.0
    return x, adj, mask


def _models():
    torch.manual_seed(0)
    return {
        "mlp": (MLP(64, [16, 8], 10), torch.randn(5, 1, 8, 8), 10),
        "cnn": (SmallCNN(), torch.randn(5, 1, 8, 8), 10),
        "vit": (SmallViT(), torch.randn(5, 1, 8, 8), 10),
        "gnn": (SmallGNN(4, hidden=8, n_classes=3), _graph_batch(5), 3),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit", "gnn"])
def test_output_shape_and_gradients_reach_every_parameter(name: str) -> None:
    model, inputs, n_out = _models()[name]
    out = model_inputs_call(model, inputs)
    assert out.shape == (5, n_out)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.abs().sum() > 0, f"no gradient reaches {pname}"


def test_mlp_accepts_flat_and_image_inputs_and_rejects_wrong_width() -> None:
    torch.manual_seed(0)
    model = MLP(64, [8], 3, activation="relu")
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(model(x), model(x.flatten(1)))
    with pytest.raises(ShapeMismatchError):
        model(torch.randn(4, 63))
    with pytest.raises(UnsupportedConfigurationError, match="activation"):
        MLP(4, [4], 2, activation="sigmoid")


def test_deep_linear_mlp_is_linear_without_bias() -> None:
    torch.manual_seed(0)
    model = MLP(6, [5, 4], 3, activation="identity", bias=False)
    x, y = torch.randn(7, 6), torch.randn(7, 6)
    torch.testing.assert_close(model(2 * x), 2 * model(x))
    torch.testing.assert_close(model(x + y), model(x) + model(y))
    tanh = MLP(6, [5, 4], 3, activation="tanh", bias=False)
    assert not torch.allclose(tanh(3 * x), 3 * tanh(x))  # the check can fail


def test_models_are_deterministic_given_the_seed() -> None:
    x = torch.randn(2, 1, 8, 8)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(SmallViT()(x))
    torch.testing.assert_close(outs[0], outs[1])
    torch.manual_seed(8)
    assert not torch.allclose(SmallViT()(x), outs[0])


def test_cnn_has_one_conv_and_two_linear_layers() -> None:
    model = SmallCNN(kernel_size=5)
    kinds = [type(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert kinds == [nn.Conv2d, nn.Linear, nn.Linear]
    assert model.conv.padding == (2, 2)
    with pytest.raises(ShapeMismatchError):
        model(torch.randn(2, 1, 7, 7))


def test_vit_uses_four_linear_projections_per_block_and_no_multihead_attention() -> None:
    depth = 3
    model = SmallViT(depth=depth, dim=16, heads=4, mlp_dim=24)
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    for block in model.blocks:
        for proj in ("q", "k", "v", "out"):
            layer = getattr(block.attn, proj)
            assert isinstance(layer, nn.Linear) and layer.weight.shape == (16, 16)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert n_linear == 1 + depth * (4 + 2) + 1  # patch embedding, blocks, head
    assert isinstance(model.patch_embed, nn.Linear) and model.patch_embed.in_features == 4
    assert isinstance(model.pos_embed, nn.Parameter) and model.pos_embed.shape == (1, 16, 16)


def test_vit_patch_embedding_is_shared_over_patches() -> None:
    model = SmallViT(image_size=4, patch_size=2, in_channels=2)
    x = torch.arange(2 * 2 * 4 * 4, dtype=torch.float32).reshape(2, 2, 4, 4)
    patches = model.patchify(x)
    assert patches.shape == (2, 4, 2 * 2 * 2)
    # second patch (row 0, cols 2..3) of example 0, channel-major then row-major inside
    expected = torch.cat([x[0, c, 0:2, 2:4].reshape(-1) for c in range(2)])
    torch.testing.assert_close(patches[0, 1], expected)
    captured = []
    model.patch_embed.register_forward_hook(lambda m, i, o: captured.append(i[0].shape))
    model(x)
    assert captured == [torch.Size([2, 4, 8])]


def test_vit_rejects_indivisible_patch_size() -> None:
    with pytest.raises(UnsupportedConfigurationError, match="patch_size"):
        SmallViT(image_size=8, patch_size=3)


def test_gnn_is_invariant_to_node_permutation() -> None:
    torch.manual_seed(0)
    model = SmallGNN(4, hidden=8, n_classes=3)
    x, adj, mask = _graph_batch(4, n_max=7)
    perm = torch.randperm(7)
    out = model(x, adj, mask)
    out_perm = model(x[:, perm], adj[:, perm][:, :, perm], mask[:, perm])
    torch.testing.assert_close(out, out_perm)
    conv = GraphConv(4, 5)
    torch.testing.assert_close(conv(x, adj, mask)[:, perm], conv(x[:, perm], adj[:, perm][:, :, perm], mask[:, perm]))


def test_gnn_ignores_padded_nodes() -> None:
    torch.manual_seed(0)
    model = SmallGNN(4, hidden=8, n_classes=3)
    x, adj, mask = _graph_batch(4, n_max=7)
    pad = mask == 0
    assert pad.any()
    x2 = x.clone()
    x2[pad] = 100 * torch.randn(int(pad.sum()), 4)
    torch.testing.assert_close(model(x, adj, mask), model(x2, adj, mask.bool()))
    # the padded rows of a GraphConv output are exactly zero despite the bias
    h = model.convs[0](x2, adj, mask)
    assert (h[pad] == 0).all()
    # and real-node features do matter
    x3 = x.clone()
    x3[~pad] += 1.0
    assert not torch.allclose(model(x3, adj, mask), model(x, adj, mask))


def test_graph_shapes_are_checked() -> None:
    model = SmallGNN(4)
    x, adj, mask = _graph_batch(2, n_max=5)
    with pytest.raises(ShapeMismatchError):
        model(x, adj[:, :4, :4], mask)


def test_model_inputs_call_dispatches_on_tuple() -> None:
    calls = []

    class Spy(nn.Module):
        def forward(self, *args):
            calls.append(len(args))
            return args[0]

    spy = Spy()
    model_inputs_call(spy, torch.zeros(1))
    model_inputs_call(spy, (torch.zeros(1), torch.zeros(1)))
    model_inputs_call(spy, [torch.zeros(1)] * 3)
    assert calls == [1, 2, 3]
