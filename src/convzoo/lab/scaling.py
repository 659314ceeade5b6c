"""Compound scaling for any family (Tan & Le, "EfficientNet", ICML 2019, arXiv 1905.11946).

``scale_model(name, depth=, width=, resolution=)`` scales a registered model with EfficientNet's
rounding rules; the rules, ``ScaledConfig`` and the Table 3 rows live in
``convzoo.models.compound_scaling`` (registered models must be importable with the zoo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from convzoo.cliutil import option, validate_config
from convzoo.models.compound_scaling import scale_config, scaled_resolution
from convzoo.registry import get_entry, resolve_config

__all__ = ["ScaleConfig", "Scaled", "scale_model"]


@dataclass(frozen=True)
class ScaleConfig:
    """The coefficients of ``convzoo scale`` (multiples of the base's, section 3.1's d, w, r)."""

    depth: float = option(1.0, above=0)  # layers per stage x d, ceil
    width: float = option(1.0, above=0)  # channels x w, multiples of 8
    resolution: float = option(1.0, above=0)  # input size x r, multiple of 32

    def __post_init__(self) -> None:
        validate_config(self)


@dataclass(frozen=True)
class Scaled:
    model: nn.Module
    input_size: int  # base input size * r, see scaled_resolution
    config: Any


def scale_model(
    name: str, depth: float = 1.0, width: float = 1.0, resolution: float = 1.0, **overrides: Any
) -> Scaled:
    """The registered model ``name`` scaled by ``depth``, ``width`` and ``resolution``."""
    config = scale_config(resolve_config(name, **overrides), depth, width)
    model = get_entry(name).builder(config)
    model.model_name = name
    return Scaled(model, scaled_resolution(name, resolution), config)
