"""One vocabulary for config fields across families (see ``convzoo.models.base``).

``drop_rate`` is classifier dropout on every classifier, ``block_dropout`` in-block dropout,
``drop_path_rate`` exists on every family with residual branches, ``drop_path_mode`` is typed
``DropPathMode``. Each meaning is checked on a built model, not only the field's name.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from torch import nn

import convzoo
from conftest import tiny_model
from convzoo.layers.drop import DropPath, DropPathMode
from convzoo.registry import get_entry

ALL = convzoo.list_models()
CLASSIFIERS = [n for n in ALL if convzoo.model_info(n).num_classes > 0]
# Families whose blocks add a residual branch to an identity (or projection) path. RevNet and
# i-RevNet are left out: their residual functions are couplings that must stay invertible, and
# neither paper drops them.
RESIDUAL_FAMILIES = {
    "convnext",
    "efficientnet",
    "fbnet",
    "hypernet",
    "multiresnet",
    "nfnet",
    "polynet",
    "resnet",
    "resnext",
    "shufflenet",
    "squeezenext",
    "wide_resnet",
}
RESIDUAL = [
    n
    for n in ALL
    if convzoo.model_info(n).family in RESIDUAL_FAMILIES
    or n.startswith(("mobilenet_v2", "mobilenet_v3"))
    or (n.startswith("squeezenet") and n.endswith("bypass"))
]
# An odd rate that no family uses as a default, so every dropout module with it came from the field.
P = 0.37


def _fields(name: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(get_entry(name).config)}


def _dropouts(model: nn.Module, p: float) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Dropout) and m.p == p]


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_drop_rate_is_classifier_dropout(name):
    assert "drop_rate" in _fields(name), f"{name}: no drop_rate (classifier dropout) field"
    found = _dropouts(tiny_model(name, drop_rate=P), P)
    assert found, f"{name}: drop_rate={P} added no dropout"
    assert all(n.startswith("head.") for n in found), f"{name}: drop_rate reaches {found}"


@pytest.mark.parametrize("name", [n for n in ALL if "block_dropout" in _fields(n)])
def test_block_dropout_is_inside_the_blocks(name):
    value = (P,) * len(get_entry(name).tiny.overrides.get("widths", ()))
    is_tuple = typing.get_origin(
        typing.get_type_hints(type(get_entry(name).config))["block_dropout"]
    )
    found = _dropouts(tiny_model(name, block_dropout=value if is_tuple else P), P)
    assert found and not any(n.startswith("head.") for n in found), found


@pytest.mark.parametrize("name", RESIDUAL)
def test_residual_families_take_drop_path_rate(name):
    assert "drop_path_rate" in _fields(name), f"{name}: residual branches but no drop_path_rate"
    model = tiny_model(name, drop_path_rate=0.3)
    assert any(isinstance(m, DropPath) and m.p > 0 for m in model.modules()), name


@pytest.mark.parametrize("name", [n for n in ALL if "drop_path_mode" in _fields(n)])
def test_drop_path_mode_is_typed(name):
    hints = typing.get_type_hints(type(get_entry(name).config))
    assert hints["drop_path_mode"] == DropPathMode, f"{name}: {hints['drop_path_mode']}"
