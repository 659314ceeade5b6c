"""The shared stochastic-depth schedule: the three rules the reference codebases use."""

from __future__ import annotations

import pytest
import torch

from convzoo.layers.drop import drop_path_rates


def test_huang_rule_ends_at_the_rate():
    assert drop_path_rates(0.5, 4) == pytest.approx([0.125, 0.25, 0.375, 0.5])


def test_reference_rules():
    # tensorflow/tpu efficientnet_model.py and deepmind nfnets/nfnet.py: rate * index / L.
    assert drop_path_rates(0.2, 4, schedule="(l-1)/L") == pytest.approx([0.0, 0.05, 0.1, 0.15])
    # facebookresearch/ConvNeXt models/convnext.py: torch.linspace(0, rate, L).
    expected = torch.linspace(0, 0.3, 7).tolist()
    assert drop_path_rates(0.3, 7, schedule="(l-1)/(L-1)") == pytest.approx(expected)
    assert drop_path_rates(0.3, 1, schedule="(l-1)/(L-1)") == [0.0]


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="schedule"):
        drop_path_rates(0.1, 3, schedule="l/(L+1)")  # type: ignore[arg-type]
