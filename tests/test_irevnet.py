"""i-RevNet: exact model inverse, reversible backward == autograd, BN stats, Table 1 counts."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import convzoo
from convzoo.models.irevnet import InjectivePad, IRevBlock, SpaceToDepth

SMALL = {
    "depths": (2, 2),
    "channels": (24, 96),
    "strides": (2, 2),
    "bottleneck_ratio": 8,
    "num_classes": 10,
}


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("stride", [1, 2])
def test_block_inverse(stride):
    torch.manual_seed(0)
    block = IRevBlock(6, 6 * stride * stride, stride, first=False, ratio=2, dropout=0.0)
    x = torch.randn(2, 12, 8, 8)
    block.train()
    with torch.no_grad():
        y = block(x)
        assert (block.inverse(y) - x).abs().max().item() < 1e-5


def test_space_to_depth_and_padding_invert():
    x = torch.randn(2, 4, 8, 8)
    s = SpaceToDepth(2)
    assert s(x).shape == (2, 16, 4, 4)
    torch.testing.assert_close(s.inverse(s(x)), x, rtol=0, atol=0)
    pad = InjectivePad(3)
    assert pad(x).shape == (2, 10, 8, 8)
    torch.testing.assert_close(pad.inverse(pad(x)), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="maps width"):
        IRevBlock(6, 12, 2, first=False, ratio=2, dropout=0.0)


def test_space_to_depth_uses_the_released_channel_order():
    # Released psi: output channel (dy * b + dx) * C + c is input channel c at offset (dy, dx),
    # so the split after S~ gives the first half the top row of every 2x2 block.
    b, c = 2, 3
    x = torch.arange(2 * c * 4 * 6, dtype=torch.float32).view(2, c, 4, 6)
    y = SpaceToDepth(b)(x)
    for dy in range(b):
        for dx in range(b):
            for ch in range(c):
                torch.testing.assert_close(y[:, (dy * b + dx) * c + ch], x[:, ch, dy::b, dx::b])


def test_injective_pad_appends_zeros_to_the_merged_halves():
    # Released injective_pad: zeros after (x1, x2), then split, so x2 straddles the halves.
    x = torch.randn(1, 4, 2, 2)
    y = InjectivePad(1)(x)
    torch.testing.assert_close(y[:, :4], x, rtol=0, atol=0)
    assert y[:, 4:].abs().sum() == 0


@pytest.mark.parametrize("name", ["irevnet_a", "irevnet_b"])
def test_model_inverse_reconstructs_input(name):
    torch.manual_seed(0)
    overrides = dict(SMALL, channels=(28, 112), init_pad=1) if name == "irevnet_a" else SMALL
    model = convzoo.create_model(name, **overrides).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats = model.forward_intermediates(x, intermediates_only=True)[-1]
        assert feats.shape == (2, 2 * overrides["channels"][-1], 2, 2)
        err = (model.inverse(feats) - x).abs().max().item()
    assert err < 1e-5
    with pytest.raises(ValueError, match="multiples"):
        model(torch.randn(1, 3, 20, 20))


def test_reversible_backward_matches_autograd_with_dropout_and_bn():
    torch.manual_seed(0)
    model = convzoo.create_model("irevnet_b", block_dropout=0.2, **SMALL).train()
    twin = copy.deepcopy(model).set_memory_saving(False)
    x, target = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    grads = []
    for m in (model, twin):
        torch.manual_seed(7)  # same dropout masks in both runs
        nn.functional.cross_entropy(m(x), target).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for n, g in grads[1].items():
        assert _relative_error(grads[0][n], g) < 1e-5, n
    ref = dict(twin.named_buffers())
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, ref[n], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "paper_m", "tol"), [("irevnet_b", 125.0, 0.2), ("irevnet_a", 181.0, 12.0)]
)
def test_param_counts_vs_table_1(name, paper_m, tol):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - paper_m) <= tol
    if name == "irevnet_b":  # the released network built from the README's command
        assert n == 125_120_356
