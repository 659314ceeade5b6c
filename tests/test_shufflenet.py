"""ShuffleNet v1 (Table 1 complexity, unit structure) and v2 (Table 5, units, torchvision parity)."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.bench.counts import count_macs, count_params
from convzoo.interop import from_torchvision
from convzoo.models.shufflenet import ShuffleUnit
from convzoo.models.shufflenet_v2 import ShuffleV2Unit


def _meta(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return convzoo.create_model(name, **overrides)


def _mmacs(model: nn.Module, size: int = 224) -> float:
    return count_macs(model, size) / 1e6


# ---------------------------------------------------------------- ShuffleNet v1


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_v1_complexity_matches_table1_in_multiply_adds(groups):
    name = f"shufflenet_g{groups}"
    model = _meta(name)
    fc = model.num_features * model.num_classes
    table1 = convzoo.model_info(name).paper_macs_g * 1000  # MFLOPs as printed
    # Table 1 counts multiply-adds (not 2 FLOPs each) of the conv layers, without the FC.
    assert math.isclose(_mmacs(model) - fc / 1e6, table1, abs_tol=0.5)


def test_v1_widths_follow_table1_and_only_stage2_first_pointwise_is_dense():
    for g, widths in {1: (144, 288, 576), 3: (240, 480, 960), 8: (384, 768, 1536)}.items():
        model = _meta(f"shufflenet_g{g}")
        units = [u for u in model.modules() if isinstance(u, ShuffleUnit)]
        assert len(units) == 4 + 8 + 4
        assert [s[-1].conv3[0].out_channels for s in model.stages] == list(widths)
        assert units[0].conv1[0].groups == 1
        assert all(u.conv1[0].groups == g and u.conv3[0].groups == g for u in units[1:])
        # Bottleneck = 1/4 of the unit's output width; depthwise 3x3 in the middle.
        assert all(u.conv2[0].groups == u.conv2[0].in_channels for u in units)
        assert units[5].conv1[0].out_channels == widths[1] // 4


def test_v1_width_multiplier_scales_and_rounds_for_the_groups():
    # 0.5x g=8: 12 stem channels do not split into 8 groups; the authors' release uses 16.
    half = _meta("shufflenet_g8", width_multiplier=0.5)
    assert half.stem[0].out_channels == 16
    assert [s[-1].conv3[0].out_channels for s in half.stages] == [192, 384, 768]
    # The release's ShuffleNet 2x (g=3) and 0.5x (g=8): 524M and 40M FLOPs (= MACs).
    assert round(_mmacs(_meta("shufflenet_g3", width_multiplier=2.0))) == 524
    assert round(_mmacs(half)) == 40


def test_v1_release_parameter_counts():
    # The paper prints none; the authors' release lists 1.9M (g=3) and 2.4M (g=8) at 1x.
    assert round(count_params(_meta("shufflenet_g3")) / 1e6, 1) == 1.9
    assert round(count_params(_meta("shufflenet_g8")) / 1e6, 1) == 2.4


def test_v1_stride2_unit_concatenates_the_average_pooled_input():
    unit = ShuffleUnit(24, 240, stride=2, groups=3, bottleneck_channels=60, first_groups=1)
    unit.eval()
    x = torch.rand(2, 24, 8, 8)  # non-negative, as after a ReLU
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, 240, 4, 4)
    torch.testing.assert_close(y[:, :24], nn.functional.avg_pool2d(x, 3, 2, 1))
    identity = ShuffleUnit(48, 48, stride=1, groups=4, bottleneck_channels=12, first_groups=4)
    with torch.no_grad():
        for p in identity.conv3.parameters():
            p.zero_()  # branch outputs 0 -> unit is ReLU(x)
        torch.testing.assert_close(identity.eval()(x.repeat(1, 2, 1, 1)), x.repeat(1, 2, 1, 1))


# ---------------------------------------------------------------- ShuffleNet v2

V2 = ["shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0"]


@pytest.mark.parametrize("name", V2)
def test_v2_params_and_macs_against_table5(name):
    info = convzoo.model_info(name)
    model = _meta(name)
    assert round(count_params(model) / 1e6, 1) == info.paper_params_m
    assert math.isclose(_mmacs(model) / 1000, info.paper_macs_g, abs_tol=info.paper_macs_tol_g)


def test_v2_1x_headline_numbers():
    model = _meta("shufflenet_v2_x1_0")
    assert round(count_params(model) / 1e6, 1) == 2.3
    assert 144 <= _mmacs(model) <= 146  # Table 5: 146M


def test_v2_basic_unit_passes_half_the_channels_through_to_the_even_positions():
    unit = ShuffleV2Unit(16, 16, stride=1).eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        y = unit(x)
    # concat([x1, f(x2)]) then shuffle(2): x1 lands on channels 0, 2, 4, ...
    torch.testing.assert_close(y[:, 0::2], x[:, :8], rtol=0, atol=0)
    down = ShuffleV2Unit(16, 32, stride=2).eval()
    assert down(x).shape == (2, 32, 3, 3)


@pytest.mark.parametrize("name", V2)
def test_v2_torchvision_parity(name):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, name)(weights=None).eval()
    randomize_bn(tv, affine=False)  # non-trivial BN statistics, so the buffers are checked too
    ours = from_torchvision(name, tv).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = tv(x), ours(x)
    assert (expected - got).abs().max().item() < 1e-4
