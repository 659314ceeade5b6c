"""ConvNeXt's roadmap: each step's design, the paper's multiply-adds, and the end equal to ConvNeXt-T."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from torch import nn

import convzoo
from convzoo.bench.compare import COMPARE_HEADER, MB, compare_rows, state_dict_mb
from convzoo.cli import main
from convzoo.layers.norm import LayerNorm2d
from convzoo.models.convnext_roadmap import STEPS, RoadmapBlock, step_names


def test_every_step_is_registered_in_order():
    names = convzoo.list_models("convnext_roadmap*")
    assert names == step_names()
    assert names[0] == "convnext_roadmap_00_resnet50"
    assert names[-1] == "convnext_roadmap_15_convnext_t"


def test_first_step_is_resnet50_and_last_is_convnext_tiny():
    first, last = step_names()[0], step_names()[-1]
    assert convzoo.model_info(first).params == convzoo.model_info("resnet50").params
    torch.manual_seed(0)
    tiny = convzoo.create_model("convnext_tiny").eval()
    ours = convzoo.create_model(last).eval()
    ours.load_state_dict(tiny.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tiny.parameters())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), tiny(x), rtol=0, atol=0)


def _blocks(name: str) -> list[RoadmapBlock]:
    model = convzoo.create_model(name, depths=(1, 1, 1, 1), widths=(8, 8, 16, 16))
    return [m for m in model.modules() if isinstance(m, RoadmapBlock)]


def _count(module: nn.Module, kinds: tuple[type, ...]) -> int:
    return sum(isinstance(m, kinds) for m in module.modules())


def test_micro_design_steps_change_what_they_name():
    names = {s.slug: n for s, n in zip(STEPS, step_names())}
    norms = (nn.BatchNorm2d, LayerNorm2d)
    # Before "fewer activations": three per block (two in the branch, one after the sum).
    for block in _blocks(names["gelu"]):
        assert _count(block.convs, (nn.GELU,)) == 2 and isinstance(block.act, nn.GELU)
    for block in _blocks(names["fewer_activations"]):
        assert _count(block.convs, (nn.GELU, nn.ReLU)) == 1 and isinstance(block.act, nn.Identity)
        assert _count(block.convs, norms) == 3
    for block in _blocks(names["fewer_norms"]):
        assert _count(block.convs, norms) == 1
        assert block.convs[0][0].groups == block.convs[0][0].in_channels  # the depthwise conv
    model = convzoo.create_model(names["bn_to_ln"], depths=(1, 1, 1, 1), widths=(8, 8, 16, 16))
    assert _count(model, (nn.BatchNorm2d,)) == 0 and _count(model, (LayerNorm2d,)) > 0
    kernels = [s.changes.get("kernel_size") for s in STEPS]
    assert kernels[7:11] == [5, 7, 9, 11]


def test_cli_compare_prints_the_papers_gflops_beside_ours(capsys):
    assert main(["compare", "convnext_roadmap_0[3-6]*"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rows = [r for r in rows if r and r[0].startswith("convnext_roadmap")]
    assert [r[0] for r in rows] == step_names()[3:7]
    col = {name: i for i, name in enumerate(COMPARE_HEADER)}
    for r, step in zip(rows, STEPS[3:7]):
        r = [c for c in r if not c.startswith("(")]  # "+0.004 (+0.1%)": keep the first part
        macs = float(r[col["GMACs"]])
        paper = float(r[col["paper GMACs"]])
        assert paper == pytest.approx(step.paper_gflops)
        # Our multiply-adds reproduce the paper's figure to its printed precision.
        assert abs(macs - paper) <= 0.006, r
        assert float(r[-1]) == pytest.approx(step.paper_top1)
        assert re.fullmatch(r"[+-]\d+\.\d{3}", r[col["diff G (%)"]])


def test_model_size_columns(capsys):
    # SqueezeNet Table 2: 1.25M parameters are "4.8MB" at 32 bits, so MB = 2^20 bytes.
    (row,) = compare_rows("squeezenet1_0", macs=False)
    assert round(row["size_mb_fp32"], 1) == 4.8
    assert row["size_mb_fp16"] == pytest.approx(row["size_mb_fp32"] / 2, rel=1e-3)
    # The count is what torch.save writes, up to its headers (a few KB).
    model = convzoo.create_model("resnet18")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert 0 <= buffer.tell() / MB - state_dict_mb(model) < 0.05
    assert main(["compare", "squeezenet1_0"]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    columns = dict(zip(re.split(r"\s{2,}", header.strip()), re.split(r"\s{2,}", line.strip())))
    assert float(columns["MB fp32"]) == pytest.approx(row["size_mb_fp32"], abs=0.005)
    assert float(columns["MB fp16"]) == pytest.approx(row["size_mb_fp16"], abs=0.005)


def test_cli_roadmap_trains_the_steps_and_reports_their_accuracy(tmp_path, capsys):
    out = tmp_path / "roadmap"
    argv = ["roadmap", "--steps", "convnext_roadmap_1[45]*", "--depths", "1", "1", "1", "1",
            "--width-divisor", "8", "--epochs", "1", "--max-train-samples", "64",
            "--batch-size", "32", "--device", "cpu", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("convnext_roadmap")}  # fmt: skip
    rows = json.loads((out / "roadmap.json").read_text())["steps"]
    assert [r["model"] for r in rows] == step_names()[14:16]
    for r in rows:
        final = json.loads((out / r["model"] / "final.json").read_text())
        assert r["val_acc"] == final["val_acc"] and r["epochs"] == 1
        assert float(printed[r["model"]][1]) == pytest.approx(r["val_acc"], abs=0.005)
        assert float(printed[r["model"]][2]) == r["paper_top1"]
        config = json.loads((out / r["model"] / "config.json").read_text())
        assert config["optimizer"] == "adamw" and config["image_size"] == 32
        assert tuple(config["model_args"]["depths"]) == (1, 1, 1, 1)
    assert (out / "roadmap.png").stat().st_size > 0
    # A finished step is read back, not trained again.
    (out / rows[0]["model"] / "last.pt").unlink()
    assert main(argv) == 0
    assert json.loads((out / "roadmap.json").read_text())["steps"] == rows


def test_cli_roadmap_bad_input_is_one_line(tmp_path, capsys):
    for argv in (["roadmap", "--depths", "1", "1"], ["roadmap", "--width-divisor", "7"],
                 ["roadmap", "--steps", "resnet*"]):  # fmt: skip
        assert main([*argv, "--output", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
