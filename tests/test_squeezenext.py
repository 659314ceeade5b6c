"""SqueezeNext: block widths, alternating separable order, v5 layout, as in the authors' release."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from convzoo.models.squeezenext import SqNxtBlock
from convzoo.registry import get_entry

NAMES = [
    "sqnxt23_w1",
    "sqnxt23_w1_5",
    "sqnxt23_w2",
    "sqnxt23v5_w1",
    "sqnxt23v5_w1_5",
    "sqnxt23v5_w2",
]


def _meta(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return convzoo.create_model(name, **overrides)


def _blocks(model: nn.Module) -> list[SqNxtBlock]:
    return [m for m in model.modules() if isinstance(m, SqNxtBlock)]


@pytest.mark.parametrize("name", NAMES)
def test_depth_23_is_stem_plus_21_blocks_plus_final_conv(name):
    model = _meta(name)
    blocks = _blocks(model)
    assert 1 + len(blocks) + 1 == 23
    expected = (6, 6, 8, 1) if "v5" not in name else (2, 4, 14, 1)
    assert tuple(len(stage) for stage in model.stages) == expected
    assert model.neck[0].kernel_size == (1, 1) and model.neck[0].out_channels == 128


def test_block_widths_follow_the_output_width():
    # 1.0-SqNxt-23 release, first block of stage 4 (128 -> 256, stride 2): 1x1/2 to 128, 1x1 to
    # 64, 3x1 to 128, 1x3 to 128, 1x1 to 256, shortcut 1x1/2 to 256.
    block = _meta("sqnxt23_w1").stages[3][0]
    convs = [m for m in block.branch.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 64, 128, 128, 256]
    assert convs[0].stride == (2, 2)
    assert isinstance(block.shortcut[0], nn.Conv2d) and block.shortcut[0].stride == (2, 2)
    # First block of stage 1 (64 -> 32): squeezes to 16 and 8, i.e. by the *output* width.
    first = _meta("sqnxt23_w1").stages[0][0]
    assert [c.out_channels for c in first.branch.modules() if isinstance(c, nn.Conv2d)] == [
        16, 8, 16, 16, 32
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["sqnxt23_w1", "sqnxt23v5_w2"])
def test_separable_order_alternates_across_the_whole_network(name):
    orders = [
        tuple(c.kernel_size for c in b.branch.modules() if isinstance(c, nn.Conv2d))[2:4]
        for b in _blocks(_meta(name))
    ]
    assert orders[0::2] == [((3, 1), (1, 3))] * len(orders[0::2])
    assert orders[1::2] == [((1, 3), (3, 1))] * len(orders[1::2])


def test_width_multiplier_widens_the_blocks_only():
    # The 2.0-SqNxt-23 release keeps the 64-channel stem and the 128-channel final conv.
    model = _meta("sqnxt23_w2")
    assert model.stem[0].out_channels == 64 and model.num_features == 128
    assert [stage[0].branch[-1].out_channels for stage in model.stages] == [64, 128, 256, 512]
    assert [b.branch[0].out_channels for b in _blocks(_meta("sqnxt23_w1_5"))][:2] == [24, 24]


@pytest.mark.parametrize("name", ["sqnxt23_w2", "sqnxt23v5_w2"])
def test_first_block_projects_even_at_equal_width(name):
    # 2.0-SqNxt-23(v5) prototxts: Convolution2, a 1x1 from the 64-channel pool to 64 channels.
    model = _meta(name)
    first = model.stages[0][0]
    proj = first.project if "v5" in name else first.shortcut
    assert isinstance(proj[0], nn.Conv2d) and (proj[0].in_channels, proj[0].out_channels) == (
        64,
        64,
    )
    # Later blocks of the stage keep the identity shortcut.
    assert all(
        isinstance(b.shortcut, nn.Identity) and isinstance(b.project, nn.Identity)
        for b in model.stages[0][1:]
    )
    kernel = 5 if "v5" in name else 7
    assert model.stem[0][0].kernel_size == (kernel, kernel) and model.stem[0].out_channels == 64


def test_v5_release_layout():
    v5 = _meta("sqnxt23v5_w1")
    assert v5.stem[0][0].kernel_size == (5, 5)
    first = v5.stages[0][0]
    # Projection first (64 -> 32), then an identity block on it.
    assert first.project.out_channels == 32 and isinstance(first.shortcut, nn.Identity)
    assert first.branch[0].in_channels == 32
    base = _meta("sqnxt23_w1").stages[0][0]
    assert isinstance(base.project, nn.Identity) and base.branch[0].in_channels == 64


@pytest.mark.parametrize("name", ["sqnxt23_w1", "sqnxt23v5_w1"])
def test_min_input_size_is_tight(name):
    # The minimum depends on the stem only, so the tiny widths are enough.
    model = convzoo.create_model(name, **get_entry(name).tiny.overrides).eval()
    s = model.min_input_size
    with torch.no_grad():
        assert model(torch.randn(2, 3, s, s)).shape == (2, 1000)
        with pytest.raises(RuntimeError):
            model.stages(model.stem(torch.randn(1, 3, s - 1, s - 1)))
