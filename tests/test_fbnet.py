"""FBNet: the block-spec format (validation, JSON round trip, candidates), the searched
architectures, paper MACs, building any spec, parity with timm's fbnetc_100."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.interop import from_timm
from convzoo.layers.mbconv import InvertedResidual
from convzoo.models.fbnet import (
    CANDIDATES,
    FBNET_A,
    FBNET_B,
    FBNET_C,
    MACRO,
    BlockSpec,
    macro_spec,
    spec_from_json,
    spec_to_json,
)

FBNETS = ["fbnet_a", "fbnet_b", "fbnet_c"]


def test_all_variants_registered():
    assert convzoo.list_models("fbnet*") == FBNETS


@pytest.mark.parametrize("spec", [FBNET_A, FBNET_B, FBNET_C])
def test_json_round_trip(spec):
    text = spec_to_json(spec)
    assert spec_from_json(text) == spec
    assert spec_from_json(spec_to_json(spec, indent=2)) == spec
    assert len(json.loads(text)["stages"]) == 7


def test_spec_from_json_rejects_bad_input():
    with pytest.raises(ValueError, match="stages"):
        spec_from_json('{"blocks": []}')
    with pytest.raises(TypeError):
        spec_from_json('{"stages": [[{"out_channels": 8, "dilation": 2}]]}')
    with pytest.raises(ValueError, match="kernel_size"):
        spec_from_json('{"stages": [[{"out_channels": 8, "kernel_size": 7}]]}')


@pytest.mark.parametrize(
    "kwargs",
    [
        {"out_channels": 0},
        {"out_channels": 8, "stride": 3},
        {"out_channels": 8, "expand_ratio": 4},
        {"out_channels": 8, "groups": 4},
    ],
)
def test_block_spec_validates(kwargs):
    with pytest.raises(ValueError):
        BlockSpec(**kwargs)


def test_candidates_round_trip_through_block_spec():
    assert len(CANDIDATES) == 9  # Table 2
    for name in CANDIDATES:
        assert BlockSpec.from_candidate(name, out_channels=16).candidate == name
    with pytest.raises(ValueError, match="unknown candidate"):
        BlockSpec.from_candidate("k7_e6", out_channels=16)


def test_searched_architectures_follow_table1():
    for spec in (FBNET_A, FBNET_B, FBNET_C):
        assert [len(stage) for stage in spec] == [m.layers for m in MACRO]
        assert sum(len(stage) for stage in spec) == 22
        for stage, m in zip(spec, MACRO):
            assert all(b.out_channels == m.out_channels for b in stage)
            assert [b.stride for b in stage] == [m.stride] + [1] * (len(stage) - 1)
    assert [b.candidate for b in FBNET_C[1]] == ["k3_e6", "skip", "k3_e1", "k3_e1"]
    with pytest.raises(ValueError, match="candidates per stage"):
        macro_spec([["k3_e1"]])


def test_group2_blocks_shuffle_and_skip_is_identity():
    model = convzoo.create_model("fbnet_a")
    g2 = [m for m in model.modules() if isinstance(m, InvertedResidual) and m.shuffle is not None]
    assert len(g2) == 3  # FBNet-A's three k*_e1_g2 layers
    for block in g2:
        assert block.conv_pw[0].groups == 2 and block.conv_pwl[0].groups == 2
    assert isinstance(model.stages[0][0][0], nn.Identity)  # FBNet-A's first searched layer: skip
    # The shuffle interleaves the two groups: channel k * n + i goes to i * g + k.
    x = torch.arange(8.0).reshape(1, 8, 1, 1)
    assert g2[0].shuffle(x).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_expansion_one_blocks_keep_their_first_conv():
    model = convzoo.create_model("fbnet_c")
    first = model.stages[0][0][0]
    assert first.conv_pw is not None and first.conv_pw[0].out_channels == 16


def test_any_spec_builds_through_create_model():
    spec = macro_spec(
        [("k5_e6",), ("skip", "k3_e1_g2", "skip", "k5_e3"), *[("skip",) * 4] * 4, ("k3_e3",)]
    )
    model = convzoo.create_model("fbnet_c", spec=spec_from_json(spec_to_json(spec))).eval()
    # The stride-2 "skip" that widens 16 -> 24 becomes a 1x1 conv; the others are identities.
    assert not isinstance(model.stages[1][0][0], nn.Identity)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_parity_with_timm_fbnetc():
    # timm's fbnetc_100 is FBNet-C with the weightless "skip" layer left out of its list; the
    # blocks agree otherwise (expansion-1 blocks keep their first 1x1 conv in both).
    timm = pytest.importorskip("timm")
    reference = timm.create_model("fbnetc_100", pretrained=False)
    randomize_bn(reference, affine=False)
    ours = from_timm("fbnet_c", reference)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert (got - expected).abs().max().item() < 1e-4 * max(1.0, expected.abs().max().item())
