import dataclasses

import pytest
import torch

import convzoo
from convzoo.registry import ModelInfo, Paper, register_model


def test_list_models_sorted_and_patterns():
    names = convzoo.list_models()
    assert names == sorted(names)
    assert "nin_cifar" in names
    assert all(n.endswith("_cifar") for n in convzoo.list_models("*_cifar"))
    assert convzoo.list_models("no_such_model_*") == []


def test_unknown_name_names_close_matches():
    with pytest.raises(ValueError, match="nin_cifar"):
        convzoo.create_model("nin_cifr")


def test_unknown_override_lists_valid_fields():
    with pytest.raises(TypeError, match=r"valid fields.*num_classes"):
        convzoo.create_model("nin_cifar", widht=3)


def test_standard_overrides_apply():
    model = convzoo.create_model("nin_cifar", num_classes=3, in_channels=1)
    assert model.num_classes == 3 and model.in_channels == 1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_duplicate_registration_raises():
    entry = convzoo.registry.get_entry("nin_cifar")
    with pytest.raises(ValueError, match="already registered"):
        register_model("nin_cifar", entry.builder, entry.config, info=entry.info)


def test_model_info_fields():
    info = convzoo.model_info("nin_cifar")
    assert isinstance(info, ModelInfo) and isinstance(info.paper, Paper)
    assert info.name == "nin_cifar" and info.dataset == "cifar" and info.num_classes == 10
    assert dataclasses.is_dataclass(info)


def test_models_are_float32_on_cpu():
    model = convzoo.create_model("nin_cifar")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_out_indices_need_features_only_and_are_checked():
    with pytest.raises(ValueError, match="features_only"):
        convzoo.create_model("resnet20_cifar", out_indices=[1])
    with pytest.raises(ValueError, match="out of range"):
        convzoo.create_model("resnet20_cifar", features_only=True, out_indices=[5])
    backbone = convzoo.create_model("resnet20_cifar", features_only=True, out_indices=2)
    assert backbone.feature_info.reduction() == [2, 4]
    with pytest.raises(ValueError, match="no classifier"):
        backbone.reset_classifier(3)
