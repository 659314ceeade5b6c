"""FBNet's Figure 4 picture: convzoo draw-arch on FBNet-A/B/C and on what the search writes."""

from __future__ import annotations

import dataclasses
import json

from PIL import Image

from convzoo.cli import main
from convzoo.lab.draw_arch import layer_rows
from convzoo.models.fbnet import FBNET_A, FBNET_C, MacroStage
from convzoo.nas.supernet import SUPERNETS, SupernetConfig


def _table(out: str) -> list[list[str]]:
    return [
        line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()
    ]


def test_cli_draw_arch_fbnet_c(tmp_path, capsys):
    png = tmp_path / "c.png"
    assert main(["draw-arch", "fbnet_c", "--output", str(png)]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    blocks = [b for stage in FBNET_C for b in stage]
    assert [r[2] for r in rows] == [b.candidate for b in blocks]
    assert [int(r[3]) for r in rows] == [b.out_channels for b in blocks]
    assert [int(r[4]) for r in rows] == [b.stride for b in blocks]
    assert [int(r[1]) for r in rows][-1] == 7 and len(rows) == 22
    assert "k5_e6 x12" in out and "skip x1" in out
    with Image.open(png) as im:
        assert im.width > im.height > 200


def test_layer_rows_number_layers_and_stages():
    rows = layer_rows(FBNET_A)
    assert [r.layer for r in rows] == list(range(1, 23))
    assert sum(r.candidate == "skip" for r in rows) == 3
    assert [r.stage for r in rows if r.stride == 2] == [2, 3, 4, 6]


def test_search_writes_the_picture_and_draw_arch_reads_its_spec(tmp_path, monkeypatch, capsys):
    macro = (MacroStage(out_channels=8, layers=1, stride=1),
             MacroStage(out_channels=16, layers=2, stride=2))  # fmt: skip
    tiny = SupernetConfig(macro=macro, stem_channels=8, stem_stride=1,
                          head_channels=16, input_size=8, num_classes=10)  # fmt: skip
    monkeypatch.setitem(SUPERNETS, "cifar", dataclasses.replace(tiny))
    out = tmp_path / "s"
    argv = ["search", "fbnet", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
            "--max-train-samples", "96", "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert (out / "arch.png").stat().st_size > 0
    chosen = [c for stage in json.loads((out / "search.json").read_text())["architecture"]
              for c in stage]  # fmt: skip
    capsys.readouterr()
    assert main(["draw-arch", str(out / "arch.json"), "--output", str(tmp_path / "a.png")]) == 0
    assert [r[2] for r in _table(capsys.readouterr().out)] == chosen


def test_cli_draw_arch_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": []}')
    for argv in (["draw-arch", str(tmp_path / "none.json")], ["draw-arch", str(bad)],
                 ["draw-arch", "resnet18"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
