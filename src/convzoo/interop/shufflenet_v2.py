"""torchvision ShuffleNetV2 -> convzoo ``shufflenet_v2_*``.

torchvision's units are flat Sequentials (conv, BN, ReLU, ...); ours group each conv with its BN
in a ``ConvNormAct``. Indices of parameterised layers map as below; conv1 / stage2-4 / conv5
move into ``stem`` / ``stages`` / ``neck``; ``fc`` becomes ``head.fc``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# torchvision flat index -> our (ConvNormAct index, position in it)
_BRANCH1 = {0: "0.0", 1: "0.1", 2: "1.0", 3: "1.1"}
_BRANCH2 = {0: "0.0", 1: "0.1", 3: "1.0", 4: "1.1", 5: "2.0", 6: "2.1"}


def _rename(key: str) -> str:
    m = re.fullmatch(r"stage(\d)\.(\d+)\.branch([12])\.(\d+)\.(.+)", key)
    if m:
        stage, unit, branch, index, param = m.groups()
        table = _BRANCH1 if branch == "1" else _BRANCH2
        return f"stages.{int(stage) - 2}.{unit}.branch{branch}.{table[int(index)]}.{param}"
    m = re.fullmatch(r"conv1\.(\d)\.(.+)", key)
    if m:
        return f"stem.0.{m[1]}.{m[2]}"
    m = re.fullmatch(r"conv5\.(\d)\.(.+)", key)
    if m:
        return f"neck.{m[1]}.{m[2]}"
    if key.startswith("fc."):
        return "head." + key
    raise ValueError(f"unexpected torchvision ShuffleNetV2 key {key!r}")


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    return {_rename(k): v for k, v in state.items()}
