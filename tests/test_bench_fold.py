"""fold_batchnorm returns an equivalent eval model with the foldable BatchNorms gone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.bench.fold import find_conv_bn_pairs, fold_batchnorm
from convzoo.registry import get_entry


class Blocks(nn.Module):
    """conv->bn in a forward (foldable), a Sequential (foldable), a conv whose output is also
    used raw (not foldable), a pre-activation BN (no conv before it) and a shared conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.seq = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.conv_raw = nn.Conv2d(8, 8, 1)
        self.bn_raw = nn.BatchNorm2d(8)
        self.pre_bn = nn.BatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 1, bias=False)
        self.bn_shared = nn.BatchNorm2d(8, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.seq(torch.relu(self.bn1(self.conv1(x))))
        raw = self.conv_raw(x)
        x = self.bn_raw(raw) + raw  # raw is read twice: folding bn_raw would change the sum
        x = self.pre_bn(x)
        return self.bn_shared(self.shared(self.shared(x)))


def test_folds_exactly_the_foldable_pairs_and_keeps_outputs():
    model = randomize_bn(Blocks()).eval()
    x = torch.randn(2, 3, 10, 10)
    assert find_conv_bn_pairs(model, x) == [("conv1", "bn1"), ("seq.0", "seq.1")]
    folded = fold_batchnorm(model, x)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.seq[1], nn.Identity)
    for kept in ("bn_raw", "pre_bn", "bn_shared"):
        assert isinstance(getattr(folded, kept), nn.BatchNorm2d)
    assert isinstance(model.bn1, nn.BatchNorm2d), "the original must be left alone"
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert not folded.training


def test_registered_model_with_batchnorm():
    model = randomize_bn(convzoo.create_model("nin_cifar", batch_norm=True)).eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", convzoo.list_models())
def test_fold_every_registered_model(name):
    entry = get_entry(name)
    model = randomize_bn(convzoo.create_model(name, **entry.tiny.overrides)).eval()
    size = entry.tiny.input_size
    x = torch.randn(2, entry.info.in_channels, size, size)
    folded = fold_batchnorm(model, x)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
