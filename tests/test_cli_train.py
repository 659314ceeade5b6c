"""``convzoo train / eval / predict`` end to end on the embedded digits (in-process CLI calls)."""

import json

import numpy as np
import torch
from PIL import Image

from convzoo.cli import build_parser, main
from convzoo.data.datasets import load_digits

BLOCKS = "blocks=((3, 8, 8, 8), (3, 8, 8, 8), (3, 8, 8, 0))"


def test_train_eval_predict(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "nin_cifar", "--output", str(out), "--epochs", "1", "--image-size", "12",
            "--crop-padding", "1", "--batch-size", "32", "--max-train-samples", "256",
            "--model-arg", BLOCKS, "--model-arg", "batch_norm=True", "--drop-rate", "0",
            "--no-progress", "--lr", "0.1", "--ema-decay", "0.9"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "embedded scikit-learn digits" in text and "final: val top-1" in text
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["batch_size"] == 32 and cfg["model_args"]["batch_norm"] is True
    assert (out / "curves.png").stat().st_size > 1000

    # A finished run is not overwritten by accident.
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # Resuming with more epochs continues the same run.
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]
    # The change is recorded where it happened.
    assert [r["changed"] for r in rows if r["kind"] == "resume"] == [
        {"epochs": {"was": 1, "now": 2}}
    ]
    final = json.loads((out / "final.json").read_text())
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # finished: a no-op
    assert "already finished 2 epochs of 2" in capsys.readouterr().out
    assert json.loads((out / "final.json").read_text()) == final

    assert (
        main(["eval", "nin_cifar", "--checkpoint", str(out / "last.pt"), "--weights", "model"]) == 0
    )
    text = capsys.readouterr().out
    assert (
        "179 images (model weights): top-1" in text and (out / "eval" / "confusion.png").is_file()
    )
    assert main(["eval", "resnet20_cifar", "--checkpoint", str(out / "last.pt")]) == 2
    assert "holds a nin_cifar checkpoint" in capsys.readouterr().err

    img = load_digits(12).images[0].permute(1, 2, 0).numpy()  # a "0"
    Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / "zero.png")
    assert main(["predict", str(tmp_path / "zero.png"), "--checkpoint", str(out / "last.pt"),
                 "--top-k", "3"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("zero.png") and len(lines) == 4
    probs = [float(line.split("%")[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01

    # A checkpoint whose weights no longer fit the model its config builds (a model changed since,
    # as polynet_cifar's per-application BatchNorms did): one line naming the file, for eval,
    # predict and resume alike.
    ckpt = torch.load(out / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        key = next(k for k in ckpt[part] if k.endswith("running_mean"))
        del ckpt[part][key]
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    torch.save(ckpt, old)
    capsys.readouterr()
    for argv in (["eval", "--checkpoint", str(old)],
                 ["predict", str(tmp_path / "zero.png"), "--checkpoint", str(old)],
                 ["train", "--resume", str(old), "--epochs", "3", "--no-progress"]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(old) in err[0] and "does not fit" in err[0], (argv, err)
        assert "1 missing" in err[0], err


def test_every_config_field_is_a_flag_and_errors_are_clear(tmp_path, capsys):
    ns = build_parser().parse_args(["train", "nin_cifar", "--milestones", "3", "6", "--amp", "bf16",
                                    "--ema-decay", "none", "--no-hflip", "--betas", "0.9", "0.95"])  # fmt: skip
    assert ns.milestones == [3, 6] and ns.amp == "bf16" and ns.ema_decay is None
    assert ns.hflip is False and ns.betas == [0.9, 0.95] and not hasattr(ns, "epochs")
    assert main(["train", "nin_cifar", "--data", str(tmp_path / "nope"), "--output",
                 str(tmp_path / "o")]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "nin_cifar", "--schedule", "step", "--output", str(tmp_path / "o")]) == 2
    assert "needs milestones" in capsys.readouterr().err
    assert main(["train", "nin_cifar", "--recipe", "nope"]) == 2
    assert "resnet_cifar" in capsys.readouterr().err  # lists the recipes
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
