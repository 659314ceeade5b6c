"""Moving weights from another library's module into a convzoo model, and proving it worked.

A family describes each library's layout with a ``Converter`` (see ``convzoo.interop.convert``
for the table of them): ``rename`` turns the source state dict into ours (``rename_keys`` with
ordered ``(regex, replacement)`` rules, or code where tensors need more than renaming), and
``source_config`` reads the config choices that are not in the state dict (padding mode, shortcut
type) off the source module. What every family shares, the BatchNorm eps and the activation, is
read here. After loading, ``verify`` runs one probe input through source and result.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.registry import create_model, get_entry

Rules = Sequence[tuple[str, str]]
Rename = Callable[[Mapping[str, Tensor], str], dict[str, Tensor]]
SourceConfig = Callable[[nn.Module, str], dict[str, Any]]

# Activation modules that define a network's nonlinearity, by class name so that another
# library's own classes (timm's GELU, Swish) count as the torch ones they compute. Gates (sigmoid,
# hard-sigmoid) are squeeze-excite details fixed by each family, so they do not count.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    **{cls.__name__: cls for cls in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish)},
    **{cls.__name__: cls for cls in (nn.Mish, nn.ELU, nn.LeakyReLU)},
    "Swish": nn.SiLU,
    "HardSwish": nn.Hardswish,
}


def _no_config(source: nn.Module, name: str) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Converter:
    """How one library's version of a family becomes ours (one row of the converter table)."""

    rename: Rename
    source_config: SourceConfig = _no_config


def rules(table: Rules) -> Rename:
    """A ``rename`` that applies ``table`` with ``re.sub`` to every key, in order."""
    return lambda state, name: rename_keys(state, table)


def rename_keys(state: Mapping[str, Tensor], table: Rules) -> dict[str, Tensor]:
    """``state`` with every key rewritten by ``table``; a key rewritten to ``""`` is dropped."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        new = key
        for pattern, repl in table:
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
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(
            f"cannot load {source} into {name}: the source is a different architecture or "
            f"variant (depth, width, groups); "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, "
            f"shape mismatches {mismatched[:8]}"
        )
    with torch.no_grad():
        model.load_state_dict(dict(state), strict=True, assign=assign)


def bn_eps(module: nn.Module) -> set[float]:
    return {m.eps for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def main_activation(module: nn.Module) -> type[nn.Module] | None:
    """The most common activation module type of ``module`` (``None`` if it has none)."""
    counts = Counter(
        ACTIVATIONS[type(m).__name__] for m in module.modules() if type(m).__name__ in ACTIVATIONS
    )
    return counts.most_common(1)[0][0] if counts else None


def shared_overrides(name: str, source: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Config fields every family may take from the source: BN eps, activation, class count.

    A field is set only where the source differs from what the registered config builds, so a
    source that already matches converts to the registered config itself.
    """
    cfg = get_entry(name).config
    fields = {f.name for f in dataclasses.fields(cfg)}
    with torch.device("meta"):
        ours = create_model(name)
    out: dict[str, Any] = {}
    theirs_eps, our_eps = bn_eps(source), bn_eps(ours)
    if "norm_layer" in fields and len(theirs_eps) == 1 and theirs_eps != our_eps:
        momentum = next((m.momentum for m in ours.modules() if isinstance(m, nn.BatchNorm2d)), 0.1)
        out["norm_layer"] = partial(nn.BatchNorm2d, eps=theirs_eps.pop(), momentum=momentum)
    act = main_activation(source)
    if "act_layer" in fields and act is not None and act is not main_activation(ours):
        out["act_layer"] = act
    fc = state.get("head.fc.weight")
    if fc is not None and fc.shape[0] != cfg.num_classes:
        out["num_classes"] = fc.shape[0]
    return out


def probe_input(name: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """One small fixed input the model accepts: 64x64 (ImageNet models), its own size otherwise."""
    info = get_entry(name).info
    size = min(info.input_size, 64)
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, info.in_channels, size, size, generator=g).to(device, dtype)


def tolerance(reference: Tensor, relative: float = 5e-5) -> float:
    """Float32 agreement: ``relative`` times the output's scale (the scale counted as at least 1).

    Two correct float32 implementations of one function differ by summation order only: 0 to
    5.5e-6 of the output's scale over every architecture we convert (BENCHMARKS.md, NFNet-F6 the
    largest). A wrong BatchNorm eps (1e-3 for 1e-5) moves EfficientNet B0-B3's outputs by 3e-4 to
    6e-4 even with the well-conditioned random statistics of the tests, and trained running
    variances are smaller, so the error larger: 5e-5 sits about 10x from the first and 6x from the
    second.
    """
    return relative * max(1.0, reference.abs().max().item())


def verify(source: nn.Module, model: nn.Module, name: str, library: str) -> float:
    """Run one probe input through ``source`` and ``model`` (eval mode); raise if they differ.

    Returns the max abs difference. Both modules are put back in their training mode.
    """
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = probe_input(name, device, dtype)
    modes = [(m, m.training) for m in (source, model)]
    try:
        source.eval()
        model.eval()
        with torch.no_grad():
            want, got = source(x), model(x)
    finally:
        for m, training in modes:
            m.train(training)
    if got.shape != want.shape:
        raise ValueError(
            f"{name} from {library}: output shape {tuple(got.shape)} != source's "
            f"{tuple(want.shape)} on a {tuple(x.shape)} probe"
        )
    diff = (got.float() - want.float()).abs().max().item()
    if not diff <= tolerance(want):  # also catches NaN
        causes = "; ".join(likely_causes(source, model)) or (
            "a layer the source computes differently (an option convzoo does not model)"
        )
        raise ValueError(
            f"{name} from {library}: converted model disagrees with the source by max abs "
            f"{diff:.3g} on a {tuple(x.shape)} probe (tolerance {tolerance(want):.1g}); "
            f"likely cause: {causes}. Pass check=False to skip this check."
        )
    return diff


def likely_causes(source: nn.Module, model: nn.Module) -> list[str]:
    """Differences between two modules that explain different outputs, in words."""
    causes = []
    theirs, ours = bn_eps(source), bn_eps(model)
    if theirs != ours:
        causes.append(f"BatchNorm eps: source uses {_floats(theirs)}, convzoo {_floats(ours)}")
    act_theirs, act_ours = main_activation(source), main_activation(model)
    if act_theirs is not act_ours:
        causes.append(f"activation: source {_name(act_theirs)}, convzoo {_name(act_ours)}")
    same_theirs = _same_padding(source.modules())
    if same_theirs != _same_padding(model.modules()):
        causes.append(
            "padding: the source uses TF 'SAME' (asymmetric) padding"
            if same_theirs
            else "padding: convzoo uses TF 'SAME' (asymmetric) padding, the source does not"
        )
    return causes


def _same_padding(modules: Iterable[nn.Module]) -> bool:
    return any(type(m).__name__.endswith("Same") or getattr(m, "same", False) for m in modules)


def _floats(values: set[float]) -> str:
    return "{" + ", ".join(f"{v:g}" for v in sorted(values)) + "}" if values else "none"


def _name(cls: type | None) -> str:
    return cls.__name__ if cls is not None else "none"


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and BatchNorm statistic of ``module`` with random values, in place.

    For proving a conversion without downloading weights: a fresh BatchNorm is the identity in
    eval mode and zero-initialized gains or layer scales switch whole branches off, which would
    hide a mis-mapped tensor. Norm scales, gains and layer scales are drawn from U(0.5, 1.5),
    biases and running means from N(0, 0.1^2), running variances from U(0.5, 1.5), other weights
    from N(0, 1 / fan_in) so activations keep their scale through any depth.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in {"gain", "layer_scale", "gamma", "skipinit_gain"} or (
                p.ndim == 1 and leaf == "weight"
            ):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim <= 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
        for m in module.modules():
            mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
            if (
                isinstance(m, nn.modules.batchnorm._BatchNorm)
                and mean is not None
                and var is not None
            ):
                mean.copy_(torch.randn(mean.shape, generator=g) * 0.1)
                var.copy_(torch.rand(var.shape, generator=g) + 0.5)
    return module
