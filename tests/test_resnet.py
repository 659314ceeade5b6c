"""ResNet / ResNeXt: paper MACs, option A shortcuts, and stochastic depth's mechanism."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import convzoo
from conftest import tiny_input, tiny_model
from convzoo.bench.counts import count_params, model_counts
from convzoo.layers.drop import drop_path_rates
from convzoo.models.resnet import PadShortcut, ResNetConfig, residual_blocks

# --- MACs (multiply-adds) at 224x224, counted on the meta device -------------------------------

# torchvision layout (stride on the 3x3): the figures torchvision publishes for these models
# (its "GFLOPS" column counts multiply-adds) and, for ResNet-50 / ResNeXt-50, ResNeXt's Table 1.
PUBLISHED_GMACS = {
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnet101": 7.80,
    "resnet152": 11.51,
    "resnext50_32x4d": 4.23,
    "resnext101_32x8d": 16.41,
    "resnext101_64x4d": 15.46,
}


@functools.cache
def gmacs(name: str, **overrides) -> float:
    return model_counts(name, **overrides)["macs"] / 1e9


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_imagenet_macs_match_published(name):
    macs = gmacs(name)
    assert macs == pytest.approx(PUBLISHED_GMACS[name], abs=0.01)
    info = convzoo.model_info(name)
    if info.paper_macs_g is not None:
        assert abs(macs - info.paper_macs_g) <= (info.paper_macs_tol_g or 0.05) + 1e-9


def test_resnet50_macs_match_resnext_table1():
    # Xie et al. Table 1: ResNet-50 4.1 GFLOPs (multiply-adds), ResNeXt-50 32x4d 4.2.
    assert gmacs("resnet50") == pytest.approx(4.1, abs=0.05)
    assert gmacs("resnext50_32x4d") == pytest.approx(4.2, abs=0.05)


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_he_et_al_bottleneck_layout_matches_their_table1(name):
    # He et al. put the stride on the first 1x1 conv: Table 1 gives 3.8 / 7.6 / 11.3 x 10^9.
    # The paper rounds loosely (3.86 is printed 3.8), hence 0.1.
    macs = gmacs(name, stride_in_1x1=True)
    assert macs == pytest.approx(convzoo.model_info(name).paper_macs_g, abs=0.1)
    assert macs < gmacs(name) - 0.2  # the strided 3x3 then runs at the lower resolution


def test_basic_resnets_match_he_et_al_table1():
    for name, paper in (("resnet18", 1.8), ("resnet34", 3.6)):
        assert gmacs(name) == pytest.approx(paper, abs=0.1)


# --- CIFAR ResNets: option A ---------------------------------------------------------------------


def test_cifar_resnets_are_6n_plus_2_layers_with_parameter_free_shortcuts():
    for depth in (20, 56, 110):
        with torch.device("meta"):
            model = convzoo.create_model(f"resnet{depth}_cifar")
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        assert len(convs) + len(linears) == depth
        shortcuts = [b.downsample for b in residual_blocks(model) if b.downsample is not None]
        assert len(shortcuts) == 2 and all(isinstance(s, PadShortcut) for s in shortcuts)


def test_option_a_shortcut_is_identity_plus_zero_channels():
    x = torch.randn(2, 4, 7, 7)
    y = PadShortcut(4, 8, 2)(x)
    assert y.shape == (2, 8, 4, 4)  # same size as a padded stride-2 3x3 conv gives
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert not y[:, 4:].any()


def test_option_b_costs_what_projection_shortcuts_cost():
    # 16->32 and 32->64 projections (1x1 conv + BN) are the only difference between A and B.
    a = count_params(convzoo.create_model("resnet20_cifar"))
    b = count_params(convzoo.create_model("resnet20_cifar", shortcut="conv"))
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_config_validation():
    with pytest.raises(ValueError, match="drop_path_mode"):
        convzoo.create_model("resnet20_cifar", drop_path_mode="layer")
    with pytest.raises(ValueError, match="bottleneck"):
        ResNetConfig(block="basic", cardinality=4)
    with pytest.raises(ValueError, match="must match"):
        ResNetConfig(layers=(1, 1), widths=(8, 16, 32))


def test_resnext_group_width_follows_the_template():
    # ResNeXt-29 8x64d: the 3x3 conv of stage s has 8 groups of 64 * 2^s channels (Table 7 text).
    with torch.device("meta"):
        model = convzoo.create_model("resnext29_8x64d_cifar")
    for s, stage in enumerate(model.stages):
        conv = stage[0].conv2[0]
        assert conv.groups == 8 and conv.out_channels == 8 * 64 * 2**s


# --- stochastic depth ----------------------------------------------------------------------------

SD_TINY = {"layers": (3, 3, 3), "widths": (4, 8, 16), "stem_width": 4}


def _sd_model(mode: str = "batch", rate: float = 0.5, name: str = "resnet110_cifar"):
    # He et al.'s init: with the zero-initialized last BN every branch would output zeros.
    return convzoo.create_model(
        name, drop_path_rate=rate, drop_path_mode=mode, zero_init_last=False, **SD_TINY
    )


def _count_branch_calls(blocks):
    counts = [0] * len(blocks)

    def hook(i):
        def fn(module, args, output):
            counts[i] += 1

        return fn

    handles = [b.conv1.register_forward_hook(hook(i)) for i, b in enumerate(blocks)]
    return counts, handles


def test_rates_follow_linear_decay():
    model = _sd_model()
    blocks = residual_blocks(model)
    rates = [b.drop_path.p for b in blocks]
    assert rates == pytest.approx(drop_path_rates(0.5, len(blocks)))
    # Huang et al.: p_l = 1 - l/L (1 - p_L); the last block survives with p_L = 0.5.
    survival = [1 - r for r in rates]
    assert survival[-1] == pytest.approx(0.5)
    assert survival == pytest.approx([1 - (i + 1) / 9 * 0.5 for i in range(9)])


def test_batch_mode_does_not_execute_dropped_branches():
    model = _sd_model().train()
    blocks = residual_blocks(model)
    decisions: list[list[bool]] = [[] for _ in blocks]
    for i, block in enumerate(blocks):
        draw = block.drop_path.sample_drop

        def spy(i=i, draw=draw):
            dropped = draw()
            decisions[i].append(dropped)
            return dropped

        block.drop_path.sample_drop = spy
    counts, handles = _count_branch_calls(blocks)
    x = torch.randn(4, 3, 8, 8)
    steps = 40
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    for h in handles:
        h.remove()
    for i in range(len(blocks)):
        assert len(decisions[i]) == steps
        # Every kept draw ran the branch once; no dropped draw ran it.
        assert counts[i] == decisions[i].count(False)
    assert sum(map(sum, decisions)) > 0  # something was dropped at all


def test_survival_frequencies_follow_the_schedule():
    # The test above ties execution to the draws; here the draws of the model's blocks are
    # checked against p_l (seeded, 4 standard errors).
    model = _sd_model().train()
    blocks = residual_blocks(model)
    draws = 2000
    kept = [sum(not b.drop_path.sample_drop() for _ in range(draws)) / draws for b in blocks]
    for i, block in enumerate(blocks):
        keep = 1 - block.drop_path.p
        sigma = math.sqrt(keep * (1 - keep) / draws)
        assert abs(kept[i] - keep) < 4 * sigma, (i, kept[i], keep)
    assert kept[0] > kept[-1] + 0.3  # 0.94 vs 0.5
    model.eval()
    assert not any(b.drop_path.sample_drop() for b in blocks for _ in range(100))


@pytest.mark.parametrize("mode", ["batch", "sample"])
@pytest.mark.parametrize("name", ["resnet110_cifar", "resnet50", "resnext29_8x64d_cifar"])
def test_eval_equals_the_deterministic_network(name, mode):
    # He et al.'s init: with the zero-initialized last BN every branch would output zeros.
    sd = tiny_model(name, drop_path_rate=0.5, drop_path_mode=mode, zero_init_last=False)
    plain = tiny_model(name)
    plain.load_state_dict(sd.state_dict())
    sd.eval()
    plain.eval()
    x = tiny_input(name, batch=3)
    with torch.no_grad():
        torch.testing.assert_close(sd(x), plain(x), rtol=0, atol=0)
    # In training the stochastic network differs (otherwise nothing was dropped).
    sd.train()
    plain.train()
    torch.manual_seed(0)
    with torch.no_grad():
        outs = [sd(x) for _ in range(5)]
    assert any(not torch.equal(o, plain(x)) for o in outs)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_training_expectation_matches_eval(mode):
    # Kept branches are scaled by 1/(1-p): averaged over draws, a block's pre-activation output
    # equals the eval output. Checked on one block with BN frozen and no final ReLU.
    model = _sd_model(mode).eval()
    block = residual_blocks(model)[-1]  # p = 0.5
    block.act = torch.nn.Identity()
    x = torch.randn(64, 16, 2, 2)
    with torch.no_grad():
        expected = block(x)
        block.drop_path.train()
        draws = 400
        mean = sum(block(x) for _ in range(draws)) / draws
    branch = expected - x
    # Standard error of the mean of branch * Bernoulli(0.5) / 0.5 is |branch| / sqrt(draws).
    tol = 5 * branch.abs().max().item() / math.sqrt(draws)
    assert (mean - expected).abs().max().item() < tol


def test_sample_mode_drops_per_sample():
    model = _sd_model("sample").eval()
    block = residual_blocks(model)[-1]
    block.drop_path.train()
    x = torch.randn(1, 16, 2, 2).expand(512, -1, -1, -1)  # identical samples
    with torch.no_grad():
        out = block(x)
        kept_out = block.act(x + 2 * block.branch(x[:1]))  # kept: branch scaled by 1/(1-0.5)
        dropped_out = block.act(x[:1])
    dropped = (out == dropped_out).flatten(1).all(1)
    kept = torch.isclose(out, kept_out).flatten(1).all(1)
    assert bool((dropped ^ kept).all())  # every sample is one or the other
    frac = dropped.float().mean().item()
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 512)
