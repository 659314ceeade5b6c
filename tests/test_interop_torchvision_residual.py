"""Parity with torchvision: our ResNet / ResNeXt / WRN / DenseNet load torchvision's weights and
compute the same function (float32, eval mode, random weights since nothing downloads)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from convzoo.interop import from_torchvision

PARITY = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
]


@pytest.fixture
def skip_init(monkeypatch):
    """Make ``torch.nn.init`` a no-op: weights are filled (torchvision) or loaded (ours) anyway.

    Initializing ~600M parameters twice per model (module defaults, then the family's init) would
    dominate this file's time; loading is strict, so no uninitialized tensor can survive.
    """
    for fn in (
        "kaiming_normal_",
        "kaiming_uniform_",
        "normal_",
        "uniform_",
        "constant_",
        "zeros_",
        "ones_",
        "trunc_normal_",
    ):
        monkeypatch.setattr(torch.nn.init, fn, lambda tensor, *args, **kwargs: tensor)


def _random_torchvision(name: str) -> torch.nn.Module:
    """A torchvision model with random weights and random BN statistics.

    Weights come from one pool of normal samples (a random slice per tensor, scaled by
    1/sqrt(fan_in)), which is much cheaper than sampling each. BN statistics are random because
    fresh BN layers are the identity in eval mode and would hide a mis-mapped norm.
    """
    model = getattr(torchvision.models, name)(weights=None)
    pool = torch.randn(1 << 20)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                flat = m.weight.view(-1)
                scale = m.weight[0].numel() ** -0.5  # 1 / sqrt(fan_in)
                for start in range(0, flat.numel(), pool.numel()):
                    n = min(pool.numel(), flat.numel() - start)
                    offset = int(torch.randint(0, pool.numel() - n + 1, ()))
                    flat[start : start + n].copy_(pool[offset : offset + n]).mul_(scale)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("name", PARITY)
def test_outputs_match_torchvision(name, skip_init):
    tv = _random_torchvision(name).eval()
    ours = from_torchvision(name, tv).eval()
    # Small input keeps the 14 models fast; every stage still has at least 2x2 pixels.
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = tv(x)
        got = ours(x)
    assert got.shape == expected.shape == (2, 1000)
    assert (got - expected).abs().max().item() < 1e-4


def test_mismatched_architecture_is_rejected_with_key_names():
    tv = torchvision.models.resnet18(weights=None)
    with pytest.raises(ValueError, match=r"missing \['stages\.0\.2\."):
        from_torchvision("resnet34", tv)


def test_converted_model_owns_trainable_copies_of_the_weights():
    tv = torchvision.models.resnet18()
    model = from_torchvision("resnet18", tv)
    ours, theirs = dict(model.named_parameters()), dict(tv.named_parameters())
    assert all(p.requires_grad and not p.is_meta for p in ours.values())
    with torch.no_grad():
        theirs["conv1.weight"].add_(1.0)
    # Changing the source afterwards must not change the converted model.
    assert not torch.equal(ours["stem.0.0.weight"], theirs["conv1.weight"])
