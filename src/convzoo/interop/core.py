"""Moving weights between another library's module and a convzoo model.

A family describes its mapping in ``convzoo/interop/<family>.py`` as ``TORCHVISION_RULES`` and/or
``TIMM_RULES``: ordered ``(regex, replacement)`` pairs applied with ``re.sub`` to every source
key. A replacement of ``""`` for a whole key drops that key (buffers we do not keep). A family
whose tensors need more than renaming (a split, a reshape) defines ``convert_torchvision(state)``
or ``convert_timm(state)`` returning the renamed state dict instead.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.registry import create_model, model_info

Rules = Sequence[tuple[str, str]]


def rename_keys(state: Mapping[str, Tensor], rules: Rules) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in rules:
            new = re.sub(pattern, repl, new)
        if new:
            out[new] = value
    return out


def load_exact(
    model: nn.Module, state: Mapping[str, Tensor], source: str, assign: bool = False
) -> None:
    """Load ``state`` into ``model``, requiring the same keys and shapes; errors list them."""
    target = model.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    mismatched = [
        f"{k}: {tuple(state[k].shape)} -> {tuple(target[k].shape)}"
        for k in target
        if k in state and state[k].shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"cannot load {source} into {getattr(model, 'model_name', type(model).__name__)}: "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, "
            f"shape mismatches {mismatched[:8]}"
        )
    with torch.no_grad():
        model.load_state_dict(dict(state), strict=True, assign=assign)


def _family_module(name: str) -> ModuleType:
    family = model_info(name).family
    try:
        return importlib.import_module(f"convzoo.interop.{family}")
    except ModuleNotFoundError as err:
        raise ValueError(f"{name}: no weight conversion is defined for family {family!r}") from err


def _convert(name: str, source_module: nn.Module, library: str, **overrides: Any) -> nn.Module:
    module = _family_module(name)
    convert: Callable[..., dict[str, Tensor]] | None = getattr(module, f"convert_{library}", None)
    rules: Rules | None = getattr(module, f"{library.upper()}_RULES", None)
    if convert is None and rules is None:
        raise ValueError(f"{name}: family {model_info(name).family!r} has no {library} conversion")
    state = source_module.state_dict()
    state = convert(state, name) if convert is not None else rename_keys(state, rules or ())
    source = f"{library} {type(source_module).__name__}"
    # Built on meta and filled by assignment: no random init of weights about to be replaced.
    # Copies, so that the new model does not share storage with the source module.
    with torch.device("meta"):
        model = create_model(name, **overrides)
    load_exact(model, {k: v.detach().clone() for k, v in state.items()}, source, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A tensor outside the state dict (a non-persistent buffer) stayed on meta: build for real.
        model = create_model(name, **overrides)
        load_exact(model, state, source)
    return model


def from_torchvision(name: str, tv_module: nn.Module, **overrides: Any) -> nn.Module:
    """A convzoo ``name`` model holding the weights (and buffers) of a torchvision module."""
    return _convert(name, tv_module, "torchvision", **overrides)


def from_timm(name: str, timm_module: nn.Module, **overrides: Any) -> nn.Module:
    """A convzoo ``name`` model holding the weights (and buffers) of a timm module."""
    return _convert(name, timm_module, "timm", **overrides)
