"""Run folders belong to one run: resume writes where it is told, a lock keeps a second live run
out, checkpoints load with weights_only, divergence keeps a finite state, and settings changed on
resume are applied or refused by name."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from convzoo.cli import main
from convzoo.train import checkpoint as ckpt_mod
from convzoo.train.checkpoint import CheckpointError, load_checkpoint
from convzoo.train.config import TrainConfig
from convzoo.train.engine import TrainingDiverged, evaluate, train
from convzoo.train.rundir import LOCK, RunInUse, RunLock

SRC = str(Path(__file__).resolve().parents[1] / "src")
BLOCKS = "blocks=((3, 8, 8, 8), (3, 8, 8, 8), (3, 8, 8, 0))"


def _train_args(out: str, *extra: str) -> list[str]:
    return ["train", "nin_cifar", "--output", out, "--epochs", "1", "--image-size", "8",
            "--crop-padding", "1", "--batch-size", "16", "--max-train-samples", "64",
            "--model-arg", BLOCKS, "--model-arg", "batch_norm=True", "--no-progress",
            "--no-plots", *extra]  # fmt: skip


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_resume_writes_into_the_folder_given_even_copied_or_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(_train_args("runs/orig")) == 0
    shutil.copytree("runs/orig", "runs/branch")
    before = _bytes(tmp_path / "runs/orig/last.pt")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a relative path from another directory
    assert main(["train", "--resume", "../runs/branch", "--epochs", "2", "--no-progress"]) == 0
    assert _bytes(tmp_path / "runs/orig/last.pt") == before  # the original is untouched
    assert load_checkpoint(tmp_path / "runs/branch/last.pt")["epoch"] == 2
    assert list((tmp_path / "elsewhere").iterdir()) == []  # no new folder where we stand
    # --output elsewhere with --resume: refused, nothing written there.
    assert main(["train", "--resume", "../runs/branch", "--output", "x", "--epochs", "3"]) == 2
    assert not Path("x").exists()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from convzoo.train.rundir import RunLock
    RunLock(sys.argv[1]).acquire()
    print("LOCKED", flush=True)
    time.sleep(120)
    """
)


def test_a_second_live_run_is_refused_and_a_stale_lock_recovered(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], env=env,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "LOCKED"
        assert main(_train_args(str(out))) == 2
        err = capsys.readouterr().err
        assert f"in use by another live run (pid {holder.pid} on" in err
        assert len(err.strip().splitlines()) == 1 and not (out / "last.pt").exists()
        with pytest.raises(RunInUse):
            RunLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK).is_file()  # left behind by the killed owner: stale
    assert main(_train_args(str(out))) == 0
    assert not (out / LOCK).exists() and (out / "last.pt").is_file()


class _Mkdir:
    """Unpickling this runs os.mkdir: what a crafted checkpoint could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil" / "last.pt"
    evil.parent.mkdir()
    torch.save({"model": {}, "config": _Mkdir(str(marker))}, evil)
    with pytest.raises(CheckpointError, match=r"not a convzoo checkpoint.*mkdir"):
        load_checkpoint(evil)
    for argv in (["eval", "--checkpoint", str(evil)], ["train", "--resume", str(evil.parent)],
                 ["predict", str(evil), "--checkpoint", str(evil)]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "not a convzoo checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()
    # A torch file of plain tensors that is not a training checkpoint: named as such.
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "weights.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "weights.pt")]) == 2
    assert "not a convzoo training checkpoint" in capsys.readouterr().err


def _tiny(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(model="nin_cifar", model_args={"blocks": ((3, 8, 8, 8),) * 2 + ((3, 8, 8, 0),),
                "batch_norm": True}, image_size=8, crop_padding=1, batch_size=16, epochs=1,
                max_train_samples=64, output=str(tmp_path / "run"), progress=False, plots=False)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_divergence_never_writes_a_non_finite_state(tmp_path):
    # lr 1e6 with BatchNorm: the statistics of the batch that diverges overflow first.
    cfg = _tiny(tmp_path, lr=1e6, weight_decay=0.0, epochs=3, checkpoint_every_steps=1)
    with pytest.raises(TrainingDiverged, match=r"not finite|loss is"):
        train(cfg)
    for name in ("last.pt", "prev.pt"):
        if (tmp_path / "run" / name).exists():
            state = load_checkpoint(tmp_path / "run" / name)
            for k, v in state["model"].items():
                assert torch.isfinite(v).all(), f"{name}: {k}"


def test_resume_after_divergence_applies_and_records_a_new_lr(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(_train_args(str(out), "--epochs", "2", "--lr", "0.1")) == 0
    # Continue to 3 epochs with a forward that returns NaN at the 2nd batch of epoch 3.
    calls = {"n": 0}

    def nan_after_one(module, args, output):
        if module.training and getattr(module, "model_name", None):
            calls["n"] += 1
            if calls["n"] == 2:
                return output * float("nan")
        return output

    handle = torch.nn.modules.module.register_module_forward_hook(nan_after_one)
    try:
        assert main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 3
    finally:
        handle.remove()
    err = capsys.readouterr().err
    assert "loss is nan" in err and f"--resume {out} --lr 0.01" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 2  # the last good state
    assert main(["train", "--resume", str(out), "--epochs", "3", "--lr", "0.01",
                 "--no-progress"]) == 0  # fmt: skip
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 3 and state["optimizer"]["param_groups"][0]["initial_lr"] == 0.01
    assert json.loads((out / "config.json").read_text())["lr"] == 0.01
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    changes = [r["changed"] for r in rows if r["kind"] == "resume"]
    assert changes[-1]["lr"] == {"was": 0.1, "now": 0.01}
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3]


def test_resume_with_another_batch_size_ends_the_schedule_on_time(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(str(out), "--epochs", "1", "--checkpoint-every-steps", "2")) == 0
    assert load_checkpoint(out / "prev.pt")["batch"] == 2  # a mid-epoch checkpoint
    assert main(["train", "--resume", str(out / "prev.pt"), "--batch-size", "7"]) == 2
    assert "cannot change batch_size in the middle of an epoch" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--batch-size", "7",
                 "--no-progress"]) == 0  # fmt: skip
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs[-1]["lr"] == 0.0  # cosine reaches its end with the new step count
    assert epochs[-1]["step"] == 2 * -(-64 // 7)


def test_resume_with_another_model_or_data_names_the_mismatch(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(str(out))) == 0
    assert main(["train", "resnet20_cifar", "--resume", str(out), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "with model 'resnet20_cifar': the run has 'nin_cifar'" in err
    assert len(err.strip().splitlines()) == 1
    data = tmp_path / "three"
    for c in ("a", "b", "c"):
        (data / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(data / c / f"{i}.png")
    assert main(["train", "--resume", str(out), "--epochs", "2", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "classes" in err and "differ" in err and len(err.strip().splitlines()) == 1


def test_disk_full_is_one_line_and_loses_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(_train_args(str(out))) == 0
    before = _bytes(out / "last.pt")

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_mod.torch, "save", full)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert _bytes(out / "last.pt") == before
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tmp") == []


def test_top5_is_reported_only_with_more_than_five_classes():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    batches = [(torch.randn(6, 4), torch.randint(0, 3, (6,)))]
    assert evaluate(model, batches, 3, torch.device("cpu"))["top5"] is None
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 8))
    batches = [(torch.randn(6, 4), torch.randint(0, 8, (6,)))]
    assert 0 <= evaluate(model, batches, 8, torch.device("cpu"))["top5"] <= 100


def test_predict_refuses_a_fifo_without_blocking(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(str(out))) == 0
    os.mkfifo(tmp_path / "pipe.png")
    assert main(["predict", str(tmp_path / "pipe.png"), "--checkpoint", str(out / "last.pt")]) == 2
    err = capsys.readouterr().err
    assert "pipe.png is not a regular file" in err and len(err.strip().splitlines()) == 1


class _Stop(Exception):
    pass


def test_worker_loader_run_resumes_exactly(tmp_path, monkeypatch):
    import numpy as np

    from convzoo.train import engine

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (10, 10, 3), np.uint8)).save(data / c / f"{i}.png")
    cfg = _tiny(tmp_path, data=str(data), loader="workers", workers=0, cutout=3, epochs=2,
                checkpoint_every_steps=1, batch_size=8, max_train_samples=None,
                output=str(tmp_path / "cut"))  # fmt: skip
    real_save = engine.save_checkpoint

    def save_then_stop(state, out):  # as if killed right after the checkpoint at (epoch 2, batch 2)
        path = real_save(state, out)
        if (state["epoch"], state["batch"]) == (1, 2):
            raise _Stop
        return path

    monkeypatch.setattr(engine, "save_checkpoint", save_then_stop)
    with pytest.raises(_Stop):
        train(cfg)
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    train(cfg, resume=True)
    train(TrainConfig(**{**cfg.to_dict(), "output": str(tmp_path / "full"), "betas": cfg.betas}))
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("cut", "full"))
    assert a["step"] == b["step"]
    for k in b["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
