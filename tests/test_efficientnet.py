"""EfficientNet: compound scaling as code, the released coefficients against it, paper MACs,
stochastic depth, parity with torchvision B0-B7."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.bench.counts import count_macs
from convzoo.interop import from_torchvision
from convzoo.layers.mbconv import InvertedResidual
from convzoo.models.efficientnet import (
    RELEASED,
    EfficientNet,
    compound_config,
    compound_scale,
)

EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)]


def test_all_variants_registered():
    assert convzoo.list_models("efficientnet_*") == EFFICIENTNETS


def test_compound_scale_is_equation_3():
    c = compound_scale(0)
    assert (c.width, c.depth, c.resolution, c.dropout) == (1.0, 1.0, 224, 0.2)
    c = compound_scale(2)
    assert math.isclose(c.depth, 1.2**2) and math.isclose(c.width, 1.1**2)
    assert c.resolution == round(224 * 1.15**2) == 296
    # The grid-search constraint: alpha * beta^2 * gamma^2 ~ 2, so FLOPs grow ~2^phi.
    assert 1.9 < 1.2 * 1.1**2 * 1.15**2 < 2.0
    with pytest.raises(ValueError):
        compound_scale(-1)


def _widths_and_repeats(model: EfficientNet) -> tuple[list[int], list[int]]:
    rows = [row for stage in model.stages for row in stage]  # Table 1's stages 2-8
    widths = [model.stem[0].out_channels]
    widths += [row[-1].out_channels for row in rows] + [model.num_features]
    return widths, [len(row) for row in rows]


def test_table1_rows_are_grouped_by_resolution():
    with torch.device("meta"):
        model = convzoo.create_model("efficientnet_b0")
    # Stages 2 | 3 | 4 | 5-6 | 7-8 of Table 1 run at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input.
    assert [len(stage) for stage in model.stages] == [1, 1, 1, 2, 2]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert model.neck[0].out_channels == 1280


def test_compound_config_rounds_channels_and_repeats_like_the_paper():
    # phi = 1: widths make_divisible(c * 1.1, 8), repeats ceil(n * 1.2), worked by hand.
    with torch.device("meta"):
        model = EfficientNet(compound_config(1))
    widths, repeats = _widths_and_repeats(model)
    assert widths == [32, 16, 24, 48, 88, 120, 208, 352, 1408]
    assert repeats == [2, 3, 3, 4, 4, 5, 2]


def test_released_b7_has_the_released_widths_and_repeats():
    with torch.device("meta"):
        model = convzoo.create_model("efficientnet_b7")
    widths, repeats = _widths_and_repeats(model)
    assert widths == [64, 32, 48, 80, 160, 224, 384, 640, 2560]
    assert repeats == [4, 7, 7, 10, 10, 13, 4]


def test_compound_scaled_macs_grow_about_two_to_the_phi():
    # Rounding repeats up makes small phi costlier than (alpha beta^2 gamma^2)^phi, never cheaper.
    base = None
    for phi in range(3):
        c = compound_scale(phi)
        with torch.device("meta"):
            macs = count_macs(EfficientNet(compound_config(phi)), c.resolution)
        base = base or macs
        ratio = macs / base / (1.2 * 1.1**2 * 1.15**2) ** phi
        assert 1.0 <= ratio < 1.4, (phi, ratio)


def test_released_coefficients_against_compound_scale():
    # What the module docstring says of the release, relative to compound_scale(phi = n).
    for n, name in enumerate(EFFICIENTNETS):
        released, rule = RELEASED[name], compound_scale(n)
        # Dropout is exactly the linear 0.2 -> 0.5 rule, rounded to one decimal.
        assert released.dropout == rule.dropout
        info = convzoo.model_info(name)
        assert info.input_size == released.resolution
        if n == 0:
            assert (released.width, released.depth, released.resolution) == (1.0, 1.0, 224)
            continue
        depth, width = released.depth / rule.depth, released.width / rule.width
        resolution = released.resolution / rule.resolution
        assert 0.81 <= depth <= 0.92, (name, depth)  # 8-19% shallower
        if n <= 3:
            assert 0.90 <= width <= 0.91 and 0.87 <= resolution <= 0.94, (name, width, resolution)
        else:
            assert 0.95 <= width <= 1.05 and 0.96 <= resolution <= 1.03, (name, width, resolution)


def test_stochastic_depth_uses_the_reference_schedule():
    # tensorflow/tpu efficientnet_model.py: drop_connect_rate * idx / len(blocks), idx from 0.
    model = convzoo.create_model("efficientnet_b0", drop_path_rate=0.2)
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    n = len(blocks)
    assert n == 16
    for i, block in enumerate(blocks):
        expected = 0.2 * i / n if block.has_residual else 0.0
        assert math.isclose(block.drop_path.p, expected)
    assert blocks[-1].drop_path.p == 0.0  # the last block (320 wide) has no shortcut
    assert math.isclose(blocks[-2].drop_path.p, 0.2 * 14 / 16)


def test_batch_mode_stochastic_depth_trains():
    model = convzoo.create_model(
        "efficientnet_b0",
        stages=convzoo.registry.get_entry("efficientnet_b0").tiny.overrides["stages"],
        drop_path_rate=0.5,
        drop_path_mode="batch",
    ).train()
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", EFFICIENTNETS)
def test_parity_with_torchvision(name):
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, name)(weights=None)
    randomize_bn(reference, affine=False)
    eps = {m.eps for m in reference.modules() if isinstance(m, nn.BatchNorm2d)}
    # torchvision's B0-B4 use PyTorch's eps 1e-5, its B5-B7 the reference's 1e-3 (ours).
    overrides = {} if eps == {1e-3} else {"norm_layer": nn.BatchNorm2d}
    assert eps == ({1e-3} if name[-1] in "567" else {1e-5})
    ours = from_torchvision(name, reference, **overrides)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert (got - expected).abs().max().item() < 1e-4
