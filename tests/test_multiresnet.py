"""Multi-ResNet: the multi-residual block and the paper's parameter bookkeeping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from convzoo.bench.counts import count_params
from convzoo.layers.preact import PreActBlock


def meta_params(name: str, **overrides) -> int:
    with torch.device("meta"):
        return count_params(convzoo.create_model(name, **overrides))


@pytest.mark.parametrize("bottleneck", [True, False])
def test_block_is_identity_plus_sum_of_k_functions(bottleneck):
    block = PreActBlock(8, 8, 1, num_branches=3, bottleneck=bottleneck).eval()
    assert len(block.branches) == 3
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        expected = x + sum(f(x) for f in block.branches)
        torch.testing.assert_close(block(x), expected)
    # The k functions are independent: distinct parameters, distinct outputs.
    ids = {id(p) for f in block.branches for p in f.parameters()}
    assert len(ids) == sum(1 for f in block.branches for _ in f.parameters())


def test_shape_changing_block_shares_its_preactivation():
    block = PreActBlock(8, 16, 2, num_branches=2).eval()
    assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.stride == (2, 2)
    assert isinstance(block.preact.norm, nn.BatchNorm2d)
    # Functions start with the conv (their BN-ReLU is the shared one).
    assert all(isinstance(f[0].norm, nn.Identity) for f in block.branches)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        a = block.preact(x)
        torch.testing.assert_close(block(x), block.shortcut(a) + sum(f(a) for f in block.branches))


def test_bottleneck_function_matches_the_released_lua():
    # masabdi/multi-resnet models/multi-resnet.lua: the stride sits on the first 1x1 conv,
    # convs have no bias, the projection is a strided 1x1 conv.
    block = PreActBlock(64, 128, 2, num_branches=2, bottleneck=True)
    for f in block.branches:
        convs = [m for m in f.modules() if isinstance(m, nn.Conv2d)]
        assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
        assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
        assert [c.out_channels for c in convs] == [32, 32, 128]
        assert all(c.bias is None for c in convs)
    assert block.shortcut.kernel_size == (1, 1) and block.shortcut.bias is None


def test_k1_is_preact_resnet():
    # He et al. 2016 (Identity Mappings), Table: pre-activation ResNet-164 has 1.7M parameters.
    assert round(meta_params("multiresnet200_k5_cifar", depth=164, k=1) / 1e6, 1) == 1.7


def test_wide_rows_scale_with_k():
    # (The 10.2M / 20.4M / 72M rows are checked against the table by the generic test.)
    k2 = convzoo.model_info("multiresnet26_k2_w10_cifar").params
    k4 = convzoo.model_info("multiresnet26_k4_w10_cifar").params
    k1 = meta_params("multiresnet26_k2_w10_cifar", k=1)
    # Every extra residual function adds the same parameters: k=4 is not 154M but 145.1M.
    assert k4 - k2 == 2 * (k2 - k1)
    assert round(k4 / 1e6, 1) == 145.1


def test_depth_must_fit_the_block_type():
    with pytest.raises(ValueError, match="9n\\+2"):
        convzoo.create_model("multiresnet200_k5_cifar", depth=30)
    with pytest.raises(ValueError, match="6n\\+2"):
        convzoo.create_model("multiresnet26_k2_w10_cifar", depth=27)
    with pytest.raises(ValueError, match="k"):
        convzoo.create_model("multiresnet26_k2_w10_cifar", depth=8, k=0)


def test_stochastic_depth_skips_all_k_functions_of_a_dropped_block():
    model = convzoo.create_model(
        "multiresnet26_k2_w10_cifar",
        depth=14,
        k=3,
        widen_factor=1,
        widths=(4, 8, 8),
        drop_path_rate=0.9,
    ).train()
    calls = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda *a: calls.append(1))
    total = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    fewer = 0
    for _ in range(10):
        calls.clear()
        model(torch.randn(2, 3, 8, 8))
        # Each skipped block saves its k x 2 convs, never a part of them.
        saved = total - len(calls)
        assert saved % 6 == 0
        fewer += saved > 0
    assert fewer > 0
