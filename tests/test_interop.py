"""Conversions from torchvision and timm: right with no overrides, and wrong sources caught.

Every architecture a library shares with us converts from a source with random weights and random
BatchNorm statistics (``randomize_``: nothing downloads, and no branch sits at an init value that
would hide a mis-mapped tensor), with no overrides, and matches on a tiny input to float32
precision. By default one small member per family runs (``FAST``); the others, which share its key
mapping, run under ``-m slow``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.interop import from_timm, from_torchvision
from convzoo.interop.convert import random_source, shared_models, source_name
from convzoo.interop.core import randomize_, tolerance

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

# By default the smallest member of each family (and each block type: basic/bottleneck ResNet,
# MobileNet v3 small's SE blocks); the larger members share their family's key mapping and run
# under -m slow (bigger models: up to 40 s each on one core, BENCHMARKS.md "Weight conversion").
FAST: dict[str, set[str]] = {
    "torchvision": {"resnet18", "resnet50", "resnext50_32x4d", "densenet121", "efficientnet_b0"}
    | {"mobilenet_v2", "mobilenet_v3_small", "convnext_tiny", "shufflenet_v2_x0_5"}
    | {"squeezenet1_0", "squeezenet1_1"},
    "timm": {"resnet18", "resnext50_32x4d", "densenet121", "efficientnet_b0", "mobilenet_v1"}
    | {"mobilenet_v2", "mobilenet_v3_small", "fbnet_c", "convnext_tiny", "nf_resnet50"}
    | {"nfnet_f0"},
}


def _cases(library: str) -> list:
    return [
        name if name in FAST[library] else pytest.param(name, marks=pytest.mark.slow)
        for name in shared_models(library)
    ]


def _assert_same_function(source: nn.Module, model: nn.Module) -> None:
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = source(x), model.eval()(x)
    assert want.abs().max() > 1e-2  # a non-trivial function
    assert (got - want).abs().max().item() <= tolerance(want, relative=1e-5)


@pytest.mark.parametrize("name", _cases("torchvision"))
def test_torchvision_converts_with_no_overrides(name):
    source = random_source("torchvision", source_name(name, "torchvision"))
    _assert_same_function(source, from_torchvision(name, source))


@pytest.mark.parametrize("name", _cases("timm"))
def test_timm_converts_with_no_overrides(name):
    source = random_source("timm", source_name(name, "timm"))
    _assert_same_function(source, from_timm(name, source))


def test_shared_architectures_cover_what_the_libraries_have():
    # The families each library shares with us (a regression here is a lost conversion).
    assert {"resnet18", "efficientnet_b0", "mobilenet_v3_small", "squeezenet1_1"} <= set(
        shared_models("torchvision")
    )
    assert {"resnet18", "densenet121", "efficientnet_b0", "mobilenet_v1", "mobilenet_v2"} | {
        "mobilenet_v3_large",
        "fbnet_c",
        "convnext_tiny",
        "nf_resnet50",
        "nfnet_f0",
    } <= set(shared_models("timm"))


@pytest.mark.parametrize("timm_name", ["nfnet_f0", "dm_nfnet_f0"])
def test_both_timm_nfnet_parametrizations_convert(timm_name):
    """timm's own ``nfnet_f0`` folds gamma into the convs and has no skip gain (see
    interop/nfnet.py); ``dm_nfnet_f0`` is the reference parametrization."""
    source = random_source("timm", timm_name)
    _assert_same_function(source, from_timm("nfnet_f0", source))


def test_config_is_read_off_the_source():
    """The traps of the old conversion: torchvision B0 uses BN eps 1e-5 (ours 1e-3), timm's
    MobileNet v1 ReLU6 (ours ReLU), timm's nf_resnet50 symmetric padding and pooled shortcuts."""
    b0 = from_torchvision("efficientnet_b0", random_source("torchvision", "efficientnet_b0"))
    assert {m.eps for m in b0.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}
    v1 = from_timm("mobilenet_v1", random_source("timm", "mobilenetv1_100"))
    assert any(isinstance(m, nn.ReLU6) for m in v1.modules())
    assert not any(type(m) is nn.ReLU for m in v1.modules())
    nf = from_timm("nf_resnet50", random_source("timm", "nf_resnet50"))
    assert not any(getattr(m, "same", False) for m in nf.modules())


def test_num_classes_follows_the_source():
    source = random_source("timm", "resnet18")
    source.reset_classifier(7)
    randomize_(source.fc)
    model = from_timm("resnet18", source)
    assert model.num_classes == 7
    _assert_same_function(source, model)


def test_wrong_variant_is_rejected_naming_the_keys():
    with pytest.raises(
        ValueError, match=r"different architecture or variant.*unexpected \['stages\.0\.2\."
    ):
        from_torchvision("resnet18", random_source("torchvision", "resnet34"))


def test_changed_eps_is_caught_by_the_probe():
    source = random_source("torchvision", "resnet18")
    source.layer2[0].bn1.eps = 1e-1  # one layer unlike the others: no config can express it
    with pytest.raises(ValueError, match=r"max abs .*BatchNorm eps: source uses \{1e-05, 0\.1\}"):
        from_torchvision("resnet18", source)
    # The opt-out skips the forward pass (for huge models) and returns the model unchecked.
    assert from_torchvision("resnet18", source, check=False).num_classes == 1000


def test_same_padding_source_is_caught_by_the_probe():
    """timm's tf_efficientnet_b0 has our B0's weights but TF SAME padding, which our
    EfficientNet does not implement: the probe names the padding."""
    source = random_source("timm", "tf_efficientnet_b0")
    with pytest.raises(ValueError, match=r"padding: the source uses TF 'SAME'"):
        from_timm("efficientnet_b0", source)


def test_wrong_override_is_caught_by_the_probe():
    source = random_source("timm", "nf_resnet50")
    with pytest.raises(ValueError, match=r"disagrees with the source by max abs"):
        from_timm("nf_resnet50", source, shortcut_pool=False)


def test_family_without_a_converter_names_the_ones_that_exist():
    with pytest.raises(ValueError, match=r"no timm conversion for family 'squeezenet'.*resnet"):
        from_timm("squeezenet1_0", random_source("torchvision", "squeezenet1_0"))


def test_converted_model_owns_trainable_copies_and_source_mode_is_kept():
    source = random_source("torchvision", "resnet18").train()
    model = from_torchvision("resnet18", source)
    assert source.training  # the probe ran in eval mode and put the mode back
    ours, theirs = dict(model.named_parameters()), dict(source.named_parameters())
    assert all(p.requires_grad and not p.is_meta for p in ours.values())
    with torch.no_grad():
        theirs["conv1.weight"].add_(1.0)
    assert not torch.equal(ours["stem.0.0.weight"], theirs["conv1.weight"])
