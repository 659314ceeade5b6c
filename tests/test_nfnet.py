"""NFNet / NF-ResNet: the paper's numbers and the normalizer-free mechanisms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo
from convzoo.bench.counts import count_macs, count_params
from convzoo.layers.std_conv import GAMMA, ScaledStdConv2d, same_padding
from convzoo.models.nfnet import F_VARIANTS, NFBlock

NF_MODELS = convzoo.list_models("nf*")
F_MODELS = [f"nfnet_f{i}" for i in range(7)]

# 2102.06171, ImageNet comparison table: params (M) and FLOPs (G multiply-adds, at the test resolution).
PAPER_IMAGENET_TABLE = {
    "nfnet_f0": (71.5, 12.38),
    "nfnet_f1": (132.6, 35.54),
    "nfnet_f2": (193.8, 62.59),
    "nfnet_f3": (254.9, 114.76),
    "nfnet_f4": (316.1, 215.24),
    "nfnet_f5": (377.2, 289.76),
    "nfnet_f6": (438.4, 377.28),
}
# Released nfnet_params: (train, test) resolution and dropout.
PAPER_RESOLUTION_DROPOUT = {
    "nfnet_f0": (192, 256, 0.2),
    "nfnet_f1": (224, 320, 0.3),
    "nfnet_f2": (256, 352, 0.4),
    "nfnet_f3": (320, 416, 0.4),
    "nfnet_f4": (384, 512, 0.5),
    "nfnet_f5": (416, 544, 0.5),
    "nfnet_f6": (448, 576, 0.5),
}
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def test_variants_registered():
    assert set(NF_MODELS) == {*F_MODELS, "nf_resnet50"}


# Counting MACs walks every op through Python meta kernels (~1 s per F0-sized network on CPU):
# F0 and F1 run in CI, the deeper ones under -m slow.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n > "nfnet_f1" else n for n in F_MODELS]
)
def test_f_variants_match_paper_params_and_macs(name):
    params_m, macs_g = PAPER_IMAGENET_TABLE[name]
    train, test, drop = PAPER_RESOLUTION_DROPOUT[name]
    k = int(name[-1]) + 1
    with torch.device("meta"):
        model = convzoo.create_model(name)
    cfg = convzoo.registry.get_entry(name).config
    assert cfg.depths == (k, 2 * k, 6 * k, 3 * k)
    assert cfg.widths == (256, 512, 1536, 1536) and cfg.group_width == 128
    v = F_VARIANTS[name]
    assert cfg.drop_rate == drop and (v.train_size, v.test_size) == (train, test)
    assert convzoo.model_info(name).input_size == test
    assert round(count_params(model) / 1e6, 1) == params_m
    # The paper's FLOPs are multiply-adds at the test resolution; ours agree to 0.005G.
    assert abs(count_macs(model, test) / 1e9 - macs_g) < 0.005


def test_nfnet_f0_counts_at_train_resolution():
    with torch.device("meta"):
        model = convzoo.create_model("nfnet_f0")
    assert count_params(model) == 71_489_284
    assert round(count_macs(model, 192) / 1e9, 2) == 6.98


def test_nf_resnet50_counts():
    with torch.device("meta"):
        model = convzoo.create_model("nf_resnet50")
    # ResNet-50 layout: 25.56M (gains, biases and 16 skip gains on top of the conv weights).
    assert count_params(model) == 25_557_048
    assert round(count_macs(model, 224) / 1e9, 1) == 4.1


@pytest.mark.parametrize("name", NF_MODELS)
def test_no_normalization_layer_anywhere(name):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    norms = [n for n, m in model.named_modules() if isinstance(m, _NORMS)]
    assert not norms, f"{name} has normalization layers {norms[:5]}"
    # Every conv of the network body is weight-standardized; only SE's 1x1 convs on pooled
    # vectors are plain.
    plain = [n for n, m in model.named_modules() if type(m) is nn.Conv2d and ".se." not in f".{n}"]
    assert not plain, plain[:5]


def test_scaled_ws_conv_standardizes_each_unit():
    conv = ScaledStdConv2d(6, 4, 3, eps=1e-8)
    with torch.no_grad():
        conv.weight.normal_(3.0, 5.0)
        conv.gain.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]).view(4, 1, 1, 1))
    w = conv.standardized_weight().flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(4), atol=1e-6, rtol=0)
    # sum_j W_hat_ij^2 = gain_i^2: unit-variance input -> unit-variance (times gain^2) output.
    torch.testing.assert_close(w.square().sum(1), torch.tensor([1.0, 4.0, 0.25, 9.0]))
    x = torch.randn(4, 6, 9, 9)
    conv(x).sum().backward()
    assert conv.weight.grad.abs().sum() > 0 and conv.gain.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [8, 9])
def test_same_padding_is_tensorflow_same(size):
    conv = ScaledStdConv2d(3, 4, 3, stride=2, padding="same")
    x = torch.randn(1, 3, size, size)
    out = conv(x)
    assert out.shape[-1] == math.ceil(size / 2)
    # TF SAME puts the odd padding pixel at the bottom/right.
    before, after = same_padding(size, 3, 2)
    assert (before, after) == ((0, 1) if size % 2 == 0 else (1, 1))
    ref = F.conv2d(
        F.pad(x, (before, after, before, after)), conv.standardized_weight(), conv.bias, 2
    )
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("activation", sorted(GAMMA))
def test_gamma_makes_the_activation_unit_variance(activation):
    # Var(act(z)), z ~ N(0, 1), by quadrature on a fine grid.
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    pdf = torch.exp(-z.square() / 2) / math.sqrt(2 * math.pi)
    dz = z[1] - z[0]
    g = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[activation](z)
    mean = (g * pdf).sum() * dz
    var = ((g - mean).square() * pdf).sum() * dz
    assert GAMMA[activation] == pytest.approx(1 / math.sqrt(var), rel=2e-3)


def test_beta_follows_the_expected_variance_rule():
    # Var(h_{i+1}) = Var(h_i) + alpha^2, reset to 1 + alpha^2 after each transition block.
    model = convzoo.create_model(
        "nfnet_f0", **convzoo.registry.get_entry("nfnet_f0").tiny.overrides
    )
    betas = [[b.beta for b in stage] for stage in model.stages]
    a2 = 0.2**2
    expected_var = [[1.0], [1 + a2], [1 + a2], [1 + a2]]  # depths (1, 1, 1, 1)
    for got, var in zip(betas, expected_var, strict=True):
        assert got == pytest.approx([v**-0.5 for v in var])
    model = convzoo.create_model(
        "nfnet_f0",
        depths=(1, 3, 1, 1),
        widths=(16, 16, 32, 32),
        stem_widths=(4, 8),
        stem_strides=(2, 2),
        group_width=8,
        alpha=0.5,
    )
    assert [b.beta for b in model.stages[1]] == pytest.approx([1.25**-0.5, 1.25**-0.5, 1.5**-0.5])


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("nf_resnet50", {"widths": (128, 128, 256, 256), "stem_widths": (64,)}),
        (
            "nfnet_f0",
            {
                "widths": (64, 128, 128, 128),
                "stem_widths": (8, 64),
                "stem_strides": (2, 2),
                "group_width": 32,
                # Average pooling i.i.d. noise divides its variance by 4; the paper's signal
                # propagation plots use random input, so measure with strided-conv shortcuts.
                "shortcut_pool": False,
            },
        ),
    ],
)
def test_activation_variance_at_init_tracks_analytic_beta(name, overrides):
    """Signal propagation at init (2101.08692 section 3): the input of block i has variance
    1 / beta_i^2 on N(0, 1) input, with the residual branches switched on (skip gain 1)."""
    alpha = 0.5
    model = convzoo.create_model(
        name, depths=(2, 3, 2, 1), alpha=alpha, drop_rate=0.0, drop_path_rate=0.0, **overrides
    ).eval()
    blocks = [b for stage in model.stages for b in stage]
    with torch.no_grad():
        for b in blocks:
            b.skip_gain.fill_(1.0)
    measured: list[tuple[float, float]] = []
    for b in blocks:
        b.register_forward_pre_hook(
            lambda mod, args: measured.append((mod.beta, args[0].var(dim=(0, 2, 3)).mean().item()))
        )
    with torch.no_grad():
        model.stages(torch.randn(4, model.stages[0][0].conv1.in_channels, 32, 32))
    # Zero padding at the deepest, smallest maps (4x4) costs a little variance: 15% slack.
    for beta, var in measured:
        assert var * beta**2 == pytest.approx(1.0, abs=0.15), (beta**-2, var)
    # The variance grows within a stage as the analysis says: stage 1 sees 1.5 (end of stage 0),
    # then 1.25 after its transition block, then 1.5.
    stage1 = [v for (_, v) in measured[2:5]]
    assert stage1[0] > stage1[1] < stage1[2]
    assert stage1[2] / stage1[1] == pytest.approx(1.5 / 1.25, rel=0.1)


def test_skip_init_makes_each_block_the_identity_at_init():
    entry = convzoo.registry.get_entry("nfnet_f0")
    model = convzoo.create_model(
        "nfnet_f0", **{**entry.tiny.overrides, "depths": (1, 2, 1, 1)}
    ).eval()
    block = model.stages[1][1]  # not a transition block: out == in
    assert isinstance(block, NFBlock) and block.downsample is None
    assert block.skip_gain.item() == 0.0
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x, rtol=0, atol=0)
        block.skip_gain.fill_(1.0)
        assert not torch.allclose(block(x), x)


def test_squeeze_excite_is_doubled_and_uses_ratio_half():
    model = convzoo.create_model(
        "nfnet_f0", **convzoo.registry.get_entry("nfnet_f0").tiny.overrides
    )
    block = model.stages[2][0]
    assert block.se.fc1.out_channels == block.se.fc1.in_channels // 2
    out = torch.randn(2, block.se.fc1.in_channels, 4, 4)
    with torch.no_grad():
        block.se.fc2.weight.zero_()
        block.se.fc2.bias.zero_()  # gate = sigmoid(0) = 1/2, doubled back to 1
        block.skip_gain.fill_(1.0)
        block.conv3.forward = lambda t: out  # isolate the SE step
        res = block.residual(torch.randn(2, block.conv1.in_channels, 8, 8))
    torch.testing.assert_close(res, out * block.alpha)


def test_batch_mode_stochastic_depth_skips_residual_compute():
    entry = convzoo.registry.get_entry("nfnet_f0")
    model = convzoo.create_model(
        "nfnet_f0", **{**entry.tiny.overrides, "drop_path_rate": 0.9, "drop_path_mode": "batch"}
    ).train()
    calls = []
    for stage in model.stages:
        for b in stage:
            b.conv1.register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(0)
    for _ in range(5):
        model(torch.randn(2, 3, 32, 32))
    assert 0 < len(calls) < 5 * 4  # some residual branches never ran
    model.eval()
    calls.clear()
    model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 4


def test_agc_on_an_nfnet_leaves_the_classifier_alone():
    from convzoo.train.agc import adaptive_grad_clip_

    model = convzoo.create_model(
        "nfnet_f0", **convzoo.registry.get_entry("nfnet_f0").tiny.overrides
    )
    (model(torch.randn(2, 3, 32, 32)) * 1e4).sum().backward()
    head_grad = model.head.fc.weight.grad.clone()
    clipped = adaptive_grad_clip_(model, clipping=1e-3)
    assert clipped > 0
    torch.testing.assert_close(model.head.fc.weight.grad, head_grad, rtol=0, atol=0)
