"""timm's "EfficientNet builder" layout -> convzoo (EfficientNet, MobileNet v1-v3, FBNet).

timm builds all of these from one block library: ``conv_stem``/``bn1``, ``blocks.<stage>.<i>``,
then ``conv_head``/``bn2`` and ``classifier``. A block is a depthwise-separable conv
(``conv_dw, bn1, [se], conv_pw, bn2``: its ``conv_pw`` is the projection), an inverted residual
(``conv_pw, bn1, conv_dw, bn2, [se], conv_pwl, bn3``) or, closing MobileNet v3, a plain
``ConvBnAct`` (``conv, bn1``: our ``neck``). timm's stage split differs from ours for some
families and leaves weightless blocks (FBNet's "skip") out, so blocks are matched in forward order
against our blocks that have weights, built on the meta device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.interop.mobilenet import zoo_blocks

_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)")
_SE = {"se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2"}
_INVERTED = {"conv_pw": "conv_pw.0", "bn1": "conv_pw.1", "conv_dw": "conv_dw.0", "bn2": "conv_dw.1"}
_INVERTED |= {"conv_pwl": "conv_pwl.0", "bn3": "conv_pwl.1", **_SE}
_CONV_BN_ACT = {"conv": "neck.0", "bn1": "neck.1"}


def _separable(projection: str) -> dict[str, str]:
    """Part names of a timm depthwise-separable block whose pointwise conv is our ``projection``."""
    return {
        "conv_dw": "conv_dw.0",
        "bn1": "conv_dw.1",
        **_SE,
        "conv_pw": f"{projection}.0",
        "bn2": f"{projection}.1",
    }


def convert_timm(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    ours = [(p, b) for p, b in zoo_blocks(name) if any(True for _ in b.parameters())]
    theirs: dict[tuple[int, int], dict[str, Tensor]] = {}
    out: dict[str, Tensor] = {}
    hidden_head = any(re.fullmatch(r"blocks\.\d+\.\d+\.conv\.weight", k) for k in state)
    for key, value in state.items():
        if m := _BLOCK.fullmatch(key):
            theirs.setdefault((int(m[1]), int(m[2])), {})[m[3]] = value
        else:
            out[_outer(key, name, hidden_head)] = _linear(key, value, hidden_head)
    blocks = sorted(theirs)
    convs = [b for b in blocks if "conv.weight" in theirs[b]]  # MobileNet v3's closing ConvBnAct
    blocks = [b for b in blocks if b not in convs]
    if len(blocks) != len(ours):
        raise ValueError(
            f"{name}: the timm model has {len(blocks)} blocks with weights, convzoo's "
            f"{len(ours)}: the source is a different variant"
        )
    for (prefix, block), index in zip(ours, blocks, strict=True):
        parts = theirs[index]
        if "conv_pwl.weight" in parts:
            table = _INVERTED
        else:
            table = _separable("conv_pwl" if getattr(block, "conv_pwl", None) else "conv_pw")
        for key, value in parts.items():
            out[f"{prefix}.{_part(key, table, name)}"] = value
    for index in convs:
        for key, value in theirs[index].items():
            out[_part(key, _CONV_BN_ACT, name)] = value
    return out


def _part(key: str, table: Mapping[str, str], name: str) -> str:
    for src, dst in table.items():
        if key.startswith(src + "."):
            return dst + key[len(src) :]
    raise ValueError(f"{name}: no rule for timm block key {key!r}")


def _outer(key: str, name: str, hidden_head: bool) -> str:
    """Stem and head keys. With a hidden head (MobileNet v3) timm's ``conv_head`` is the 1x1 conv
    applied after pooling, our ``head.fc_hidden``; otherwise the last conv before pooling."""
    outer = {"conv_stem": "stem.0", "bn1": "stem.1", "classifier": "head.fc"}
    outer |= {"conv_head": "head.fc_hidden"} if hidden_head else {"conv_head": "neck.0"}
    outer |= {"bn2": "neck.1"}
    return _part(key, outer, name)


def _linear(key: str, value: Tensor, hidden_head: bool) -> Tensor:
    # A 1x1 conv on a pooled 1x1 map is our nn.Linear: (out, in, 1, 1) -> (out, in).
    if hidden_head and key == "conv_head.weight":
        return value.flatten(1)
    return value
