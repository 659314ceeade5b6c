"""Class activation maps: CAM / Grad-CAM maths, and maps that find a learned synthetic object."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo
from conftest import tiny_input, tiny_model
from convzoo.cli import main
from convzoo.lab.cam import class_activation_map, has_linear_gap_head, upsample

COLOURS = {"blue": (30, 30, 230), "red": (230, 30, 30)}
SQUARE = 8  # pixels


def _image(rng: np.random.Generator, colour: str, y: int, x: int) -> Image.Image:
    a = rng.integers(0, 100, (32, 32, 3), dtype=np.uint8)  # dim noise
    a[y : y + SQUARE, x : x + SQUARE] = COLOURS[colour]
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """resnet20 (one block per stage) trained 4 epochs to tell a red from a blue square."""
    from convzoo.train.config import make_config
    from convzoo.train.engine import train

    root = tmp_path_factory.mktemp("cam")
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        folder = root / "data" / "train" / colour
        folder.mkdir(parents=True)
        for i in range(200):
            y, x = rng.integers(0, 32 - SQUARE + 1, 2)
            _image(rng, colour, int(y), int(x)).save(folder / f"{i}.png")
    cfg = make_config(model="resnet20_cifar", model_args={"layers": (1, 1, 1)},
                      data=str(root / "data"), epochs=4, batch_size=32, lr=0.05, seed=0,
                      output=str(root / "run"), progress=False, plots=False, device="cpu",
                      crop_padding=0, hflip=False)  # fmt: skip
    final = train(cfg)
    assert final["val_acc"] > 90
    return root, rng


# Squares in the corners, the centre and off-centre; their colours alternate.
POSITIONS = [(0, 0), (0, 24), (24, 0), (24, 24), (12, 12), (4, 18)]


@pytest.mark.parametrize("method", ["auto", "gradcam"])
def test_cli_cam_peaks_on_the_object(trained, method, capsys):
    root, rng = trained
    paths = []
    for i, (y, x) in enumerate(POSITIONS):
        path = root / f"{method}{i}.png"
        _image(rng, "red" if i % 2 else "blue", y, x).save(path)
        paths.append(str(path))
    ckpt = str(root / "run" / "last.pt")
    out = root / f"cam_{method}.png"
    argv = ["cam", *paths, "--model", "resnet20_cifar,resnet20_cifar", "--checkpoint",
            f"{ckpt},{ckpt}", "--method", method, "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert out.stat().st_size > 0
    results = json.loads(out.with_suffix(".json").read_text())
    assert len(results) == 2 * len(POSITIONS)
    printed = capsys.readouterr().out
    for i, r in enumerate(results):
        y, x = POSITIONS[i // 2]
        assert r["method"] == ("CAM" if method == "auto" else "Grad-CAM")
        assert r["class_name"] == ("red" if (i // 2) % 2 else "blue")
        # Peak to square centre, Chebyshev pixels: at most 3.5 over seeds 0-2 (the square's
        # half-width); 6 leaves margin. A map that ignored the square would peak anywhere.
        centre = SQUARE / 2 - 0.5
        assert max(abs(r["peak_row"] - y - centre), abs(r["peak_col"] - x - centre)) <= 6, r
        assert f"peak at row {r['peak_row']}, col {r['peak_col']}" in printed


def test_cam_is_the_logit_map_and_gradcam_agrees_on_a_linear_head():
    torch.manual_seed(0)
    model = convzoo.create_model("resnet20_cifar", layers=(1, 1, 1)).eval()
    assert has_linear_gap_head(model)
    x = torch.randn(1, 3, 32, 32)
    cam, logits, method = class_activation_map(model, x, target=3, method="cam")
    assert method == "CAM" and cam.shape == (8, 8)
    # Zhou et al.: the spatial mean of M_c plus the bias is logit c.
    torch.testing.assert_close(cam.mean() + model.head.fc.bias[3], logits[3])
    grad, _, method = class_activation_map(model, x, target=3, method="gradcam")
    assert method == "Grad-CAM"
    # d logit / d f_k(x, y) = w_k / (h w): Grad-CAM = ReLU(CAM) / (h w).
    torch.testing.assert_close(grad, torch.relu(cam) / 64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["convnext_tiny", "nin_cifar", "squeezenet1_1", "efficientnet_b0"])
def test_every_head_gets_a_map(name):
    model = tiny_model(name).eval()
    x = tiny_input(name, batch=1)
    size = x.shape[-1]
    cam, _, method = class_activation_map(model, x)
    feats = model.forward_features(x)
    assert cam.shape == feats.shape[-2:]
    assert method == ("CAM" if has_linear_gap_head(model) else "Grad-CAM")
    assert method == "CAM" or (cam >= 0).all()  # Grad-CAM's ReLU
    up = upsample(cam, (size, size))
    assert up.shape == (size, size) and float(up.min()) >= 0 and float(up.max()) <= 1


def test_cli_cam_bad_input_is_one_line(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    cases = [
        (["cam", str(img), "--model", "resnet18"], "either --checkpoint"),
        (["cam", str(img), "--checkpoint", "a.pt", "--pretrained", "--model", "x"], "either"),
        (["cam", str(img), "--checkpoint", str(tmp_path / "missing.pt")], "missing.pt"),
        (["cam", str(img), "--model", "a,b", "--checkpoint", "c.pt"], "one checkpoint per model"),
    ]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_cli_cam_pretrained_goes_through_create_model(tmp_path, monkeypatch):
    from convzoo.lab import cam
    from convzoo.pretrained import Preprocess, PretrainedWeights

    calls = []

    def fake_create_model(name, pretrained=False):
        calls.append((name, pretrained))
        model = tiny_model("resnet20_cifar")
        prep = Preprocess(resize=32, crop=32, interpolation="bilinear", mean=(0.5,) * 3,
                          std=(0.25,) * 3)  # fmt: skip
        names = tuple(f"c{i}" for i in range(10))
        model.pretrained_cfg = PretrainedWeights("checkpoint", "w", "w", prep, names)
        return model

    monkeypatch.setattr(cam, "create_model", fake_create_model)
    img = tmp_path / "a.png"
    _image(np.random.default_rng(0), "red", 4, 4).save(img)
    out = tmp_path / "cam.png"
    argv = ["cam", str(img), "--model", "resnet20_cifar", "--pretrained", "--output", str(out)]
    assert main(argv) == 0
    assert calls == [("resnet20_cifar", True)]
    (result,) = json.loads(out.with_suffix(".json").read_text())
    assert result["class_name"] == f"c{result['class_index']}" and result["method"] == "CAM"
