"""Weight conversion for FBNet from timm (``fbnetc_100`` -> ``fbnet_c``).

timm leaves FBNet-C's one "skip" layer out of its block list (it is an identity with no weights),
so timm's block ``b`` of a stage is our ``b``-th block that has weights in that stage; the
conversion counts them on our model built on the meta device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.interop.core import rename_keys
from convzoo.interop.mobilenet import zoo_rows

_PARTS = {
    "conv_pw": "conv_pw.0",
    "bn1": "conv_pw.1",
    "conv_dw": "conv_dw.0",
    "bn2": "conv_dw.1",
    "conv_pwl": "conv_pwl.0",
    "bn3": "conv_pwl.1",
}
_OUTER: tuple[tuple[str, str], ...] = (
    (r"^conv_stem\.", "stem.0."),
    (r"^bn1\.", "stem.1."),
    (r"^conv_head\.", "neck.0."),
    (r"^bn2\.", "neck.1."),
    (r"^classifier\.", "head.fc."),
)
_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)")


def convert_timm(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    # timm's stage s is our table row s (a spec stage); its blocks that have weights, in order.
    weighted = [
        [prefix for prefix, block in row if any(True for _ in block.parameters())]
        for row in zoo_rows(name)
    ]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _BLOCK.fullmatch(key)
        if m is None:
            out.update(rename_keys({key: value}, _OUTER))
            continue
        stage, index, part, rest = int(m[1]), int(m[2]), m[3], m[4]
        if part not in _PARTS:
            raise ValueError(f"{name}: no rule for timm key {key!r}")
        out[f"{weighted[stage][index]}.{_PARTS[part]}.{rest}"] = value
    return out
