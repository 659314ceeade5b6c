"""DenseNet: channel arithmetic, ImageNet MACs, and the memory-efficient (checkpointed) path."""

from __future__ import annotations

import pytest
import torch

import convzoo
from convzoo.bench.counts import model_counts
from convzoo.models.densenet import DenseLayer


@pytest.mark.parametrize(
    ("name", "features"),
    [
        # 16 + 3 * 12 * 12, no compression
        ("densenet40_k12_cifar", 448),
        # 24 + 16 * 12 = 216 -> 108 + 192 = 300 -> 150 + 192 = 342
        ("densenet_bc100_k12_cifar", 342),
        ("densenet121", 1024),
        ("densenet161", 2208),
    ],
)
def test_feature_widths(name, features):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    assert model.num_features == features


# torchvision's published figures for its DenseNets (its "GFLOPS" column counts multiply-adds).
@pytest.mark.parametrize(
    ("name", "gmacs"),
    [("densenet121", 2.83), ("densenet169", 3.36), ("densenet201", 4.29), ("densenet161", 7.73)],
)
def test_imagenet_macs_match_published(name, gmacs):
    assert model_counts(name)["macs"] / 1e9 == pytest.approx(gmacs, abs=0.01)


def _pair(name: str, **overrides):
    plain = convzoo.create_model(name, **overrides)
    efficient = convzoo.create_model(name, memory_efficient=True, **overrides)
    efficient.load_state_dict(plain.state_dict())
    return plain, efficient


def _step(model, x, seed=0):
    torch.manual_seed(seed)
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out.detach()


@pytest.mark.parametrize("name", ["densenet_bc100_k12_cifar", "densenet40_k12_cifar"])
@pytest.mark.parametrize("block_dropout", [0.0, 0.2])
def test_memory_efficient_gives_identical_outputs_gradients_and_statistics(name, block_dropout):
    overrides = {"growth_rate": 4, "block_config": (4, 4, 4), "num_init_features": 8}
    plain, efficient = _pair(name, block_dropout=block_dropout, **overrides)
    plain.train()
    efficient.train()
    recomputed = [0]
    for m in efficient.modules():
        if isinstance(m, DenseLayer):
            m.norm1.register_forward_hook(lambda *a: recomputed.__setitem__(0, recomputed[0] + 1))
    x = torch.randn(4, 3, 16, 16)
    for step in range(2):
        a = _step(plain, x, seed=step)
        recomputed[0] = 0
        b = _step(efficient, x, seed=step)
        assert recomputed[0] == 2 * 12  # each of the 12 layers ran its bottleneck twice
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        for (n, p), q in zip(plain.named_parameters(), efficient.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=n)
        for (n, s), t in zip(plain.named_buffers(), efficient.buffers()):
            torch.testing.assert_close(s, t, rtol=0, atol=0, msg=n)


def test_memory_efficient_stores_less():
    # Bytes saved for backward: the concatenations of a deep block dominate the default path.
    overrides = {"growth_rate": 8, "block_config": (16, 1, 1), "num_init_features": 16}
    saved = {}
    for mode, model in zip(("plain", "efficient"), _pair("densenet_bc100_k12_cifar", **overrides)):
        model.train()
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.randn(8, 3, 16, 16))
        saved[mode] = total[0]
    assert saved["efficient"] < 0.6 * saved["plain"]


def test_no_checkpoint_without_grad():
    _, efficient = _pair("densenet_bc100_k12_cifar", growth_rate=4, block_config=(2, 2, 2))
    calls = [0]
    layer = next(m for m in efficient.modules() if isinstance(m, DenseLayer))
    layer.norm1.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    with torch.no_grad():
        efficient(torch.randn(2, 3, 16, 16))
    assert calls[0] == 1
