"""ConvNeXt: Table 1 numbers and the block/stem/downsampling structure of the paper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from convzoo.bench.counts import count_macs, count_params
from convzoo.layers.norm import LayerNorm2d
from convzoo.models.convnext import ConvNeXtBlock

# arXiv 2201.03545 Table 1: params (M, printed rounded), FLOPs (G multiply-adds) at 224x224.
PAPER = {
    "convnext_tiny": (29, 4.5),
    "convnext_small": (50, 8.7),
    "convnext_base": (89, 15.4),
    "convnext_large": (198, 34.4),
    "convnext_xlarge": (350, 60.9),
}
EXACT = {  # our builds == torchvision's where it has the model
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
    "convnext_xlarge": 350_196_968,
}


def tiny(**extra):
    entry = convzoo.registry.get_entry("convnext_tiny")
    return convzoo.create_model("convnext_tiny", **{**entry.tiny.overrides, **extra})


@pytest.mark.parametrize("name", sorted(PAPER))
def test_table1_params_and_macs(name):
    params_m, macs_g = PAPER[name]
    with torch.device("meta"):
        model = convzoo.create_model(name)
    n = count_params(model)
    assert n == EXACT[name]
    assert round(n / 1e6) == params_m
    assert round(count_macs(model, 224) / 1e9, 1) == macs_g


def test_convnext_tiny_is_28_6m_params_and_4_5g_macs():
    with torch.device("meta"):
        model = convzoo.create_model("convnext_tiny")
    assert round(count_params(model) / 1e6, 1) == 28.6
    assert round(count_macs(model, 224) / 1e9, 2) == 4.46


def test_stage_depths_and_widths():
    cfgs = {n: convzoo.registry.get_entry(n).config for n in PAPER}
    assert cfgs["convnext_tiny"].depths == (3, 3, 9, 3)
    for n in ("convnext_small", "convnext_base", "convnext_large", "convnext_xlarge"):
        assert cfgs[n].depths == (3, 3, 27, 3)
    assert [cfgs[n].widths[0] for n in sorted(PAPER)] == [128, 192, 96, 96, 256]


def test_block_structure_and_layer_scale_init():
    with torch.device("meta"):
        model = convzoo.create_model("convnext_tiny")
    block = model.stages[2].blocks[0]
    assert isinstance(block, ConvNeXtBlock)
    dw = block.dwconv
    assert dw.kernel_size == (7, 7) and dw.groups == dw.in_channels == 384
    assert isinstance(block.norm, nn.LayerNorm)
    assert (block.fc1.in_features, block.fc1.out_features) == (384, 4 * 384)
    assert (block.fc2.in_features, block.fc2.out_features) == (4 * 384, 384)
    assert isinstance(block.act, nn.GELU)
    model = tiny()
    assert torch.all(model.stages[0].blocks[0].layer_scale == 1e-6)


def test_patchify_stem_and_separate_downsampling_layers():
    model = tiny()
    conv, norm = model.stem
    assert conv.kernel_size == (4, 4) and conv.stride == (4, 4) and isinstance(norm, LayerNorm2d)
    assert isinstance(model.stages[0].downsample, nn.Identity)
    for stage in model.stages[1:]:
        ln, down = stage.downsample
        assert isinstance(ln, LayerNorm2d) and down.kernel_size == (2, 2) and down.stride == (2, 2)
    x = torch.randn(1, 3, 64, 64)
    assert model.stem(x).shape[-1] == 16
    assert model.forward_features(x).shape[-1] == 2


def test_blocks_are_near_identity_at_init_because_of_layer_scale():
    block = tiny().stages[1].blocks[0].eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x, rtol=0, atol=1e-4)
        block.layer_scale.fill_(1.0)
        assert (block(x) - x).abs().max() > 1e-2


def test_layernorm2d_normalizes_channels_per_pixel():
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_()
    x = torch.randn(2, 6, 5, 4) * 3 + 1
    ref = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-6)
    torch.testing.assert_close(ln(x), ref.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        ln(torch.randn(6, 5, 4))


def test_stochastic_depth_schedule_and_batch_mode_skips_compute():
    model = tiny(depths=(2, 2, 2, 2), drop_path_rate=0.8, drop_path_mode="batch").train()
    rates = [b.drop_path.p for s in model.stages for b in s.blocks]
    # facebookresearch/ConvNeXt: torch.linspace(0, drop_path_rate, sum(depths)).
    assert rates == pytest.approx(torch.linspace(0, 0.8, 8).tolist())
    calls = []
    for s in model.stages:
        for b in s.blocks:
            b.dwconv.register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(0)
    for _ in range(4):
        model(torch.randn(2, 3, 32, 32))
    assert 0 < len(calls) < 4 * 8
    calls.clear()
    model.eval()
    model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 8
