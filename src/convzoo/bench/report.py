"""Writing a benchmark report (from ``runner.bench_models``): terminal table, CSV, JSON, Markdown
and PNG plots. Cells hold a number, "OOM" or "error"; every column name carries its unit."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["load_accuracies", "summary_rows", "table_text", "write_report"]

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
    """One row per model: name, params (M), GMACs, throughput, accuracy."""
    rows = []
    for m in report["models"]:
        rows.append(
            [
                m["model"],
                f"{m['params'] / 1e6:.4g}",
                f"{m['macs'] / 1e9:.4g}",
                str(m["input_size"]),
                _fmt(m["throughput_images_per_s"], "{:.1f}")
                + (f" @{m['throughput_batch_size']}" if m["throughput_batch_size"] else ""),
                _fmt(m["accuracy_top1_pct"], "{:.2f}"),
            ]
        )
    return rows


SUMMARY_HEADER = ["model", "params (M)", "MACs (G)", "input px", "img/s @batch", "top-1 %"]


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
        "Units: MACs = multiply-adds per image; ms/img = median time of a batch / batch size; "
        "peak MiB = allocated memory above the level before the call.",
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


def _plots(report: Mapping[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = report["provenance"]
    subtitle = f"{p['device_name']}, {p['dtype']}, {p['memory_format']}"
    models = report["models"]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 5))
    for m in models:
        runtimes = dict.fromkeys(b["runtime"] for b in m["batches"])
        for runtime in runtimes:  # one line per model x runtime
            pts = [
                (b["batch_size"], b["infer_ms_per_image"])
                for b in m["batches"]
                if b["runtime"] == runtime and isinstance(b.get("infer_ms_per_image"), float)
            ]
            if pts:
                label = m["model"] if len(runtimes) == 1 else f"{m['model']} {runtime}"
                ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    batch_sizes = p["batch_sizes"]
    ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    ax.set_xlabel("batch size (images)")
    ax.set_ylabel("inference latency per image (ms)")
    ax.set_title(f"Latency per image vs batch size\n{subtitle}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if any(ax.get_lines()):
        ax.legend(fontsize=8)
    paths.append(out / "latency_vs_batch.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    with_acc = [m for m in models if m["accuracy_top1_pct"] is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    fast = [m for m in with_acc if isinstance(m["throughput_images_per_s"], float)]
    if fast:
        top = max(m["macs"] for m in fast) or 1
        for m in fast:
            # Bubble AREA proportional to MACs (matplotlib's s is an area in points^2).
            ax.scatter(
                m["throughput_images_per_s"],
                m["accuracy_top1_pct"],
                s=30 + 1500 * m["macs"] / top,
                alpha=0.5,
            )
            ax.annotate(_label(m), (m["throughput_images_per_s"], m["accuracy_top1_pct"]))
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no model has both accuracy and throughput", ha="center")
    ax.set_xlabel("throughput at the largest batch (images/s)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Accuracy vs throughput (bubble area = MACs)\n{subtitle}", fontsize=10)
    ax.grid(True, alpha=0.3)
    paths.append(out / "accuracy_vs_throughput.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    if with_acc:
        for m in with_acc:
            ax.scatter(m["params"] / 1e6, m["accuracy_top1_pct"])
            ax.annotate(_label(m), (m["params"] / 1e6, m["accuracy_top1_pct"]))
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no accuracy known for these models", ha="center")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("Model size vs accuracy", fontsize=10)
    ax.grid(True, alpha=0.3)
    paths.append(out / "params_vs_accuracy.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


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
    ``acc1``, ``best_top1``, ``accuracy``; a value in [0, 1] is taken as a fraction)."""
    data = json.loads(Path(path).read_text())
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
