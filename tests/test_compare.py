"""convzoo compare: every registered variant, our counts beside the paper's."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import convzoo
from convzoo.bench.compare import (
    COMPARE_HEADER,
    MB,
    MEASURED_HEADER,
    compare_rows,
    format_compare,
    int8_mb,
    load_measured,
    state_dict_mb,
)
from convzoo.bench.counts import model_counts
from convzoo.cli import main
from convzoo.registry import get_entry


def test_lists_every_registered_model_with_its_paper_numbers():
    rows = compare_rows(macs=False)
    assert [r["model"] for r in rows] == convzoo.list_models()
    for r in rows:
        info = convzoo.model_info(r["model"])
        if info.params is not None:
            assert r["params_m"] * 1e6 == pytest.approx(info.params, abs=0.5)
        assert r["paper_params_m"] == info.paper_params_m
        assert r["paper_macs_g"] == info.paper_macs_g
        assert r["paper_accuracy"] == info.paper_accuracy
        if info.paper_params_m is not None:
            assert r["params_diff_m"] == pytest.approx(r["params_m"] - info.paper_params_m)
    assert all(len(line) == len(COMPARE_HEADER) for line in format_compare(rows))


def test_macs_column_and_diff():
    (row,) = compare_rows("nin_cifar")
    assert row["macs_g"] * 1e9 == pytest.approx(model_counts("nin_cifar")["macs"])
    assert row["macs_diff_g"] is None  # the NiN paper prints no MAC count
    assert (
        format_compare(
            [{**row, "paper_macs_g": 0.2, "macs_diff_g": 0.0464, "macs_diff_pct": 23.2}]
        )[0][COMPARE_HEADER.index("diff G (%)")]
        == "+0.046 (+23.2%)"
    )


def test_cli_compare(capsys):
    assert main(["compare", "nin*"]) == 0
    out = capsys.readouterr().out
    assert "nin_cifar" in out and "paper GMACs" in out and "91.19" in out
    assert main(["compare", "nothing_matches*"]) == 2


@pytest.mark.slow
def test_compare_with_macs_for_every_model():
    rows = compare_rows()
    assert [r["model"] for r in rows] == convzoo.list_models()
    assert all(r["macs_g"] > 0 for r in rows)


def test_compare_markdown_table(capsys):

    assert main(["compare", "nin*", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| model |") and lines[1].startswith("|---")
    assert lines[2].startswith("| nin_cifar | 32 | 0.967 |")


class _Small(nn.Module):
    """conv + BN (folds), conv with bias, a BatchNorm after a ReLU (stays), linear, a scale."""

    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)  # 108 weights
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 1)  # 24 weights + 6 biases
        self.norm = nn.BatchNorm2d(6)  # reads a ReLU's output: nothing to fold into
        self.fc = nn.Linear(6, 5)  # 30 weights + 5 biases
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.bn(self.conv(x))))
        x = self.norm(torch.relu(x)).mean((2, 3))
        return self.fc(x) * self.scale


def test_int8_size_by_hand():
    model = _Small()
    # Per conv / linear: int8 weights + (fp32 scale + int8 zero point) per output channel, and
    # where there is a bias (own or a folded BN's shift) int32 bias + fp32 scale + int32 zero
    # point per channel. The unfolded BN's four vectors and the scale stay fp32; the BN step
    # counters (int64) are not exported.
    conv = 108 + 4 * (4 + 1) + 4 * (4 + 4 + 4)  # bn folds into it: it gains a bias
    conv2 = 24 + 6 * (4 + 1) + 6 * (4 + 4 + 4)
    norm = 4 * 6 * 4
    fc = 30 + 5 * (4 + 1) + 5 * (4 + 4 + 4)
    scale = 5 * 4
    assert int8_mb(model, torch.zeros(1, 3, 8, 8)) * MB == conv + conv2 + norm + fc + scale == 533
    # fp32 / fp16: the whole state dict, step counters included (8 bytes each).
    floats = 108 + 4 * 4 + 24 + 6 + 6 * 4 + 30 + 5 + 5
    assert state_dict_mb(model) * MB == 4 * floats + 2 * 8 == 888
    assert state_dict_mb(model, torch.float16) * MB == 2 * floats + 2 * 8


def test_int8_size_is_what_the_int8_export_stores(tmp_path):
    """Against ONNX Runtime's quantizer (``quantize_onnx``): the weight tensors of the int8 file
    (not the per-tensor activation scales, not the shape constants) are exactly the count."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from convzoo.bench.quantize import quantize_onnx
    from convzoo.interop.export import export_onnx

    torch.manual_seed(0)
    tiny = get_entry("resnet18").tiny
    model = convzoo.create_model("resnet18", **tiny.overrides).eval()
    for m in model.modules():  # trained-looking norms: every folded conv gets a nonzero bias
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(0.1, 0.5)
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    size = tiny.input_size
    export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, size, size), dynamic_batch=False)
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", torch.randn(8, 3, size, size),
                  batch_size=2)  # fmt: skip
    stored = [
        onnx.numpy_helper.to_array(t) for t in onnx.load(tmp_path / "q.onnx").graph.initializer
    ]
    weights = sum(a.nbytes for a in stored if a.ndim > 0 and a.dtype.name != "int64")
    assert any(a.dtype.name == "int32" for a in stored)  # the folded biases are there
    assert int8_mb(model, torch.zeros(1, 3, size, size)) * MB == weights


def test_shared_modules_are_counted_once():
    # HyperNetworks register one generator under every conv; torch.save stores it once.
    with torch.device("meta"):
        model = convzoo.create_model("hyper_wrn40_1_cifar")
    unique = {id(t): t for t in (*model.parameters(), *model.buffers())}.values()
    assert state_dict_mb(model) * MB == sum(t.numel() * t.element_size() for t in unique)
    assert state_dict_mb(model) < 1 < sum(t.numel() for t in model.state_dict().values()) * 4 / MB


def _cifar_table(path, runs):
    path.write_text(json.dumps({"header": "CIFAR-10 test table, 2 epochs", "runs": runs}))
    return path


def _run(label, model, seed, acc, paper=None, **train_args):
    return {"label": label, "model": model, "model_args": {}, "train_args": train_args,
            "seed": seed, "val_acc": acc, "paper_accuracy": paper}  # fmt: skip


@pytest.fixture
def measured_file(tmp_path):
    return _cifar_table(tmp_path / "cifar_table.json", [
        _run("ResNet-20", "resnet20_cifar", 0, 88.0, 91.25),
        _run("ResNet-20 + SD", "resnet20_cifar", 0, 86.0, None, drop_path_rate=0.5),
        _run("NiN", "nin_cifar", 0, 85.0, 91.19),
        _run("ResNet-20", "resnet20_cifar", 1, 89.0, 91.25),
        _run("ResNet-20", "resnet20_cifar", 2, 90.5, 91.25),
    ])  # fmt: skip


def test_measured_groups_by_configuration(measured_file):
    groups = load_measured(measured_file)
    assert [g.label for g in groups] == ["ResNet-20", "ResNet-20 + SD", "NiN"]
    r20 = groups[0]
    assert r20.seeds == (0, 1, 2) and r20.n == 3 and not r20.settings
    assert r20.mean == pytest.approx(89.1666667)
    # sample std: sqrt(((-1.1667)^2 + (-0.1667)^2 + 1.3333^2) / 2)
    assert r20.std == pytest.approx(1.2583057)
    assert groups[1].settings == {"drop_path_rate": 0.5} and groups[2].std is None
    # The table's measured columns take the unchanged configuration, never the SD one.
    rows = compare_rows("resnet20_cifar", macs=False) + compare_rows("resnet56_cifar", macs=False)
    lines = format_compare(rows, groups)
    cols = [*COMPARE_HEADER, *MEASURED_HEADER]
    assert dict(zip(cols, lines[0]))["ours top-1 %"] == "89.17"
    assert lines[0][-2:] == ["1.26", "3"] and lines[1][-3:] == ["-", "-", "0"]


def test_cli_compare_measured_writes_table_and_plot(measured_file, tmp_path, capsys):
    png = tmp_path / "measured.png"
    assert main(["compare", "--measured", str(measured_file), "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = re.split(r"\s{2,}", out[0].strip())
    assert header[-3:] == list(MEASURED_HEADER) and "MB int8" in header
    rows = {line.split()[0]: re.split(r"\s{2,}", line.strip()) for line in out[1:3]}
    assert set(rows) == {"nin_cifar", "resnet20_cifar"}  # the measured models only
    assert rows["resnet20_cifar"][-3:] == ["89.17", "1.26", "3"]
    assert rows["nin_cifar"][-3:] == ["85.00", "-", "1"]
    sd = next(line for line in out if line.startswith("ResNet-20 + SD"))
    assert "drop_path_rate=0.5" in sd and re.split(r"\s{2,}", sd.strip())[3:] == [
        "86.00", "-", "1", "-"]  # fmt: skip
    assert out[-1] == f"wrote {png}"
    from PIL import Image

    assert Image.open(png).size[0] > 800


def test_cli_compare_measured_writes_nothing_without_plot(measured_file, tmp_path, monkeypatch,
                                                         capsys):  # fmt: skip
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["compare", "--measured", str(measured_file)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ResNet-20 + SD") for line in out)
    assert out[-1] == "--plot PNG draws these runs beside the papers' figures"
    assert list(work.iterdir()) == []  # a listing writes no file the user did not name


def test_cli_compare_plot_without_measured_is_one_line(tmp_path, capsys):
    png = tmp_path / "x.png"
    assert main(["compare", "resnet20_cifar", "--plot", str(png)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("convzoo compare: error: --plot") and "--measured" in err
    assert not png.exists()


@pytest.mark.parametrize(
    ("run", "says"),
    [
        ({"val_acc": "high"}, "runs[1].val_acc: expected top-1 % (a number), got 'high'"),
        ({"val_acc": 101.0}, "runs[1].val_acc: expected top-1 % in [0, 100], got 101.0"),
        ({"model": "no_such_model"}, "runs[1].model: 'no_such_model' is not a registered model"),
        ({"seed": None}, "runs[1].seed: expected an integer, got None"),
        ({"label": 3}, "runs[1].label: expected a configuration name, got 3"),
        ({"model": "nin_cifar"}, "runs[1].model: label 'ResNet-20' names two models"),
    ],
)
def test_bad_measured_file_is_one_line_naming_file_and_field(tmp_path, capsys, run, says):
    path = _cifar_table(tmp_path / "bad.json", [
        _run("ResNet-20", "resnet20_cifar", 0, 88.0), {**_run("ResNet-20", "resnet20_cifar", 1, 89.0), **run}
    ])  # fmt: skip
    assert main(["compare", "--measured", str(path), "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"convzoo compare: error: {path}: {says}"]
    assert not (tmp_path / "x.png").exists()


def test_measured_file_that_is_not_a_table(tmp_path, capsys):
    for text, says in (("{", "not JSON"), ('{"rows": []}', "runs: expected a non-empty list")):
        path = tmp_path / "bad.json"
        path.write_text(text)
        assert main(["compare", "--measured", str(path)]) == 2
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"convzoo compare: error: {path}: {says}")
