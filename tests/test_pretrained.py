"""Pretrained weights without network: files placed where torchvision's and timm's own loaders
look (their caches, redirected to a temporary directory), so the real loading code runs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import urllib.error
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import convzoo
from convzoo import registry
from convzoo.cli import main
from convzoo.interop.convert import random_source
from convzoo.interop.core import randomize_
from convzoo.pretrained import (
    NETWORK_TIMEOUT_S,
    PretrainedError,
    list_pretrained,
    preprocess_transform,
    published_weights,
)
from convzoo.train.checkpoint import rng_state, save_checkpoint
from convzoo.train.config import TrainConfig
from convzoo.train.inference import class_indices

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


def _place_torchvision(
    name: str, edit: Callable[[torch.nn.Module], None] | None = None
) -> torch.nn.Module:
    """torchvision's ``name`` with random weights (changed by ``edit``), saved where its weights
    enum looks for the file."""
    source, state = _random_state("torchvision", name)
    if edit is not None:
        with torch.no_grad():
            edit(source)  # the state dict holds the same tensors
    url = published_weights(name, "torchvision").location
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    path.parent.mkdir(parents=True, exist_ok=True)  # a failed fetch may have made it
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


def _noise_images(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        size = (40 + 10 * i, 60)
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    """``convzoo ARGV`` fails with exit status 2 and one line naming ``expect``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(expect, err), err


def _boost_tench(model: torch.nn.Module) -> None:
    model.fc.bias[0] += 20.0  # class 0 (tench) wins on every image


def test_cli_eval_with_pretrained_weights(caches, tmp_path, capsys):
    """The weights' preprocessing, class folders matched by name and by WordNet ID (goldfish is
    class 1, n01443537), the model's own loss and accuracy, printed."""
    source = _place_torchvision("resnet18", _boost_tench).eval()
    data = tmp_path / "data"
    images = {0: _noise_images(data / "val" / "tench", 2, 0)}
    images[1] = _noise_images(data / "val" / "n01443537", 2, 1)
    argv = ["eval", "resnet18", "--pretrained", "--data", str(data), "--workers", "0"]
    argv += ["--batch-size", "3", "--output", str(tmp_path / "out")]

    def expected(prep) -> tuple[float, float]:
        transform = preprocess_transform(prep)
        x = torch.stack(
            [transform(Image.open(p).convert("RGB")) for ps in images.values() for p in ps]
        )
        y = torch.tensor([label for label, ps in images.items() for _ in ps])
        with torch.no_grad():
            logits = source(x)
        return float(F.cross_entropy(logits, y)), float(
            (logits.argmax(1) == y).double().mean() * 100
        )

    for extra in ([], ["--resize", "72", "--crop", "64", "--interpolation", "bicubic"]):
        assert main(argv + extra) == 0
        out = capsys.readouterr().out.splitlines()
        head = re.fullmatch(
            r"4 images \((.+) weights\): top-1 ([\d.]+)%  top-5 [\d.]+%  loss ([\d.]+)", out[0]
        )
        assert head is not None, out[0]
        prep = published_weights("resnet18", "torchvision").preprocess
        if extra:
            prep = dataclasses.replace(prep, resize=72, crop=64, interpolation="bicubic")
            assert "resize 72 (bicubic), center crop 64" in out[1]
        else:
            assert "resize 256 (bilinear), center crop 224" in out[1]
        loss, top1 = expected(prep)
        assert head[1] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
        assert float(head[2]) == pytest.approx(top1) and top1 == 50.0  # every image "tench"
        assert float(head[3]) == pytest.approx(loss, abs=1e-4)
        assert [line.split() for line in out[2:4]] == [["n01443537", "0.00%"], ["tench", "100.00%"]]
        assert (tmp_path / "out" / "confusion.png").is_file()


def test_cli_eval_with_pretrained_refuses_in_one_line(caches, tmp_path, capsys):
    data = tmp_path / "data"
    _noise_images(data / "tench", 1, 0)
    _noise_images(data / "not_a_class", 1, 1)
    base = ["eval", "resnet18", "--data", str(data), "--workers", "0"]
    _one_line_error(
        capsys, [*base, "--pretrained", "torchvison"], "unknown weights source 'torchvison'"
    )
    _one_line_error(capsys, ["eval", "resnet20_cifar", "--pretrained", "--data", str(data)],
                    "resnet20_cifar has no published weights")  # fmt: skip
    # Not in the cache and no network: the URL and the cache path, at once.
    _one_line_error(capsys, [*base, "--pretrained"], r"resnet18-f37072fd\.pth.*absent")
    _one_line_error(capsys, [*base, "--pretrained", "--checkpoint", "last.pt"],
                    "--pretrained and --checkpoint")  # fmt: skip
    _one_line_error(capsys, [*base, "--pretrained", "--split", "test"], "--split")
    _one_line_error(capsys, ["eval", "resnet18", "--pretrained"], "needs --data")
    _one_line_error(capsys, ["eval", "--pretrained", "--data", str(data)], "needs the model")
    _one_line_error(capsys, [*base, "--checkpoint", "last.pt", "--crop", "64"], "--crop")
    _place_torchvision("resnet18")
    _one_line_error(capsys, [*base, "--pretrained", "--mean", "0.5"], "mean needs 3 values")
    _one_line_error(capsys, [*base, "--pretrained"],
                    r"1 of the data's 2 class folders name no class of resnet18's torchvision "
                    r"weights \(1000 classes\): 'not_a_class'")  # fmt: skip


def test_class_folders_match_the_weights_classes_by_name():
    names = convzoo.pretrained._imagenet_classes()
    wnids = convzoo.pretrained.imagenet_wnids()
    assert wnids[:2] == ("n01440764", "n01443537") and sorted(wnids) == list(wnids)
    assert class_indices(["goldfish", "n01440764"], names, "w") == [1, 0]
    with pytest.raises(ValueError, match=r"'goldfish' and 'n01443537' are the same class"):
        class_indices(["goldfish", "n01443537"], names, "w")
    with pytest.raises(ValueError, match=r"2 of the data's 3 class folders .* 'a', 'b'"):
        class_indices(["a", "b", "tench"], names, "w")
    # A checkpoint's own class names; more folders than classes cannot all match.
    with pytest.raises(ValueError, match=r"1 of the data's 3 .*\(2 classes\): 'frog'"):
        class_indices(["cat", "dog", "frog"], ["cat", "dog"], "w")
    with pytest.raises(ValueError, match="carry no class names"):
        class_indices(["cat"], None, "w")


def test_wordnet_folders_without_timm_s_table(monkeypatch):
    """ImageNet's class indices are its sorted WordNet IDs: all 1000 folders match by position;
    a subset cannot be placed without the table."""
    wnids = convzoo.pretrained.imagenet_wnids()
    names = convzoo.pretrained._imagenet_classes()
    monkeypatch.setattr(convzoo.pretrained, "imagenet_wnids", lambda: None)
    assert class_indices(list(wnids), names, "w") == list(range(1000))
    with pytest.raises(ValueError, match=r"cover 10 of the 1000 .*pip install timm"):
        class_indices(list(wnids[:10]), names, "w")


def test_cli_bench_with_pretrained_weights(caches, tmp_path, capsys, monkeypatch):
    import convzoo.bench.cli as bench_cli

    source = _place_torchvision("resnet18").eval()
    real = bench_cli.bench_models
    seen = {}

    def bench_models(specs, cfg, progress=None):
        (spec,) = specs
        seen["input_size"] = spec.input_size
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():  # the first build hands over the loaded model; the bench rebuilds it
            torch.testing.assert_close(spec.build().eval()(x), source(x), rtol=0, atol=1e-5)
        return real(specs, cfg, progress)

    monkeypatch.setattr(bench_cli, "bench_models", bench_models)
    argv = ["bench", "resnet18", "--pretrained", "torchvision", "--batch-sizes", "1"]
    argv += ["--repeats", "1", "--warmup", "0", "--min-repeat-s", "0"]
    argv += ["--output", str(tmp_path / "bench")]
    assert main(argv) == 0
    assert seen["input_size"] == 224  # the weights' crop
    assert (
        "resnet18: weights: torchvision ResNet18_Weights.IMAGENET1K_V1" in capsys.readouterr().out
    )
    (model,) = json.loads(next((tmp_path / "bench").glob("*.json")).read_text())["models"]
    assert model["weights"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert model["batches"][0]["max_abs_diff_vs_eager"] < 1e-4 and not model["errors"]


def test_cli_bench_with_pretrained_refuses_in_one_line(caches, tmp_path, capsys):
    base = ["bench", "resnet18", "--batch-sizes", "1", "--output", str(tmp_path / "bench")]
    _one_line_error(capsys, [*base, "--pretrained", "timmm"], "unknown weights source 'timmm'")
    _one_line_error(capsys, ["bench", "shufflenet_g1", "--pretrained"],
                    "shufflenet_g1 has no published weights")  # fmt: skip
    _one_line_error(capsys, [*base, "--pretrained"], r"resnet18-f37072fd\.pth.*absent")
    _one_line_error(capsys, [*base, "--pretrained", "--tiny"], "--tiny")
    with pytest.raises(SystemExit) as exit_:  # bench takes a checkpoint as --pretrained PATH
        main([*base, "--pretrained", "--checkpoint", "last.pt"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--checkpoint" in err
    assert not (tmp_path / "bench").exists()  # nothing was timed


def test_fetch_sets_a_network_timeout(caches, monkeypatch):
    """torch.hub's urlopen has no timeout of its own: a fetch runs under one, and restores the
    default afterwards."""
    seen = []

    def download(url, *args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    socket.setdefaulttimeout(None)  # the caches fixture restores its own value afterwards
    with pytest.raises(PretrainedError):
        convzoo.create_model("resnet18", pretrained=True)
    assert seen == [NETWORK_TIMEOUT_S] and socket.getdefaulttimeout() is None


def test_a_config_s_own_in_channels_stands(monkeypatch, tmp_path):
    """create_model's in_channels defaults to the config's value (a one-channel config stays one
    channel, here and when its checkpoint loads as pretrained weights)."""
    entry = registry.get_entry("resnet20_cifar")
    config = dataclasses.replace(entry.config, in_channels=1)
    info = dataclasses.replace(entry.info, name="gray_resnet20_cifar", in_channels=1)
    gray = registry.RegisteredModel("gray_resnet20_cifar", entry.builder, config, info, entry.tiny)
    monkeypatch.setitem(registry._REGISTRY, "gray_resnet20_cifar", gray)
    trained = randomize_(convzoo.create_model("gray_resnet20_cifar"))
    assert trained.in_channels == 1
    assert convzoo.create_model("gray_resnet20_cifar", in_channels=3).in_channels == 3
    state = {
        "model": trained.state_dict(),
        "config": TrainConfig(model="gray_resnet20_cifar").to_dict(),
        "classes": [str(i) for i in range(10)],
        "mean": [0.5],
        "std": [0.25],
        "image_size": 32,
    }
    path = save_checkpoint(state, tmp_path)
    model = convzoo.create_model("gray_resnet20_cifar", pretrained=path)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), trained.eval()(x))
