"""Adaptive gradient clipping: exactly the units above lambda are clipped, the head is left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.train.agc import adaptive_grad_clip_, unitwise_norm


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.conv = nn.Conv2d(2, 3, 3)
        self.head = nn.Linear(4, 2)


def _set(param: nn.Parameter, weight: torch.Tensor, grad: torch.Tensor) -> None:
    with torch.no_grad():
        param.copy_(weight)
    param.grad = grad.clone()


def test_clips_exactly_the_units_above_the_threshold():
    net = Net()
    lam = 0.1
    # Rows of body.weight: weight norms 1, 2, 0 (-> eps), 5; gradient norms chosen around
    # lam * max(||W||, eps): 0.05 (keep), 0.5 (clip), 1e-3 (clip: > 0.1 * 1e-3), 0.5 (keep).
    w = torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 0], [3.0, 4.0, 0]])
    g = torch.tensor([[0.05, 0, 0], [0, 0, 0.5], [1e-3, 0, 0], [0, 0.3, 0.4]])
    _set(net.body.weight, w, g)
    # The bias is one unit: norm 1, gradient norm 1 -> clipped to 0.1.
    _set(net.body.bias, torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0]))
    net.conv.weight.grad = None  # parameters without gradients are skipped
    net.conv.bias.grad = None
    head_grad = torch.full_like(net.head.weight, 100.0)
    net.head.weight.grad = head_grad.clone()

    clipped = adaptive_grad_clip_(net, clipping=lam, eps=1e-3)

    assert clipped == 3  # body rows 1 and 2, and the bias
    got = net.body.weight.grad
    torch.testing.assert_close(got[0], g[0], rtol=0, atol=0)
    torch.testing.assert_close(got[3], g[3], rtol=0, atol=0)
    # Clipped units keep their direction and get norm lam * max(||W_i||, eps) exactly.
    torch.testing.assert_close(got[1], g[1] / 0.5 * (lam * 2.0))
    torch.testing.assert_close(got[2], g[2] / 1e-3 * (lam * 1e-3))
    torch.testing.assert_close(net.body.bias.grad, torch.tensor([0, 0.1, 0, 0]))
    # The classifier is excluded by default, however large its gradient.
    torch.testing.assert_close(net.head.weight.grad, head_grad, rtol=0, atol=0)
    assert net.head.bias.grad is None


def test_plain_module_without_head_clips_everything_and_exclude_is_honoured():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    for p in seq.parameters():
        p.grad = torch.full_like(p, 10.0)
    # Every unit is far above 0.01 * ||W||: 4 + 1 + 2 + 1 units.
    assert adaptive_grad_clip_(seq) == 8
    for p in seq.parameters():
        p.grad = torch.full_like(p, 10.0)
    n = adaptive_grad_clip_(seq, exclude=lambda name, p: name.startswith("1."))
    assert n == 5
    torch.testing.assert_close(seq[1].weight.grad, torch.full_like(seq[1].weight, 10.0))


def test_a_given_exclude_replaces_the_default_head_rule():
    net = Net()
    for p in net.parameters():
        p.grad = torch.full_like(p, 10.0)
    n = adaptive_grad_clip_(net, exclude=lambda name, p: False)
    assert n == 4 + 1 + 3 + 1 + 2 + 1  # body rows, body bias, conv filters, conv bias, head


def test_matches_a_per_unit_reference_on_conv_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 3)
    conv.weight.grad = torch.randn_like(conv.weight) * torch.logspace(-4, -1, 16).view(16, 1, 1, 1)
    grad = conv.weight.grad.clone()
    lam, eps = 0.01, 1e-3
    expected, count = grad.clone(), 0
    for i in range(16):  # the slow, obvious version
        max_norm = lam * max(conv.weight[i].norm().item(), eps)
        if grad[i].norm() > max_norm:
            expected[i] = grad[i] * (max_norm / grad[i].norm())
            count += 1
    assert 0 < count < 16
    assert (
        adaptive_grad_clip_(conv, clipping=lam, eps=eps, exclude=lambda n, p: n == "bias") == count
    )
    torch.testing.assert_close(conv.weight.grad, expected)


def test_unitwise_norm_shapes():
    w = torch.randn(5, 3, 2, 2)
    torch.testing.assert_close(unitwise_norm(w).flatten(), w.flatten(1).norm(dim=1))
    gain = torch.randn(5, 1, 1, 1)  # a per-channel gain is one unit, as a vector
    assert unitwise_norm(gain).ndim == 0
    assert unitwise_norm(torch.tensor(3.0)).item() == 3.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="clipping"):
        adaptive_grad_clip_(Net(), clipping=0.0)
    with pytest.raises(ValueError, match="eps"):
        adaptive_grad_clip_(Net(), eps=-1.0)


def test_default_exclusion_sees_through_wrappers():
    class Wrapper(nn.Module):  # the shape of DistributedDataParallel: the model is .module
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

    wrapped = Wrapper(Net())
    for p in wrapped.parameters():
        p.grad = torch.full_like(p, 10.0)
    assert adaptive_grad_clip_(wrapped) == 4 + 1 + 3 + 1
    torch.testing.assert_close(
        wrapped.module.head.weight.grad, torch.full_like(wrapped.module.head.weight, 10.0)
    )
