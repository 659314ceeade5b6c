"""Wide ResNets: the WRN-d-k structure, dropout between the convs, ImageNet MACs, stochastic depth."""

from __future__ import annotations

import pytest
import torch

import convzoo
from convzoo.bench.counts import model_counts
from convzoo.layers.preact import PreActBlock
from convzoo.models.wide_resnet import WideResNetConfig

TINY = {"depth": 16, "widen_factor": 2, "widths": (4, 8, 16)}


def preact_blocks(model: torch.nn.Module) -> list[PreActBlock]:
    return [m for m in model.modules() if isinstance(m, PreActBlock)]


@pytest.mark.parametrize(("name", "n", "k"), [("wrn16_8_cifar", 2, 8), ("wrn28_10_cifar", 4, 10)])
def test_wrn_d_k_structure(name, n, k):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    assert [len(stage) for stage in model.stages] == [n, n, n]
    widths = [stage[0].branches[0][-1].conv.out_channels for stage in model.stages]
    assert widths == [16 * k, 32 * k, 64 * k] and model.num_features == 64 * k
    # Projection shortcuts exactly where the width or stride changes: first block of each stage.
    projections = [isinstance(b.shortcut, torch.nn.Conv2d) for b in preact_blocks(model)]
    assert projections == ([True] + [False] * (n - 1)) * 3


def test_depth_must_be_6n_plus_4():
    with pytest.raises(ValueError, match="6N"):
        WideResNetConfig(depth=27)


def test_dropout_sits_between_the_convs_and_only_trains():
    model = convzoo.create_model("wrn28_10_cifar", block_dropout=0.3, **TINY)
    first, second = preact_blocks(model)[1].branches[0]
    assert isinstance(second.drop, torch.nn.Dropout) and second.drop.p == 0.3
    assert isinstance(first.drop, torch.nn.Identity)
    seen = {}
    # Hooks that return None observe without replacing outputs/inputs.
    second.drop.register_forward_hook(lambda m, a, out: seen.update(drop=out))
    second.conv.register_forward_pre_hook(lambda m, a: seen.update(conv2=a[0]))
    x = torch.randn(4, 3, 16, 16)
    model.train()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert seen["conv2"] is seen["drop"]
    assert not torch.equal(a, b)  # BN in training is deterministic: only dropout differs
    plain = convzoo.create_model("wrn28_10_cifar", **TINY)
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_stochastic_depth_on_wrn():
    model = convzoo.create_model("wrn28_10_cifar", drop_path_rate=0.5, **TINY)
    blocks = preact_blocks(model)
    assert blocks[-1].drop_path.p == pytest.approx(0.5)
    calls = [0]
    for b in blocks:
        b.branches[0][0].conv.register_forward_hook(
            lambda m, a, o: calls.__setitem__(0, calls[0] + 1)
        )
    model.train()
    with torch.no_grad():
        for _ in range(10):
            model(torch.randn(2, 3, 8, 8))
    assert calls[0] < 10 * len(blocks)  # some branches were skipped, not computed and masked
    plain = convzoo.create_model("wrn28_10_cifar", **TINY)
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "gmacs"), [("wide_resnet50_2", 11.40), ("wide_resnet101_2", 22.75)]
)
def test_imagenet_wrn_macs_match_torchvision_published(name, gmacs):
    assert model_counts(name)["macs"] / 1e9 == pytest.approx(gmacs, abs=0.01)
