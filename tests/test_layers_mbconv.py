"""DepthwiseSeparable and InvertedResidual (MBConv): structure, shortcut, linear bottleneck, drop path."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from convzoo.layers.mbconv import (
    TF_BATCHNORM,
    DepthwiseSeparable,
    InvertedResidual,
    PlannedBlock,
    repeated,
    resolution_stages,
)
from convzoo.layers.squeeze_excite import SqueezeExcite


def test_depthwise_separable_structure_and_cost():
    block = DepthwiseSeparable(8, 16, 3, stride=2)
    assert block.conv_dw[0].groups == 8 and block.conv_dw[0].stride == (2, 2)
    # Depthwise 8*3*3, pointwise 8*16, two BatchNorms (2 params per channel).
    assert sum(p.numel() for p in block.parameters()) == 8 * 9 + 8 * 16 + 2 * 8 + 2 * 16
    assert block(torch.randn(2, 8, 10, 10)).shape == (2, 16, 5, 5)


def test_inverted_residual_parts_and_shortcut():
    keep = InvertedResidual(16, 16, mid_channels=96, kernel_size=5)
    assert keep.has_residual and keep.conv_pw is not None and keep.conv_dw[0].kernel_size == (5, 5)
    assert keep.conv_dw[0].groups == 96
    assert not InvertedResidual(16, 16, mid_channels=96, stride=2).has_residual
    assert not InvertedResidual(16, 24, mid_channels=96).has_residual
    # No expansion conv where there is nothing to expand, unless forced (FBNet's e = 1).
    assert InvertedResidual(16, 16, mid_channels=16).conv_pw is None
    assert InvertedResidual(16, 16, mid_channels=16, force_expand=True).conv_pw is not None


def test_residual_adds_the_branch_in_eval():
    block = InvertedResidual(8, 8, mid_channels=24).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.branch(x))


def test_projection_is_linear():
    # The last conv of the branch has no activation: the bottleneck output can be negative.
    block = InvertedResidual(8, 12, mid_channels=24).eval()
    assert len(block.conv_pwl) == 2  # conv, norm; no activation
    with torch.no_grad():
        assert (block(torch.randn(4, 8, 6, 6)) < 0).any()


def test_squeeze_excite_sits_on_the_expanded_width():
    se = []
    block = InvertedResidual(
        8, 8, mid_channels=32, se_layer=lambda c: se.append(c) or SqueezeExcite(c, 8)
    )
    assert se == [32] and isinstance(block.se, SqueezeExcite)


def test_grouped_pointwise_needs_a_shuffle():
    with pytest.raises(ValueError, match="shuffle"):
        InvertedResidual(8, 8, mid_channels=8, pw_groups=2)
    shuffles = []
    block = InvertedResidual(
        8,
        8,
        mid_channels=16,
        pw_groups=2,
        shuffle_layer=lambda g: shuffles.append(g) or nn.Identity(),
    )
    assert block.conv_pw[0].groups == 2 and block.conv_pwl[0].groups == 2 and shuffles == [2]


def test_bad_stride_raises():
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, mid_channels=8, stride=3)


def test_batch_mode_drop_path_skips_the_branch_compute():
    block = InvertedResidual(8, 8, mid_channels=16, drop_path_rate=0.5, drop_path_mode="batch")
    block.train()
    calls = 0
    original = block.branch

    def counting(x):
        nonlocal calls
        calls += 1
        return original(x)

    block.branch = counting
    x = torch.randn(2, 8, 4, 4)
    skipped = 0
    for _ in range(100):
        out = block(x)
        skipped += bool(torch.equal(out, x))
    assert skipped + calls == 100  # every pass either skipped the branch or computed it
    assert 25 < skipped < 75  # about half of 100 at p = 0.5 (seeded by conftest)


def test_non_residual_blocks_never_drop():
    block = InvertedResidual(8, 16, mid_channels=16, drop_path_rate=0.5).train()
    assert block.drop_path.p == 0.0


def test_tf_batchnorm_settings():
    bn = TF_BATCHNORM(4)
    assert bn.eps == 1e-3 and bn.momentum == 0.01


def _ir(in_channels: int, stride: int, drop_path_rate: float, *, out_channels: int) -> nn.Module:
    return InvertedResidual(
        in_channels,
        out_channels,
        mid_channels=2 * in_channels,
        stride=stride,
        drop_path_rate=drop_path_rate,
    )


def _row(out_channels: int, stride: int, repeats: int) -> list[PlannedBlock]:
    return repeated(partial(_ir, out_channels=out_channels), out_channels, stride, repeats)


def test_resolution_stages_chain_widths_and_group_rows_by_resolution():
    # Rows at 1/1, 1/2, 1/2 (a stride-1 row joins the stage before), 1/4, 1/4.
    rows = [_row(8, 1, 1), _row(16, 2, 2), _row(24, 1, 3), _row(32, 2, 1), _row(40, 1, 1)]
    stages = resolution_stages(rows, 4, drop_path_rate=0.4)
    assert [len(stage) for stage in stages] == [1, 2, 2]
    blocks = [b for stage in stages for row in stage for b in row]
    assert [b.in_channels for b in blocks] == [4, 8, 16, 16, 24, 24, 24, 32]
    # The linear schedule runs over all 8 blocks; blocks that change shape have no residual.
    assert [b.drop_path.p for b in blocks] == pytest.approx(
        [0.4 * (i + 1) / 8 if b.has_residual else 0.0 for i, b in enumerate(blocks)]
    )
    assert stages(torch.randn(1, 4, 8, 8)).shape == (1, 40, 2, 2)


def test_resolution_stages_flat_rows_and_bad_tables():
    flat = [_row(8, 2, 1), _row(8, 1, 1), _row(16, 2, 1)]
    stages = resolution_stages(flat, 4, nest_rows=False)
    assert [len(stage) for stage in stages] == [2, 1]
    assert all(isinstance(b, InvertedResidual) for stage in stages for b in stage)
    strided_inside = [[*_row(8, 1, 1), *_row(8, 2, 1)]]
    with pytest.raises(ValueError, match="first block of a row"):
        resolution_stages(strided_inside, 4)
    with pytest.raises(ValueError, match="empty row"):
        resolution_stages([_row(8, 1, 1), []], 4)
