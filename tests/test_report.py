"""Bench report helpers: accuracies from a measured CIFAR table, the measured-vs-paper plot, and
plotting code kept in short functions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from convzoo.bench import report
from convzoo.bench.compare import load_measured
from convzoo.bench.report import load_accuracies, plot_measured


def _table(path: Path) -> Path:
    run = {"model_args": {}, "train_args": {}, "paper_accuracy": 91.25}
    runs = [
        {**run, "label": "ResNet-20", "model": "resnet20_cifar", "seed": 0, "val_acc": 88.0},
        {**run, "label": "ResNet-20 + SD", "model": "resnet20_cifar", "seed": 0, "val_acc": 80.0,
         "train_args": {"drop_path_rate": 0.5}},
        {**run, "label": "ResNet-20", "model": "resnet20_cifar", "seed": 1, "val_acc": 89.0},
        {**run, "label": "NiN", "model": "nin_cifar", "seed": 0, "val_acc": 0.5, "paper_accuracy": None},
    ]  # fmt: skip
    path.write_text(json.dumps({"header": "test", "runs": runs}))
    return path


def test_bench_metrics_take_the_mean_of_the_unchanged_configuration(tmp_path):
    acc = load_accuracies(_table(tmp_path / "cifar_table.json"))
    # 88.5, not (88 + 80 + 89) / 3: the stochastic-depth runs are another configuration. A mean
    # of 0.5 is a percentage here (the table's unit), never read as a fraction.
    assert acc == {"resnet20_cifar": 88.5, "nin_cifar": 0.5}


def test_measured_plot_is_written(tmp_path):
    groups = load_measured(_table(tmp_path / "cifar_table.json"))
    png = plot_measured(groups, tmp_path / "m.png", source="CIFAR-10, 2 epochs")
    from PIL import Image

    width, height = Image.open(png).size
    assert png.exists() and width > height > 150


def test_plotting_functions_stay_short():
    tree = ast.parse(Path(report.__file__).read_text())
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
               if isinstance(n, ast.FunctionDef)}  # fmt: skip
    assert {"_plots", "plot_measured", "_plot_latency"} <= set(lengths)
    assert max(lengths.values()) <= 60, lengths


@pytest.mark.parametrize("bad", ['{"runs": []}', '{"runs": [{"label": "x"}]}'])
def test_bad_table_is_refused_naming_the_field(tmp_path, bad):
    path = tmp_path / "bad.json"
    path.write_text(bad)
    with pytest.raises(ValueError, match=r"bad\.json: runs"):
        load_accuracies(path)
