"""Our parameter and MAC counts beside the papers' printed numbers, for every registered variant.

Counts are of the full-size model built on the ``meta`` device (no memory, no arithmetic). Params
in millions, MACs in billions of multiply-adds per image at the model's default input size.
A difference is ours minus the paper's, absolute and in percent of the paper's figure.

Model size (SqueezeNet's Table 2 column): bytes of the state dict (parameters and buffers) with
floating-point tensors stored at fp32 or fp16, in MB of 2^20 bytes (SqueezeNet's 1.25M
parameters are its "4.8MB" so). ``torch.save`` adds a few KB of pickle and zip headers on top.

``MB int8`` (``int8_mb``) is the weight payload of the project's int8 export
(``convzoo.bench.quantize``: ONNX Runtime's static quantizer, QDQ form, per-channel weights), as
that export stores it. BatchNorm that directly follows a conv is folded into it first (the ONNX
export folds it; ``convzoo.bench.fold.find_conv_bn_pairs`` finds the same pairs). Then every
conv and linear layer with C output channels and K weights costs

* K bytes (int8 weights) + 4C (fp32 scale) + C (int8 zero point) per output channel, and
* where it has a bias (its own, or the shift of a folded BatchNorm): 4C (int32 bias) + 4C (its
  fp32 scale) + 4C (its int32 zero point) -- ORT writes all three per channel;

every other floating parameter and buffer (norms that fold into nothing, layer scales, ...) is
counted at fp32, and integer buffers (BatchNorm's step counter) not at all: the export has none.
Not counted: the per-tensor activation scales and zero points (5 bytes per quantized tensor),
the graph itself (node names, shapes), and the per-tensor int8 copies ORT makes of some
unfolded norm weights -- so the ``.onnx`` file is larger than this by the graph and smaller by
those. Checked against ``quantize_onnx``'s output (ORT 1.32, tiny models with trained-looking
norms and biases): equal to the file's weight tensors for ResNet-18, MobileNet v2, EfficientNet-B0
and SqueezeNet, within 2% for DenseNet and ConvNeXt (ORT also stores some of their norm weights at
int8); full-size MobileNet v2 (10 classes) counts 2.49e6 bytes where BENCHMARKS.md's int8 file
has 2.74e6 -- the rest is graph. Weights made at run time (HyperNetworks' kernels, dynamic
filters) are counted as what makes them: their generators' parameters, at fp32.

Measured accuracy (``load_measured``, ``convzoo compare --measured``): the ``cifar_table.json``
that ``benchmarks/cifar_table.py`` writes, grouped per configuration (its ``label``): mean,
sample standard deviation and number of seeds of ``val_acc`` beside the paper's figure.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.bench.counts import count_params, model_counts
from convzoo.registry import create_model, list_models, model_info

__all__ = [
    "COMPARE_HEADER",
    "MEASURED_HEADER",
    "Measured",
    "compare_rows",
    "format_compare",
    "int8_mb",
    "load_measured",
    "model_sizes",
    "state_dict_mb",
]

MB = 2**20


def state_dict_mb(model: nn.Module, dtype: torch.dtype = torch.float32) -> float:
    """Size of ``model.state_dict()`` with its floating tensors in ``dtype``, in MB (2^20 bytes).
    Works on the ``meta`` device: only shapes and dtypes are read."""
    size = torch.tensor([], dtype=dtype).element_size()
    total = 0
    # A module registered at several places (HyperNetworks' shared generator) appears under each
    # of its names; torch.save stores its tensors once, and so does this count.
    unique = {id(t): t for t in model.state_dict(keep_vars=True).values()}
    for t in unique.values():
        total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total / MB


INT8_PER_CHANNEL = 4 + 1  # fp32 scale + int8 zero point of each output channel's weights
INT8_BIAS_PER_CHANNEL = 4 + 4 + 4  # int32 bias + its fp32 scale + its int32 zero point


def int8_mb(model: nn.Module, example_input: Tensor) -> float:
    """Size of the int8 export's stored tensors, in MB (2^20 bytes); see the module docstring.
    ``example_input`` (any device; it is moved to ``meta``) finds the conv + BatchNorm pairs."""
    from convzoo.bench.fold import find_conv_bn_pairs

    folded = dict(find_conv_bn_pairs(model, example_input))  # conv name -> bn name
    done: set[int] = set()  # ids of tensors already counted (or folded away)
    total = 0
    for name, m in model.named_modules():
        if name in folded.values():
            done.update(id(t) for t in (*m.parameters(False), *m.buffers(False)))
        elif isinstance(m, nn.modules.conv._ConvNd | nn.Linear) and id(m.weight) not in done:
            out = m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features
            total += m.weight.numel() + INT8_PER_CHANNEL * out
            if m.bias is not None or name in folded:
                total += INT8_BIAS_PER_CHANNEL * out
            done.update(id(t) for t in m.parameters(False))
    for t in (*model.parameters(), *model.buffers()):
        if id(t) not in done and t.is_floating_point():
            total += 4 * t.numel()
            done.add(id(t))
    return total / MB


def _diff(ours: float | None, paper: float | None) -> tuple[float | None, float | None]:
    if ours is None or paper is None:
        return None, None
    return ours - paper, (100 * (ours - paper) / paper if paper else None)


def model_sizes(model: nn.Module, example_input: Tensor | None) -> dict[str, float | None]:
    """``size_mb_fp32``, ``size_mb_fp16`` and ``size_mb_int8`` (MB of 2^20 bytes; see the module
    docstring), as ``convzoo compare`` and ``convzoo bench`` report them. ``example_input``
    finds the BatchNorm folded into convs for int8 (``None``: no int8 size)."""
    return {
        "size_mb_fp32": state_dict_mb(model, torch.float32),
        "size_mb_fp16": state_dict_mb(model, torch.float16),
        "size_mb_int8": int8_mb(model, example_input) if example_input is not None else None,
    }


def _example(model: nn.Module, input_size: int | tuple[int, int]) -> Tensor:
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    return torch.zeros(1, model.in_channels, h, w)


def compare_rows(pattern: str = "*", macs: bool = True) -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern``, sorted by name. ``macs=False`` skips
    the MAC count and the int8 size (the slow parts: each runs the model once on ``meta``)."""
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no registered model matches {pattern!r}")
    rows = []
    for name in names:
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        if macs:
            counts = model_counts(name)
        else:
            counts = {"params": count_params(model), "input_size": info.input_size}
        params_m = counts["params"] / 1e6
        macs_g = counts["macs"] / 1e9 if macs else None
        dp, dp_pct = _diff(params_m, info.paper_params_m)
        dm, dm_pct = _diff(macs_g, info.paper_macs_g)
        rows.append(
            {
                "model": name,
                "family": info.family,
                "input_size": counts["input_size"],
                "params_m": params_m,
                "paper_params_m": info.paper_params_m,
                "params_diff_m": dp,
                "params_diff_pct": dp_pct,
                "macs_g": macs_g,
                "paper_macs_g": info.paper_macs_g,
                "macs_diff_g": dm,
                "macs_diff_pct": dm_pct,
                "paper_accuracy": info.paper_accuracy,
                **model_sizes(model, _example(model, counts["input_size"]) if macs else None),
                "table": info.table,
            }
        )
    return rows


COMPARE_HEADER = (
    "model",
    "px",
    "params M",
    "paper M",
    "diff M (%)",
    "MB fp32",
    "MB fp16",
    "MB int8",
    "GMACs",
    "paper GMACs",
    "diff G (%)",
    "paper top-1 %",
)
MEASURED_HEADER = ("ours top-1 %", "std", "seeds")


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pair(v: float | None, pct: float | None, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" + (f" ({pct:+.1f}%)" if pct is not None else "")


def format_compare(
    rows: list[dict[str, Any]], measured: list[Measured] | None = None
) -> list[list[str]]:
    """Rows as strings in the order of ``COMPARE_HEADER`` (then ``MEASURED_HEADER`` when
    ``measured`` is given: the group that ran each model unchanged, "-" where none did)."""
    plain = {g.model: g for g in reversed(measured or []) if not g.settings}
    out = []
    for r in rows:
        line = [
            r["model"],
            str(r["input_size"]),
            _num(r["params_m"], 3),
            _num(r["paper_params_m"], 2),
            _pair(r["params_diff_m"], r["params_diff_pct"], 3),
            _num(r["size_mb_fp32"], 2),
            _num(r["size_mb_fp16"], 2),
            _num(r.get("size_mb_int8"), 2),
            _num(r["macs_g"], 3),
            _num(r["paper_macs_g"], 3),
            _pair(r["macs_diff_g"], r["macs_diff_pct"], 3),
            _num(r["paper_accuracy"], 2),
        ]
        if measured is not None:
            g = plain.get(r["model"])
            line += ["-", "-", "0"] if g is None else [_num(g.mean, 2), _num(g.std, 2), str(g.n)]
        out.append(line)
    return out


@dataclass(frozen=True)
class Measured:
    """The runs of one configuration (one ``label`` of ``cifar_table.json``)."""

    label: str
    model: str
    settings: dict[str, Any]  # model_args and train_args: empty when the model ran unchanged
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]  # top-1 %, one per seed
    paper: float | None  # the paper's figure for exactly this configuration

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (None for one seed)."""
        return statistics.stdev(self.accuracies) if self.n > 1 else None


def _field(path: Path, run: Any, i: int, key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = run.get(key) if isinstance(run, dict) else None
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise ValueError(f"{path}: runs[{i}].{key}: expected {what}, got {value!r}")
    return value


def load_measured(path: str | Path) -> list[Measured]:
    """The runs of a ``cifar_table.json`` (``benchmarks/cifar_table.py``), grouped by ``label`` in
    the file's order. A bad file raises ``ValueError`` naming the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: runs: expected a non-empty list of runs (cifar_table.json)")
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, run in enumerate(runs):
        label = _field(path, run, i, "label", (str,), "a configuration name")
        model = _field(path, run, i, "model", (str,), "a registered model name")
        if model not in list_models():
            raise ValueError(f"{path}: runs[{i}].model: {model!r} is not a registered model")
        _field(path, run, i, "seed", (int,), "an integer")
        acc = _field(path, run, i, "val_acc", (int, float), "top-1 % (a number)")
        if not 0 <= acc <= 100:
            raise ValueError(f"{path}: runs[{i}].val_acc: expected top-1 % in [0, 100], got {acc}")
        if run.get("paper_accuracy") is not None:
            _field(path, run, i, "paper_accuracy", (int, float), "a number or null")
        for key in ("model_args", "train_args"):
            if not isinstance(run.get(key, {}), dict):
                raise ValueError(f"{path}: runs[{i}].{key}: expected an object")
        groups.setdefault(label, []).append((i, run))
    out = []
    for label, members in groups.items():
        first = members[0][1]
        models = {r["model"] for _, r in members}
        if len(models) > 1:
            i = next(i for i, r in members if r["model"] != first["model"])
            raise ValueError(f"{path}: runs[{i}].model: label {label!r} names two models")
        out.append(
            Measured(
                label=label,
                model=first["model"],
                settings={**first.get("model_args", {}), **first.get("train_args", {})},
                seeds=tuple(r["seed"] for _, r in members),
                accuracies=tuple(float(r["val_acc"]) for _, r in members),
                paper=first.get("paper_accuracy"),
            )
        )
    return out


def _text_table(header: list[str], rows: list[list[str]], markdown: bool, left: int = 1) -> str:
    """Aligned columns (the first ``left`` ones to the left, numbers to the right), or Markdown."""
    from convzoo.bench.report import md_table

    if markdown:
        return md_table(header, rows)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    )


MEASURED_GROUP_HEADER = ["configuration", "model", "settings", "ours top-1 %", "std", "seeds",
                         "paper top-1 %"]  # fmt: skip


def measured_rows(groups: list[Measured]) -> list[list[str]]:
    """One row per configuration of a ``cifar_table.json``, as ``MEASURED_GROUP_HEADER``."""
    return [
        [g.label, g.model, " ".join(f"{k}={v}" for k, v in g.settings.items()) or "-",
         _num(g.mean, 2), _num(g.std, 2), str(g.n), _num(g.paper, 2)]
        for g in groups
    ]  # fmt: skip


def compare_report(
    pattern: str | None = None,
    *,
    markdown: bool = False,
    measured: str | Path | None = None,
    plot: str | Path | None = None,
) -> str:
    """What ``convzoo compare`` prints. With ``measured`` (a ``cifar_table.json``): the measured
    columns and a table of every measured configuration, and, where ``plot`` names a PNG, the plot
    of measured top-1 (mean, spread, seeds) beside the paper's; ``pattern`` defaults to the
    measured models then. Nothing is written unless ``plot`` is given: a listing never creates
    or overwrites a file the user did not name."""
    groups = load_measured(measured) if measured is not None else None
    if groups is not None and pattern is None:
        names = sorted({g.model for g in groups})
        rows = [r for n in names for r in compare_rows(n)]
    else:
        rows = compare_rows(pattern or "*")
    header = list(COMPARE_HEADER) + (list(MEASURED_HEADER) if groups is not None else [])
    parts = [_text_table(header, format_compare(rows, groups), markdown)]
    if not markdown:
        parts.append(
            "\nparams in millions; MACs in billions of multiply-adds per image at the default "
            "input size; diff = ours - paper (percent of the paper's figure); MB = 2^20 bytes of "
            "the state dict at fp32 / fp16, and of the int8 export's tensors (int8 conv/linear "
            "weights with per-channel scales, int32 biases, BatchNorm folded)."
        )
    if groups is not None:
        from convzoo.bench.report import plot_measured

        shown = [g for g in groups if g.model in {r["model"] for r in rows}]
        if not shown:
            raise ValueError(f"{measured}: no run of a model matching {pattern!r}")
        parts += [
            "",
            f"Measured ({measured}): top-1 % mean, sample std and seeds per configuration; "
            "ours top-1 % above is the configuration that ran the model unchanged.",
            "",
            _text_table(MEASURED_GROUP_HEADER, measured_rows(shown), markdown, left=3),
            "",
        ]
        if plot is None:
            parts.append("--plot PNG draws these runs beside the papers' figures")
        else:
            plot_measured(shown, plot, source=_measured_source(measured))
            parts.append(f"wrote {plot}")
    return "\n".join(parts)


def _measured_source(path: str | Path) -> str:
    data = json.loads(Path(path).read_text())
    header = data.get("header") if isinstance(data, dict) else None
    return header if isinstance(header, str) else str(path)
