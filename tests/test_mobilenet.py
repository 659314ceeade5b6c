"""MobileNet v1/v2/v3: paper MACs, the tables' structure, parity with torchvision and timm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.interop import from_timm, from_torchvision
from convzoo.layers.mbconv import DepthwiseSeparable, InvertedResidual

MOBILENETS = convzoo.list_models("mobilenet_v*")


def test_all_variants_registered():
    assert MOBILENETS == [
        "mobilenet_v1",
        "mobilenet_v1_025",
        "mobilenet_v1_050",
        "mobilenet_v1_075",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
    ]


def test_v1_is_28_layers_without_pooling():
    # Table 1 / section 3.2: "counting depthwise and pointwise convolutions as separate layers,
    # MobileNet has 28 layers" -- the full conv, 13 x (dw + pw), and the classifier.
    model = convzoo.create_model("mobilenet_v1")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 28
    assert sum(isinstance(m, DepthwiseSeparable) for m in model.modules()) == 13
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    # Downsampling by stride: 224 -> 7 is five stride-2 convs.
    assert sum(c.stride == (2, 2) for c in convs) == 5


@pytest.mark.parametrize(
    ("name", "stem", "last"), [("mobilenet_v1_025", 8, 256), ("mobilenet_v1_075", 24, 768)]
)
def test_v1_width_multiplier(name, stem, last):
    model = convzoo.create_model(name)
    assert model.stem[0].out_channels == stem and model.num_features == last


def test_v3_activations_and_se_follow_the_tables():
    for name, relu_blocks, se_blocks in (
        ("mobilenet_v3_large", 6, 8),
        ("mobilenet_v3_small", 3, 9),
    ):
        model = convzoo.create_model(name)
        blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
        acts = [type(b.conv_dw[2]) for b in blocks]
        # Tables 1/2: ReLU in the early layers, h-swish from then on.
        assert acts == [nn.ReLU] * relu_blocks + [nn.Hardswish] * (len(blocks) - relu_blocks)
        assert sum(b.se is not None for b in blocks) == se_blocks
        assert all(isinstance(b.se.gate, nn.Hardsigmoid) for b in blocks if b.se is not None)


def _assert_same_outputs(reference: nn.Module, ours: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_parity_with_torchvision(name):
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, name)(weights=None)
    randomize_bn(reference, affine=False)
    _assert_same_outputs(reference, from_torchvision(name, reference))


def test_parity_with_timm_mobilenetv1():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("mobilenetv1_100", pretrained=False)
    randomize_bn(reference, affine=False)
    # timm (like TF-slim) uses ReLU6 where the paper has ReLU; the weights convert either way.
    _assert_same_outputs(reference, from_timm("mobilenet_v1", reference, act_layer=nn.ReLU6))
