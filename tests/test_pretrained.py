"""Pretrained weights without network: files placed where torchvision's and timm's own loaders
look (their caches, redirected to a temporary directory), so the real loading code runs."""

from __future__ import annotations

import os
import socket
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo
from convzoo.cli import main
from convzoo.interop.convert import random_source
from convzoo.interop.core import randomize_
from convzoo.pretrained import (
    PretrainedError,
    list_pretrained,
    preprocess_transform,
    published_weights,
)
from convzoo.train.checkpoint import rng_state, save_checkpoint
from convzoo.train.config import TrainConfig

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
safetensors_torch = pytest.importorskip("safetensors.torch")
hf_constants = pytest.importorskip("huggingface_hub.constants")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches under tmp_path, and no network for either."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these at import time; timm has imported it already.
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network in tests ({url})")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    # Should a code path still open a socket, it fails within seconds instead of hanging.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5.0)
    yield tmp_path
    socket.setdefaulttimeout(previous)


def _random_state(library: str, arch: str) -> tuple[torch.nn.Module, dict]:
    model = random_source(library, arch)
    return model, model.state_dict()


def _place_torchvision(name: str) -> torch.nn.Module:
    source, state = _random_state("torchvision", name)
    url = published_weights(name, "torchvision").location
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return source


def _place_timm(name: str) -> torch.nn.Module:
    weights = published_weights(name, "timm")
    source, state = _random_state("timm", weights.weights.split(".")[0])
    revision = "0" * 40
    repo = Path(hf_constants.HF_HUB_CACHE) / f"models--{weights.location.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    safetensors_torch.save_file(state, repo / "snapshots" / revision / "model.safetensors")
    return source


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b.eval()(x), a.eval()(x), rtol=0, atol=1e-5)


def test_torchvision_weights_from_the_torch_hub_cache(caches):
    source = _place_torchvision("resnet18")
    model = convzoo.create_model("resnet18", pretrained=True)
    _same_outputs(source, model)
    cfg = model.pretrained_cfg
    assert cfg.library == "torchvision" and cfg.weights == "ResNet18_Weights.IMAGENET1K_V1"
    assert (cfg.preprocess.resize, cfg.preprocess.crop) == (256, 224)
    assert cfg.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert len(cfg.class_names) == 1000 and cfg.class_names[0] == "tench"


def test_timm_weights_from_the_hugging_face_cache(caches):
    """MobileNet v1 is not in torchvision: pretrained=True takes timm's weights."""
    source = _place_timm("mobilenet_v1")
    model = convzoo.create_model("mobilenet_v1", pretrained=True)
    _same_outputs(source, model)
    cfg = model.pretrained_cfg
    assert cfg.library == "timm" and cfg.location.startswith("timm/mobilenetv1_100.")
    assert cfg.preprocess.interpolation in {"bilinear", "bicubic"}
    assert len(cfg.class_names) == 1000


def test_pretrained_with_new_classes_replaces_the_classifier(caches):
    source = _place_torchvision("resnet18")
    model = convzoo.create_model("resnet18", pretrained="torchvision", num_classes=5)
    assert model.num_classes == 5 and model.pretrained_cfg.class_names is None
    assert torch.equal(model.stem[0][0].weight, source.conv1.weight)


def test_missing_timm_file_offline_names_hub_id_and_cache(caches):
    with pytest.raises(PretrainedError, match=r"timm/mobilenetv1_100\..*cache .*hf"):
        convzoo.create_model("mobilenet_v1", pretrained="timm")


def test_missing_torchvision_file_names_url_and_cache_path(caches):
    with pytest.raises(PretrainedError) as err:
        convzoo.create_model("resnet18", pretrained=True)
    message = str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_no_published_weights_lists_the_models_that_have_them():
    with pytest.raises(PretrainedError, match=r"resnet20_cifar has no published weights.*resnet50"):
        convzoo.create_model("resnet20_cifar", pretrained=True)
    with pytest.raises(PretrainedError, match=r"mobilenet_v1 has no torchvision weights"):
        convzoo.create_model("mobilenet_v1", pretrained="torchvision")


def test_list_pretrained():
    names = list_pretrained()
    assert {"resnet50", "efficientnet_b7", "mobilenet_v1", "fbnet_c", "nfnet_f0"} <= set(names)
    assert {"nf_resnet50", "convnext_xlarge", "squeezenet1_1"} <= set(names)
    assert not {"resnet20_cifar", "mobilenet_v1_075", "fbnet_a", "shufflenet_g1"} & set(names)
    assert set(list_pretrained("timm")) <= set(names)


def test_train_checkpoint_as_pretrained(tmp_path):
    trained = convzoo.create_model("resnet20_cifar", num_classes=3)
    randomize_(trained)
    cfg = TrainConfig(model="resnet20_cifar")
    state = {
        "model": trained.state_dict(),
        "config": cfg.to_dict(),
        "classes": ["cat", "dog", "frog"],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "image_size": 32,
        "rng": rng_state(),  # numpy arrays: loaded with weights_only=True all the same
    }
    path = save_checkpoint(state, tmp_path)
    model = convzoo.create_model("resnet20_cifar", pretrained=str(path))
    _same_outputs(trained, model)
    assert model.pretrained_cfg.class_names == ("cat", "dog", "frog")
    assert model.pretrained_cfg.preprocess.crop == 32
    # A backbone with the trained weights: its last map is the trained model's feature map.
    backbone = convzoo.create_model("resnet20_cifar", pretrained=path, features_only=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(x)[-1], trained.eval().forward_features(x))
    with pytest.raises(
        PretrainedError, match=r"holds a 'resnet20_cifar' model, not 'resnet32_cifar'"
    ):
        convzoo.create_model("resnet32_cifar", pretrained=path)
    with pytest.raises(PretrainedError, match=r"no such file"):
        convzoo.create_model("resnet20_cifar", pretrained=tmp_path / "missing.pt")


def test_torch_hub_load_from_the_repository(caches):
    source = _place_torchvision("resnet18")
    model = torch.hub.load(str(REPO), "resnet18", pretrained=True, source="local")
    _same_outputs(source, model)
    fresh = torch.hub.load(str(REPO), "resnet20_cifar", source="local", num_classes=4)
    assert fresh.num_classes == 4 and not hasattr(fresh, "pretrained_cfg")


def test_public_subpackages_reachable_after_import():
    assert callable(convzoo.interop.from_torchvision)
    assert callable(convzoo.pretrained.load_pretrained)
    assert convzoo.train.checkpoint is not None and convzoo.bench is not None


def test_readme_lists_exactly_the_models_with_published_weights(capsys):
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- pretrained-list:start -->\n```text\n")[1].split("```")[0]
    assert main(["list", "--pretrained"]) == 0
    assert block == capsys.readouterr().out, "README: paste `convzoo list --pretrained`"


def test_cli_predict_with_pretrained_weights(caches, tmp_path, capsys):
    source = _place_torchvision("resnet18")
    image = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)).save(image)
    assert main(["predict", str(image), "--model", "resnet18", "--pretrained", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The class the source itself ranks first, computed with the weights' own preprocessing.
    x = preprocess_transform(published_weights("resnet18", "torchvision").preprocess)(
        Image.open(image).convert("RGB")
    )
    with torch.no_grad():
        best = int(source(x[None]).argmax())
    assert lines[0] == str(image) and len(lines) == 4
    assert lines[1].endswith(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"][best])
    assert main(["predict", str(image), "--pretrained"]) == 2  # no --model: one-line error


def test_train_starts_from_pretrained_weights_but_a_resume_does_not_refetch(tmp_path):
    from convzoo.train.state import build_model

    trained = convzoo.create_model("resnet20_cifar", num_classes=3)
    randomize_(trained)
    state = {
        "model": trained.state_dict(),
        "config": TrainConfig(model="resnet20_cifar").to_dict(),
        "classes": ["cat", "dog", "frog"],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "image_size": 32,
        "rng": rng_state(),
    }
    path = save_checkpoint(state, tmp_path)
    cfg = TrainConfig(model="resnet20_cifar", pretrained=str(path))
    # Ten classes on a three-class checkpoint: the backbone is kept, the classifier is new.
    fresh = build_model(cfg, 10)
    assert fresh.num_classes == 10
    for key, value in trained.stages.state_dict().items():
        torch.testing.assert_close(fresh.stages.state_dict()[key], value)
    resumed = build_model(cfg, 10, fresh=False)
    first = next(iter(trained.stem.state_dict()))
    assert not torch.equal(resumed.stem.state_dict()[first], trained.stem.state_dict()[first])
    path.unlink()  # a resume must not need the file any more
    build_model(cfg, 10, fresh=False)
