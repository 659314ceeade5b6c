"""benchmarks/cifar_table.py end to end at tiny size (embedded digits, one epoch)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import load_benchmark


def _load():
    return load_benchmark("cifar_table")


def test_smoke_run_writes_the_table(tmp_path, monkeypatch):
    mod = _load()
    out = tmp_path / "table"
    argv = ["cifar_table.py", "--smoke", "--seeds", "0", "1", "--output", str(out), "--models",
            "ResNet-110 + stochastic depth"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    mod.main()
    data = json.loads((out / "cifar_table.json").read_text())
    runs = data["runs"]
    assert [(r["label"], r["seed"]) for r in runs] == [
        ("ResNet-110 + stochastic depth", 0), ("ResNet-110 + stochastic depth", 1)
    ]  # fmt: skip
    assert all(0.0 <= r["val_acc"] <= 100.0 and r["wall_s"] > 0 for r in runs)
    assert runs[0]["train_args"] == {"drop_path_rate": 0.5, "drop_path_mode": "batch"}
    assert data["recipe"]["schedule"] == "cosine" and data["recipe"]["val_fraction"] == 0.1
    md = (out / "cifar_table.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ResNet-110 + stochastic"))
    # The tiny overrides and the stochastic depth are named; no paper number beside a tiny model.
    assert "`resnet110_cifar`" in row and "drop_path_rate=0.5" in row
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[4] == "2" and cells[5] == "-"
    # Outside --smoke the paper's number is the one for exactly that configuration.
    by_label = {e.label: e for e in mod.ENTRIES}
    assert by_label["ResNet-110 + stochastic depth"].paper() == 94.75
    assert by_label["ResNet-20 + stochastic depth"].paper() is None
    assert by_label["FractalNet-20, quarter width"].paper() is None
    assert by_label["ResNet-20"].paper() == 91.25


def test_a_second_invocation_keeps_earlier_runs_and_skips_them(tmp_path, monkeypatch, capsys):
    mod = _load()
    out = tmp_path / "table"
    base = ["cifar_table.py", "--smoke", "--output", str(out), "--models", "ResNet-20"]
    monkeypatch.setattr(sys, "argv", [*base, "--seeds", "0"])
    mod.main()
    first = json.loads((out / "cifar_table.json").read_text())["runs"]
    monkeypatch.setattr(sys, "argv", [*base, "--seeds", "0", "1"])
    mod.main()
    runs = json.loads((out / "cifar_table.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert runs[0] == first[0]  # seed 0 kept as it was, not trained again
    assert "ResNet-20 seed 0: already in" in capsys.readouterr().out
    assert "| 2 |" in (out / "cifar_table.md").read_text()
    # A table made with another length is refused, not mixed in.
    data = json.loads((out / "cifar_table.json").read_text())
    data["runs"][0]["epochs"] = 7
    (out / "cifar_table.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="7"):
        mod.main()


def test_every_entry_is_registered_and_small():
    mod = _load()
    import torch

    import convzoo

    for entry in mod.ENTRIES:
        with torch.device("meta"):
            model = convzoo.create_model(entry.model, **entry.model_args)
        assert sum(p.numel() for p in model.parameters()) < 2.2e6, entry.label


def test_missing_data_is_one_clear_error(monkeypatch, capsys):
    mod = _load()
    monkeypatch.setattr(sys, "argv", ["cifar_table.py", "--epochs", "1"])
    with pytest.raises(SystemExit):
        mod.main()
    assert "--data is required" in capsys.readouterr().err


def test_table_gives_a_spread_only_where_there_are_seeds():
    mod = _load()
    run = {"model_args": {}, "train_args": {}, "params": 10, "paper_accuracy": None, "wall_s": 1.0}
    runs = [
        {**run, "label": "ResNet-20", "val_acc": 70.0},
        {**run, "label": "ResNet-20", "val_acc": 72.0},
        {**run, "label": "NiN", "val_acc": 60.0},
    ]
    rows = {line.split(" | ")[0]: line for line in mod.table(runs, "h").splitlines()[3:]}
    assert "71.00 ± 1.41 | 2" in rows["| ResNet-20"]
    assert "60.00 (one seed) | 1" in rows["| NiN"] and "nan" not in rows["| NiN"]


def test_smoke_keeps_an_entrys_switches_beside_the_tiny_sizes(tmp_path, monkeypatch):
    mod = _load()
    out = tmp_path / "table"
    argv = ["cifar_table.py", "--smoke", "--seeds", "0", "--output", str(out), "--models",
            "NiN + BatchNorm"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    mod.main()
    (run,) = json.loads((out / "cifar_table.json").read_text())["runs"]
    assert run["model_args"]["batch_norm"] is True  # the entry's switch
    assert run["params"] < 10_000  # and the tiny sizes
    by_label = {e.label: e for e in mod.ENTRIES}
    assert by_label["NiN + BatchNorm"].paper() is None and by_label["NiN"].paper() == 91.19


def test_a_run_stopped_midway_is_resumed_by_the_next_invocation(tmp_path, monkeypatch, capsys):
    """A time limit that stops a run after its first epoch: the next invocation continues it
    from the checkpoint (not refused, not restarted) and records that it did."""
    import convzoo.train.engine as engine

    mod = _load()
    out = tmp_path / "table"
    argv = ["cifar_table.py", "--smoke", "--epochs", "2", "--seeds", "0", "--output", str(out),
            "--models", "ResNet-20"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    real, calls = engine._train_epoch, []

    def stopped_in_epoch_two(run):
        calls.append(run.epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the limit strikes during the second epoch
        return real(run)

    monkeypatch.setattr(engine, "_train_epoch", stopped_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        mod.main()
    assert not (out / "cifar_table.json").exists()  # no row for an unfinished run
    run_dir = out / "runs" / "resnet_20-seed0"
    assert (run_dir / "last.pt").is_file() and not (run_dir / "final.json").exists()
    first_epoch_s = mod._epoch_times(run_dir)
    assert len(first_epoch_s) == 1
    monkeypatch.setattr(engine, "_train_epoch", real)
    mod.main()
    [row] = json.loads((out / "cifar_table.json").read_text())["runs"]
    assert row["resumed_at_epoch"] == 1 and row["epochs"] == 2
    assert row["wall_s"] > first_epoch_s[0]
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2]  # trained on, not again
    assert row["val_acc"] == json.loads((run_dir / "final.json").read_text())["val_acc"]
    # A different length cannot continue it: one line, nothing trained.
    (out / "cifar_table.json").unlink()
    (run_dir / "final.json").unlink()
    monkeypatch.setattr(sys, "argv", [*argv[:3], "3", *argv[4:]])
    with pytest.raises(SystemExit, match="unfinished 2-epoch run, not 3"):
        mod.main()
