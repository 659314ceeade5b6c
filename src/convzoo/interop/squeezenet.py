"""torchvision SqueezeNet -> convzoo ``squeezenet1_0`` / ``squeezenet1_1``.

torchvision keeps the whole body in one ``features`` Sequential (conv1, ReLU, pool, Fire / pool
...) and conv10 at ``classifier.1``; convzoo splits the body into ``stem`` (conv1, pool) and
``stages`` (a pool opening every stage after the first, then its Fire modules), and each conv is
a ``ConvNormAct`` whose conv sits at index 0. The index map is derived from the registered config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.registry import get_entry


def _feature_paths(name: str) -> list[str]:
    """convzoo module path of every torchvision ``features`` index ("" for the ReLU at 1)."""
    cfg = get_entry(name).config
    paths = ["stem.0.0", "", "stem.1"]
    for i, fires in enumerate(cfg.stages):
        offset = 1 if i else 0
        if i:
            paths.append(f"stages.{i}.0")
        paths += [f"stages.{i}.{j + offset}" for j in range(len(fires))]
    return paths


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    if get_entry(name).config.bypass != "none":
        raise ValueError(f"{name}: torchvision has no SqueezeNet with bypass connections")
    paths = _feature_paths(name)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = re.fullmatch(r"features\.(\d+)\.(?:(squeeze|expand1x1|expand3x3)\.)?(weight|bias)", key)
        if m:
            index, conv, param = m.groups()
            prefix = paths[int(index)]
            new = f"{prefix}.{conv}.0.{param}" if conv else f"{prefix}.{param}"
        elif key.startswith("classifier.1."):
            new = "head.conv." + key.removeprefix("classifier.1.")
        else:
            raise ValueError(f"unexpected torchvision SqueezeNet key {key!r}")
        out[new] = value
    return out
