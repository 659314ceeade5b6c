"""torchvision and timm ConvNeXt -> convzoo ConvNeXt.

torchvision keeps everything in one ``features`` Sequential: ``features.0`` is the stem,
odd indices 1, 3, 5, 7 the stages' blocks, even indices 2, 4, 6 the downsampling layers that open
stages 1..3. A block's ``block`` Sequential is (dwconv, permute, LayerNorm, Linear, GELU, Linear,
permute); its ``layer_scale`` has shape (C, 1, 1) where ours is (C,). The head is
``classifier`` = (LayerNorm2d, Flatten, Linear) after the pool; ours pools first and normalizes
the pooled vector with ``nn.LayerNorm``, the same arithmetic.

timm's layout is ours but for names: a block's ``conv_dw``, ``mlp.fc1``/``mlp.fc2`` and ``gamma``
are our ``dwconv``, ``fc1``/``fc2`` and ``layer_scale``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.interop.core import rules

_BLOCK_PARTS = {"0": "dwconv", "2": "norm", "3": "fc1", "5": "fc2"}


def _rename(key: str) -> str:
    if m := re.match(r"^features\.0\.([01])\.(.+)$", key):
        return f"stem.{m.group(1)}.{m.group(2)}"
    if m := re.match(r"^features\.(\d+)\.(\d+)\.(.+)$", key):
        index, sub, rest = int(m.group(1)), m.group(2), m.group(3)
        if index % 2 == 0:  # downsampling layer opening stage index // 2
            return f"stages.{index // 2}.downsample.{sub}.{rest}"
        stage = (index - 1) // 2
        if rest == "layer_scale":
            return f"stages.{stage}.blocks.{sub}.layer_scale"
        if bm := re.match(r"^block\.(\d+)\.(.+)$", rest):
            return f"stages.{stage}.blocks.{sub}.{_BLOCK_PARTS[bm.group(1)]}.{bm.group(2)}"
    if m := re.match(r"^classifier\.0\.(.+)$", key):
        return f"head.norm.{m.group(1)}"
    if m := re.match(r"^classifier\.2\.(.+)$", key):
        return f"head.fc.{m.group(1)}"
    raise KeyError(f"unrecognised torchvision ConvNeXt key {key!r}")


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = _rename(key)
        out[new] = value.flatten() if new.endswith(".layer_scale") else value  # (C,1,1) -> (C,)
    return out


convert_timm = rules(
    [
        (r"\.conv_dw\.", ".dwconv."),
        (r"\.mlp\.(fc[12])\.", r".\1."),
        (r"\.gamma$", ".layer_scale"),
    ]
)
