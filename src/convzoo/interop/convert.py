"""The converter table and the public conversions ``from_torchvision`` / ``from_timm``.

``CONVERTERS[library][family]`` says how ``library``'s version of a family becomes ours. The table
is written out here, family by family, so renaming a family or a module is an edit a reader (and
the type checker) can follow; nothing is looked up by building a module name from a string.
``SOURCE_NAMES`` gives the library's model name where it differs from ours.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from convzoo.interop import (
    convnext,
    densenet,
    efficientnet,
    mobilenet,
    nfnet,
    resnet,
    shufflenet_v2,
    squeezenet,
    timm_mbconv,
)
from convzoo.interop.core import (
    Converter,
    load_exact,
    randomize_,
    rules,
    shared_overrides,
    verify,
)
from convzoo.registry import create_model, list_models, model_info

Library = Literal["torchvision", "timm"]

_RESNET = Converter(rules(resnet.TORCHVISION_RULES))
_DENSENET = Converter(rules(densenet.TORCHVISION_RULES))
_TIMM_MBCONV = Converter(timm_mbconv.convert_timm)

CONVERTERS: dict[Library, dict[str, Converter]] = {
    "torchvision": {
        "resnet": _RESNET,
        "resnext": _RESNET,
        "wide_resnet": _RESNET,
        "densenet": _DENSENET,
        "efficientnet": Converter(efficientnet.convert_torchvision),
        "mobilenet": Converter(mobilenet.convert_torchvision),
        "convnext": Converter(convnext.convert_torchvision),
        "shufflenet_v2": Converter(shufflenet_v2.convert_torchvision),
        "squeezenet": Converter(squeezenet.convert_torchvision),
    },
    "timm": {
        # timm's ResNet family and DenseNet keep torchvision's module names.
        "resnet": _RESNET,
        "resnext": _RESNET,
        "wide_resnet": _RESNET,
        "densenet": _DENSENET,
        "efficientnet": _TIMM_MBCONV,
        "mobilenet": _TIMM_MBCONV,
        "fbnet": _TIMM_MBCONV,
        "convnext": Converter(convnext.convert_timm),
        "nfnet": Converter(nfnet.convert_timm, nfnet.source_config),
    },
}

# The library's name for one of our models where it is not ours. timm's ``nfnet_f*`` (no
# published weights) convert as well; ``dm_nfnet_f*`` are the reference weights.
SOURCE_NAMES: dict[Library, dict[str, str]] = {
    "torchvision": {},
    "timm": {
        "mobilenet_v1": "mobilenetv1_100",
        "mobilenet_v2": "mobilenetv2_100",
        "mobilenet_v3_large": "mobilenetv3_large_100",
        "mobilenet_v3_small": "mobilenetv3_small_100",
        "fbnet_c": "fbnetc_100",
        **{f"nfnet_f{i}": f"dm_nfnet_f{i}" for i in range(7)},
    },
}


def source_name(name: str, library: Library) -> str | None:
    """``library``'s model name for our ``name``, or ``None`` if it has no such architecture."""
    if model_info(name).family not in CONVERTERS[library]:
        return None
    theirs = SOURCE_NAMES[library].get(name, name)
    if library == "torchvision":
        import torchvision

        return theirs if theirs in torchvision.models.list_models() else None
    try:
        import timm
    except ImportError:  # timm is optional: without it nothing converts from it
        return None
    return theirs if timm.is_model(theirs) else None


def shared_models(library: Library) -> list[str]:
    """Our models whose architecture ``library`` also has (and that convert from it)."""
    return [n for n in list_models() if source_name(n, library) is not None]


def convert(
    name: str, source: nn.Module, library: Library, *, check: bool = True, **overrides: Any
) -> nn.Module:
    """A convzoo ``name`` model holding ``source``'s weights, checked on a probe input."""
    family = model_info(name).family
    converter = CONVERTERS[library].get(family)
    if converter is None:
        have = ", ".join(sorted(CONVERTERS[library]))
        raise ValueError(
            f"{name}: no {library} conversion for family {family!r} (there are: {have})"
        )
    state = converter.rename(source.state_dict(), name)
    config = shared_overrides(name, source, state) | converter.source_config(source, name)
    config |= overrides
    label = f"{library} {type(source).__name__}"
    # Built on meta and filled by assignment: no random init of weights about to be replaced.
    # Copies, so that the new model does not share storage with the source module.
    with torch.device("meta"):
        model = create_model(name, **config)
    load_exact(model, {k: v.detach().clone() for k, v in state.items()}, label, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A tensor outside the state dict (a non-persistent buffer) stayed on meta: build for real.
        model = create_model(name, **config)
        load_exact(model, state, label)
    if check:
        verify(source, model, name, library)
    return model


def from_torchvision(
    name: str, tv_module: nn.Module, *, check: bool = True, **overrides: Any
) -> nn.Module:
    """A convzoo ``name`` model computing what the torchvision module computes.

    The config is read off the module (BatchNorm eps, activation, class count); ``overrides``
    replace config fields on top. The result is checked on one probe input and a disagreement
    raises ``ValueError`` naming the difference and its likely cause; ``check=False`` skips that
    forward pass (for models too large to run twice).
    """
    return convert(name, tv_module, "torchvision", check=check, **overrides)


def from_timm(
    name: str, timm_module: nn.Module, *, check: bool = True, **overrides: Any
) -> nn.Module:
    """A convzoo ``name`` model computing what the timm module computes (see ``from_torchvision``)."""
    return convert(name, timm_module, "timm", check=check, **overrides)


def random_source(library: Library, arch: str, seed: int = 0) -> nn.Module:
    """``library``'s ``arch`` with random weights and BN statistics (``randomize_``), eval mode.

    Built on the meta device first, so the library's own (slow) init is skipped.
    """
    with torch.device("meta"):
        if library == "timm":
            import timm

            model = timm.create_model(arch)
        else:
            import torchvision

            model = torchvision.models.get_model(arch)
    return randomize_(model.to_empty(device="cpu"), seed).eval()
