"""Channel shuffle: a permutation, invertible, and the reshape-transpose-flatten of the paper."""

from __future__ import annotations

import pytest
import torch

from convzoo.layers.shuffle import ChannelShuffle, channel_shuffle


def _labelled(channels: int, batch: int = 2, size: int = 3) -> torch.Tensor:
    # Channel c holds the value c everywhere (+ noise per sample, so that batch entries differ).
    x = torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1)
    return x.expand(batch, channels, size, size) + torch.rand(batch, 1, size, size) * 1e-3


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (12, 4), (24, 8), (6, 2), (7, 7)])
def test_is_a_permutation_of_the_channels(channels, groups):
    x = _labelled(channels)
    y = channel_shuffle(x, groups)
    order = y[0, :, 0, 0].round().long()
    assert sorted(order.tolist()) == list(range(channels))
    torch.testing.assert_close(y, x[:, order], rtol=0, atol=0)


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (24, 8), (116, 2), (10, 5)])
def test_shuffle_with_g_then_with_c_over_g_restores_the_input(channels, groups):
    x = torch.randn(2, channels, 4, 5)
    y = channel_shuffle(x, groups)
    assert not torch.equal(y, x)
    torch.testing.assert_close(channel_shuffle(y, channels // groups), x, rtol=0, atol=0)


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (24, 4), (16, 2)])
def test_matches_the_reshape_transpose_flatten_definition(channels, groups):
    x = torch.randn(2, channels, 3, 3)
    n = channels // groups
    # Group k, position i (input channel k * n + i) goes to output channel i * g + k.
    expected = torch.empty_like(x)
    for k in range(groups):
        for i in range(n):
            expected[:, i * groups + k] = x[:, k * n + i]
    torch.testing.assert_close(channel_shuffle(x, groups), expected, rtol=0, atol=0)
    # The same as an unflatten (g, n) -> transpose (n, g) -> flatten.
    by_transpose = x.unflatten(1, (groups, n)).transpose(1, 2).flatten(1, 2)
    torch.testing.assert_close(channel_shuffle(x, groups), by_transpose, rtol=0, atol=0)


def test_module_matches_function_and_handles_channels_last():
    x = torch.randn(2, 12, 5, 5).to(memory_format=torch.channels_last)
    m = ChannelShuffle(3)
    torch.testing.assert_close(m(x), channel_shuffle(x.contiguous(), 3), rtol=0, atol=0)
    assert "groups=3" in repr(m)


def test_one_group_is_the_identity_and_gradients_flow_back_permuted():
    x = torch.randn(1, 6, 2, 2, requires_grad=True)
    assert channel_shuffle(x, 1) is x
    weights = torch.arange(6.0).view(1, 6, 1, 1)
    (channel_shuffle(x, 2) * weights).sum().backward()
    # Output channel i*2 + k came from input k*3 + i, so input c gets the weight of its target.
    targets = [(c % 3) * 2 + c // 3 for c in range(6)]
    torch.testing.assert_close(x.grad[0, :, 0, 0], torch.tensor(targets, dtype=torch.float32))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="divide"):
        channel_shuffle(torch.randn(1, 10, 2, 2), 3)
    with pytest.raises(ValueError, match="B, C, H, W"):
        channel_shuffle(torch.randn(10, 2, 2), 2)
    with pytest.raises(ValueError, match="groups"):
        ChannelShuffle(0)
