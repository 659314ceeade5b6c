"""Writing a benchmark report (from ``runner.bench_models``): terminal table, CSV, JSON, Markdown
and PNG plots. Cells hold a number, "OOM" or "error"; every column name carries its unit."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_accuracies", "plot_measured", "summary_rows", "table_text", "write_report"]

# (column, header with unit, format) of the per-batch table; latency is the lecture's number.
BATCH_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("infer_ms_per_image", "infer ms/img", "{:.3f}"),
    ("infer_ms_per_image_p25", "p25", "{:.3f}"),
    ("infer_ms_per_image_p75", "p75", "{:.3f}"),
    ("infer_images_per_s", "img/s", "{:.1f}"),
    ("infer_peak_mem_mib", "infer peak MiB", "{:.1f}"),
    ("train_ms_per_image", "train ms/img", "{:.3f}"),
    ("train_peak_mem_mib", "train peak MiB", "{:.1f}"),
    ("compile_s", "compile s", "{:.1f}"),
    ("max_abs_diff_vs_eager", "max|diff| vs eager", "{:.1e}"),
)

CSV_FIELDS = (
    "model",
    "params",
    "params_trainable",
    "macs",
    "size_mb_fp32",
    "size_mb_fp16",
    "size_mb_int8",
    "input_size",
    "accuracy_top1_pct",
    "batch_size",
    "runtime",
    "infer_ms_per_image",
    "infer_ms_per_image_p25",
    "infer_ms_per_image_p75",
    "infer_ms_per_image_min",
    "infer_ms_per_image_max",
    "infer_images_per_s",
    "infer_peak_mem_mib",
    "infer_path",
    "train_ms_per_image",
    "train_ms_per_image_p25",
    "train_ms_per_image_p75",
    "train_peak_mem_mib",
    "compile_s",
    "max_abs_diff_vs_eager",
    "settings",
    "unavailable",
)


def _fmt(value: Any, fmt: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def summary_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """One row per model: name, params (M), size (MB at fp32, fp16, int8), GMACs, throughput,
    accuracy."""
    rows = []
    for m in report["models"]:
        rows.append(
            [
                m["model"],
                f"{m['params'] / 1e6:.4g}",
                *(_fmt(m.get(f"size_mb_{t}"), "{:.2f}") for t in ("fp32", "fp16", "int8")),
                f"{m['macs'] / 1e9:.4g}",
                str(m["input_size"]),
                _fmt(m["throughput_images_per_s"], "{:.1f}")
                + (f" @{m['throughput_batch_size']}" if m["throughput_batch_size"] else ""),
                _fmt(m["accuracy_top1_pct"], "{:.2f}"),
            ]
        )
    return rows


SUMMARY_HEADER = ["model", "params (M)", "MB fp32", "MB fp16", "MB int8", "MACs (G)", "input px",
                  "img/s @batch", "top-1 %"]  # fmt: skip


def _batch_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    used = [
        c for c in BATCH_COLUMNS if any(c[0] in b for m in report["models"] for b in m["batches"])
    ]
    header = ["model", "batch", "runtime", *(h for _, h, _ in used)]
    rows = [
        [m["model"], str(b["batch_size"]), b["runtime"], *(_fmt(b.get(k), f) for k, _, f in used)]
        for m in report["models"]
        for b in m["batches"]
    ]
    return header, rows


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
    )
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _provenance_line(report: Mapping[str, Any]) -> str:
    p = report["provenance"]
    return (
        f"{p['device_name']} ({p['device']}, {p['threads']} threads), {p['dtype']}, "
        f"{p['memory_format']}, runtimes={','.join(p['runtimes'])}, fold_bn={p['fold_bn']}, "
        f"cuda_graphs={p['cuda_graphs']}, torch {p['torch']}, cuDNN {p['cudnn']}, {p['date']}"
    )


def table_text(report: Mapping[str, Any]) -> str:
    """What the terminal shows: provenance, the per-model summary, the per-batch table."""
    parts = [
        _provenance_line(report),
        "",
        _text_table(SUMMARY_HEADER, summary_rows(report)),
        "",
        _text_table(*_batch_table(report)),
        "",
        "Units: MACs = multiply-adds per image; MB = 2^20 bytes of the state dict at fp32 / "
        "fp16, and of the int8 export's tensors (as convzoo compare); ms/img = median time of a "
        "batch / batch size; peak MiB = allocated memory above the level before the call.",
    ]
    for m in report["models"]:
        parts += [f"{m['model']}: {n}" for n in m["notes"]]
        parts += [f"{m['model']}: ERROR {e}" for e in m["errors"]]
    return "\n".join(parts)


def _markdown(report: Mapping[str, Any]) -> str:
    p = report["provenance"]
    stages = [
        [
            m["model"],
            ", ".join(f"{k} {v / 1e6:.1f}" for k, v in m["macs_per_stage"].items()),
        ]
        for m in report["models"]
    ]
    lines = [
        "# convzoo bench",
        "",
        f"Device: {_provenance_line(report)}.",
        f"Peak memory: {p['memory_method']}.",
        f"Timing: {p['warmup']} warm-up calls, median over {p['repeats']} repeats of at least "
        f"{p['min_repeat_s']} s each (p25/p75 show the spread).",
        "",
        "## Summary",
        "",
        md_table(SUMMARY_HEADER, summary_rows(report)),
        "",
        "## Latency, throughput and memory against batch size",
        "",
        md_table(*_batch_table(report)),
        "",
        "## MACs per stage (millions of multiply-adds per image)",
        "",
        md_table(["model", "stages"], stages),
        "",
        "## Units",
        "",
        *(f"- `{k}`: {v}" for k, v in report["units"].items()),
    ]
    settings = {
        (m["model"], b["runtime"], b["batch_size"]): b["settings"]
        for m in report["models"]
        for b in m["batches"]
        if b.get("settings")
    }
    if settings:
        lines += ["", "## Runtime settings (per model, runtime, batch)", ""]
        lines += [f"- {m} {r} @{b}: `{json.dumps(v)}`" for (m, r, b), v in settings.items()]
    notes = [f"- {m['model']}: {n}" for m in report["models"] for n in m["notes"] + m["errors"]]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def _write_csv(report: Mapping[str, Any], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for m in report["models"]:
            for b in m["batches"]:
                settings = json.dumps(b["settings"]) if "settings" in b else None
                writer.writerow({**{k: m.get(k) for k in CSV_FIELDS}, **b, "settings": settings})


def _label(m: Mapping[str, Any]) -> str:
    return m["model"] + (f" [{m['accuracy_dataset']}]" if m.get("accuracy_dataset") else "")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, **savefig: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120, **savefig)
    _pyplot().close(fig)
    return path


def _latency_lines(ax: Any, m: Mapping[str, Any]) -> None:
    """One line per runtime of model ``m``: latency per image against batch size."""
    runtimes = dict.fromkeys(b["runtime"] for b in m["batches"])
    for runtime in runtimes:
        pts = [
            (b["batch_size"], b["infer_ms_per_image"])
            for b in m["batches"]
            if b["runtime"] == runtime and isinstance(b.get("infer_ms_per_image"), float)
        ]
        if pts:
            label = m["model"] if len(runtimes) == 1 else f"{m['model']} {runtime}"
            ax.plot(*zip(*pts), marker="o", label=label)


def _plot_latency(report: Mapping[str, Any], path: Path, subtitle: str) -> Path:
    fig, ax = _pyplot().subplots(figsize=(7, 5))
    for m in report["models"]:
        _latency_lines(ax, m)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    batch_sizes = report["provenance"]["batch_sizes"]
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size (images)")
    ax.set_ylabel("inference latency per image (ms)")
    ax.set_title(f"Latency per image vs batch size\n{subtitle}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if any(ax.get_lines()):
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_accuracy_throughput(models: list[Mapping[str, Any]], path: Path, subtitle: str) -> Path:
    fig, ax = _pyplot().subplots(figsize=(7, 5))
    fast = [m for m in models if isinstance(m["throughput_images_per_s"], float)]
    if fast:
        top = max(m["macs"] for m in fast) or 1
        for m in fast:
            # Bubble AREA proportional to MACs (matplotlib's s is an area in points^2).
            x, y = m["throughput_images_per_s"], m["accuracy_top1_pct"]
            ax.scatter(x, y, s=30 + 1500 * m["macs"] / top, alpha=0.5)
            ax.annotate(_label(m), (x, y))
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no model has both accuracy and throughput", ha="center")
    ax.set_xlabel("throughput at the largest batch (images/s)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Accuracy vs throughput (bubble area = MACs)\n{subtitle}", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _plot_params_accuracy(models: list[Mapping[str, Any]], path: Path) -> Path:
    fig, ax = _pyplot().subplots(figsize=(7, 5))
    if models:
        for m in models:
            ax.scatter(m["params"] / 1e6, m["accuracy_top1_pct"])
            ax.annotate(_label(m), (m["params"] / 1e6, m["accuracy_top1_pct"]))
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no accuracy known for these models", ha="center")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Model size vs accuracy", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _plots(report: Mapping[str, Any], out: Path) -> list[Path]:
    p = report["provenance"]
    subtitle = f"{p['device_name']}, {p['dtype']}, {p['memory_format']}"
    with_acc = [m for m in report["models"] if m["accuracy_top1_pct"] is not None]
    return [
        _plot_latency(report, out / "latency_vs_batch.png", subtitle),
        _plot_accuracy_throughput(with_acc, out / "accuracy_vs_throughput.png", subtitle),
        _plot_params_accuracy(with_acc, out / "params_vs_accuracy.png"),
    ]


def plot_measured(groups: Sequence[Any], path: str | Path, source: str = "") -> Path:
    """Measured top-1 per configuration (``compare.Measured``): each seed, the mean with the
    sample standard deviation as a bar, and the paper's figure beside it, one row each."""
    import textwrap

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11.5, 1.6 + 0.42 * len(groups)))
    ys = list(range(len(groups)))[::-1]  # the file's first configuration on top
    for y, g in zip(ys, groups):
        ax.scatter(g.accuracies, [y] * g.n, s=14, color="0.45", zorder=3,
                   label="ours: one seed" if y == ys[0] else None)  # fmt: skip
        ax.errorbar(g.mean, y, xerr=g.std or 0, fmt="o", color="C0", markersize=8, capsize=4,
                    zorder=4, label="ours: mean ± std over seeds" if y == ys[0] else None)  # fmt: skip
    papers = [(g.paper, y) for y, g in zip(ys, groups) if g.paper is not None]
    if papers:
        ax.scatter(*zip(*papers), marker="D", s=50, color="C3", zorder=5,
                   label="paper (its own recipe and test set)")  # fmt: skip
    ax.set_yticks(ys, [f"{g.label} (n={g.n})" for g in groups])
    ax.set_ylim(-0.7, len(groups) - 0.3)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_ylabel("configuration (seeds)")
    title = "Measured top-1 beside the paper's"
    if source:
        title += "\n" + "\n".join(textwrap.wrap(source, 95))
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    # Right of the axes, where no point can be: the legend must never cover a measurement.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, Path(path), bbox_inches="tight")


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """bench.json, bench.csv, bench.md and three PNG plots in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.csv", out / "bench.md"]
    paths[0].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    _write_csv(report, paths[1])
    paths[2].write_text(_markdown(report))
    return paths + _plots(report, out)


def load_accuracies(path: str | Path) -> dict[str, float]:
    """Top-1 accuracies (%) from a metrics file: ``{"model": 76.1, ...}``, ``{"model": {"top1":
    76.1}}``, or one run's metrics ``{"model": "resnet18", "top1": 69.7}`` (keys ``top1``,
    ``acc1``, ``best_top1``, ``accuracy``; a value in [0, 1] is taken as a fraction), or the
    ``cifar_table.json`` of ``benchmarks/cifar_table.py``: the mean over seeds of each model's
    unchanged configuration (runs with model or training overrides are other configurations)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and "runs" in data:
        from convzoo.bench.compare import load_measured

        means = {g.model: g.mean for g in reversed(load_measured(path)) if not g.settings}
        if not means:
            raise ValueError(f"{path}: runs: no model ran without model_args / train_args")
        return means
    keys = ("best_top1", "top1", "acc1", "accuracy")

    def pick(d: Mapping[str, Any]) -> float | None:
        for k in keys:
            if isinstance(d.get(k), int | float):
                return float(d[k])
        return None

    found: dict[str, float] = {}
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        value = pick(data)
        if value is not None:
            found[data["model"]] = value
    elif isinstance(data, dict):
        for name, v in data.items():
            value = (
                float(v) if isinstance(v, int | float) else pick(v) if isinstance(v, dict) else None
            )
            if value is not None:
                found[name] = value
    if not found:
        raise ValueError(f"{path}: no accuracy found (expected keys {keys} or a name->value map)")
    return {k: 100 * v if 0 <= v <= 1 else v for k, v in found.items() if math.isfinite(v)}
