"""HyperNetworks: kernel assembly from blocks, shared generator, parameter budget vs the paper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convzoo
from convzoo.models.hypernet import HyperConv2d, KernelGenerator


def test_kernel_is_tiled_from_generated_blocks():
    torch.manual_seed(0)
    gen = KernelGenerator(z_dim=8, block_size=4, kernel_size=3)
    conv = HyperConv2d(8, 12, gen)  # a 3 x 2 grid of 4x4 blocks
    assert conv.z.shape == (6, 8)
    w = conv.weight()
    assert w.shape == (12, 8, 3, 3)
    blocks = gen(conv.z)
    # Block (row r, column c) is generated from embedding r * 2 + c.
    torch.testing.assert_close(w[4:8, 0:4], blocks[2])
    torch.testing.assert_close(w[8:12, 4:8], blocks[5])
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(conv(x), F.conv2d(x, w, padding=1))
    with pytest.raises(ValueError, match="multiples"):
        HyperConv2d(6, 8, gen)


def test_generator_matches_the_papers_two_layer_formula():
    torch.manual_seed(0)
    gen = KernelGenerator(z_dim=5, block_size=2, kernel_size=3)
    z = torch.randn(1, 5)
    k = gen(z)[0]  # (N_out, N_in, f, f)
    for i in range(2):  # a_i = W_i z + B_i ; K^i = <W_out, a_i> + B_out
        a_i = gen.w_in[i * 5 : (i + 1) * 5] @ z[0] + gen.b_in[i * 5 : (i + 1) * 5]
        k_i = (gen.w_out @ a_i + gen.b_out).view(2, 3, 3)
        torch.testing.assert_close(k[:, i], k_i)


def test_one_generator_is_shared_and_gets_gradients_from_every_layer():
    model = convzoo.create_model(
        "hyper_wrn40_2_cifar", depth=10, block_size=8, base_width=8, z_dim=8
    )
    hyper = [m for m in model.modules() if isinstance(m, HyperConv2d)]
    assert len(hyper) == 6 and all(m.generator is model.generator for m in hyper)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    assert model.generator.w_in.grad.abs().sum() > 0
    assert all(m.z.grad is not None and m.z.grad.abs().sum() > 0 for m in hyper)


@pytest.mark.parametrize(
    ("name", "hyper_m", "plain_m"),
    [("hyper_wrn40_1_cifar", 0.097, 0.563), ("hyper_wrn40_2_cifar", 0.148, 2.236)],
)
def test_parameter_budget_vs_paper(name, hyper_m, plain_m):
    with torch.device("meta"):
        hyper = sum(p.numel() for p in convzoo.create_model(name).parameters())
        plain = sum(p.numel() for p in convzoo.create_model(name, hyper=False).parameters())
    # The plain WRN is the paper's within 0.4%, and the hypernetwork version is a small fraction.
    assert abs(plain / 1e6 - plain_m) / plain_m < 0.004
    assert hyper / plain < 0.18
    # Our excess over the paper's figure is the same with and without the hypernetwork.
    assert abs((hyper / 1e6 - hyper_m) - (plain / 1e6 - plain_m)) < 0.0015
