"""int8 calibration images are normalized as the model expects its input: by its published
weights' (or its training checkpoint's) mean and std, else by the images' own statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
import convzoo.bench.quantize as quantize
from convzoo.bench.quantize import (
    OWN_STATISTICS,
    Normalization,
    calibration_images,
    model_normalization,
    normalization_record,
)
from convzoo.bench.runner import BenchConfig, ModelSpec, bench_model
from convzoo.data.datasets import channel_stats
from convzoo.interop.export import ExportConfig, export_model
from convzoo.pretrained import Preprocess, PretrainedWeights
from convzoo.train.checkpoint import save_checkpoint
from convzoo.train.config import TrainConfig

IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "torchvision W")


def _with_weights(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                  library: str = "torchvision", weights: str = "W") -> nn.Module:  # fmt: skip
    prep = Preprocess(resize=16, crop=16, interpolation="bilinear", mean=mean, std=std)
    model.pretrained_cfg = PretrainedWeights(library, weights, "-", prep, None)
    return model


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()  # fmt: skip


def test_model_normalization_reads_pretrained_cfg():
    model = _with_weights(_net(), IMAGENET.mean, IMAGENET.std)
    assert model_normalization(model) == IMAGENET
    assert model_normalization(_net()) is None  # random weights: nothing to follow
    # a checkpoint saved without mean and std records empty tuples
    assert model_normalization(_with_weights(_net(), (), (), "checkpoint", "last.pt")) is None
    assert normalization_record(None) == {"source": OWN_STATISTICS}
    assert normalization_record(IMAGENET)["mean"] == [0.485, 0.456, 0.406]


def test_a_training_checkpoint_gives_its_training_normalization(tmp_path):
    state = {
        "model": convzoo.create_model("resnet20_cifar", num_classes=3).state_dict(),
        "config": TrainConfig(model="resnet20_cifar").to_dict(),
        "classes": ["a", "b", "c"],
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.25, 0.3],
        "image_size": 32,
    }
    path = save_checkpoint(state, tmp_path)
    model = convzoo.create_model("resnet20_cifar", pretrained=str(path))
    assert model_normalization(model) == Normalization(
        (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), f"checkpoint {path}"
    )


def test_calibration_follows_the_models_normalization():
    """The same images, normalized by the weights' constants: undoing that normalization gives
    the 0..1 pixels back, whose own-statistics normalization is the default calibration."""
    own = calibration_images(size=16, count=40)
    given = calibration_images(size=16, count=40, normalization=IMAGENET)
    mean, std = (
        torch.tensor(IMAGENET.mean).view(1, 3, 1, 1),
        torch.tensor(IMAGENET.std).view(1, 3, 1, 1),
    )
    pixels = given * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    u8 = (pixels * 255).round()
    assert torch.allclose(pixels * 255, u8, atol=1e-3)  # whole 8-bit levels: the same images
    m, s = channel_stats(u8.to(torch.uint8))
    manual = (u8 / 255 - torch.tensor(m).view(1, 3, 1, 1)) / torch.tensor(s).view(1, 3, 1, 1)
    assert torch.allclose(own, manual, atol=1e-5)
    # own-normalized images are centred per channel; ImageNet-normalized digits are not
    assert own.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert given.mean(dim=(0, 2, 3)).abs().min() > 0.3


def test_a_normalization_for_other_channels_is_one_clear_error():
    gray = Normalization((0.5,), (0.25,), "checkpoint gray.pt")
    with pytest.raises(ValueError, match=r"checkpoint gray.pt has 1 channels; .* have 3"):
        calibration_images(size=8, count=10, normalization=gray)
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalization((0.5,), (0.0,), "x")


@pytest.fixture
def captured(monkeypatch):
    """The calibration tensor every ``quantize_onnx`` call receives (the call still runs)."""
    seen: list[torch.Tensor] = []
    real = quantize.quantize_onnx

    def spy(fp32, out, calibration, **kwargs):
        seen.append(calibration)
        return real(fp32, out, calibration, **kwargs)

    monkeypatch.setattr(quantize, "quantize_onnx", spy)
    return seen


def test_bench_int8_calibrates_with_the_weights_normalization_and_says_so(captured):
    pytest.importorskip("onnxruntime")
    cfg = BenchConfig(batch_sizes=(2,), runtimes=("onnxruntime-int8",), warmup=0, repeats=1,
                      min_repeat_s=0, threads=1, calibration_images=20)  # fmt: skip
    spec = ModelSpec("net", lambda: _with_weights(_net(), IMAGENET.mean, IMAGENET.std), 16)
    (cell,) = bench_model(spec, cfg)["batches"]
    assert cell["settings"]["calibration_normalization"] == {
        "source": "torchvision W", "mean": list(IMAGENET.mean), "std": list(IMAGENET.std)
    }  # fmt: skip
    want = calibration_images(size=16, count=20, normalization=IMAGENET)
    assert len(captured) == 1 and torch.equal(captured[0], want)

    plain = bench_model(ModelSpec("net", _net, 16), cfg)["batches"][0]
    assert plain["settings"]["calibration_normalization"] == {"source": OWN_STATISTICS}
    assert torch.equal(captured[1], calibration_images(size=16, count=20))


def test_export_int8_calibrates_with_the_weights_normalization(captured, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _with_weights(_net(), IMAGENET.mean, IMAGENET.std)
    cfg = ExportConfig("net", tmp_path / "net.onnx", int8=True, calibration_images=20)
    export_model(model, cfg, input_size=16)
    want = calibration_images(size=16, count=20, normalization=IMAGENET)
    assert len(captured) == 1 and torch.equal(captured[0], want)
