"""timm NormFreeNet -> convzoo NFNet (``nfnet_f*``, ``nf_resnet50``).

Names: timm's ``attn_last`` is our ``se``, ``skipinit_gain`` our ``skip_gain``, a single stem conv
``stem.conv`` our ``stem.conv1``, ``final_conv`` our ``neck.conv``.

timm builds NF nets in two parametrizations, told apart by the state dict:

* ``dm_nfnet_*`` (ports of the reference weights): gamma in the activations and a scalar
  ``skipinit_gain`` per block, as ours. Renaming is all it takes.
* everything else (``nf_resnet50``, ``nfnet_f*``): no ``skipinit_gain`` (the last conv's gain is
  zero-initialized instead) and gamma folded into every conv's weight scale, the final activation
  left plain. conv(gamma * act(x); W) == conv(act(x); gamma * W), so only the convs that do not
  follow an activation change: the first stem conv and the final 1x1 conv get ``gain * gamma``;
  the classifier sees ``gamma`` times larger features, so its weight is divided by gamma; each
  block gets ``skip_gain = 1``. The result computes the same function.

The architecture choices outside the state dict are read off the timm module (``source_config``):
the nonlinearity, TF SAME padding (timm's ``*Same`` convs), the transition shortcut (an average
pool before the 1x1 conv, as in timm's ``nf_resnet50``, or a strided 1x1 conv) and the weight
standardization eps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.interop.core import main_activation, rename_keys
from convzoo.layers.std_conv import GAMMA
from convzoo.registry import get_entry

TIMM_RULES = [
    (r"\.attn_last\.", ".se."),
    (r"\.skipinit_gain$", ".skip_gain"),
    (r"^stem\.conv\.", "stem.conv1."),
    (r"^final_conv\.", "neck.conv."),
]


def convert_timm(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    out = rename_keys(state, TIMM_RULES)
    if any(k.endswith(".skip_gain") for k in out):
        return out
    gamma = GAMMA[get_entry(name).config.activation]
    for key in ("stem.conv1.gain", "neck.conv.gain"):
        if key in out:
            out[key] = out[key] * gamma
    if "head.fc.weight" in out:
        out["head.fc.weight"] = out["head.fc.weight"] / gamma
    blocks = {m.group(1) for k in out if (m := re.match(r"^(stages\.\d+\.\d+)\.conv1\.weight$", k))}
    for block in sorted(blocks):
        out[f"{block}.skip_gain"] = torch.ones((), dtype=out[f"{block}.conv1.weight"].dtype)
    return out


_ACTIVATION_NAMES: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.GELU: "gelu", nn.SiLU: "silu"}


def source_config(source: nn.Module, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # timm's GammaAct keeps the nonlinearity as a function; plain modules otherwise.
    fns = {m.act_fn.__name__ for m in source.modules() if type(m).__name__ == "GammaAct"}
    act = main_activation(source)
    activation = fns.pop() if len(fns) == 1 else _ACTIVATION_NAMES.get(act) if act else None
    if activation in GAMMA:
        out["activation"] = activation
    convs = [m for m in source.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "eps")]
    out["same_padding"] = any(type(m).__name__.endswith("Same") for m in convs)
    eps = {float(m.eps) for m in convs}
    if len(eps) == 1:
        out["ws_eps"] = eps.pop()
    shortcuts = [m for m in source.modules() if type(m).__name__ == "DownsampleAvg"]
    if any(not isinstance(m.pool, nn.Identity) for m in shortcuts):
        out["shortcut_pool"] = True
    elif any(m.conv.stride != (1, 1) for m in shortcuts):
        out["shortcut_pool"] = False
    return out
