"""Checks every registered model must pass, at tiny size (config overrides from its registration)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import convzoo
from conftest import tiny_input, tiny_model
from convzoo.bench.counts import count_params, model_counts
from convzoo.registry import get_entry

ALL = convzoo.list_models()
# Dense predictors (num_classes == 0, e.g. the dfn_* next-frame models) have no classifier.
CLASSIFIERS = [n for n in ALL if convzoo.model_info(n).num_classes > 0]


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_finite_and_surface(name):
    model = tiny_model(name)
    model.eval()
    x = tiny_input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model.forward_head(feats)
        pre = model.forward_head(feats, pre_logits=True)
        full = model(x)
    if model.num_classes > 0:
        assert out.shape == (x.shape[0], model.num_classes)
    else:
        assert out.shape[0] == x.shape[0]
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, full)
    assert pre.shape == (x.shape[0], model.num_features)
    for attr in ("stem", "stages", "head"):
        assert isinstance(getattr(model, attr, None), torch.nn.Module), f"{name} lacks .{attr}"


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_gets_a_gradient(name):
    model = tiny_model(name)
    model.train()
    x = tiny_input(name, batch=max(get_entry(name).tiny.batch_size, 2))
    model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"
    for n, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"


@pytest.mark.parametrize("name", ALL)
def test_eval_is_deterministic_and_batch_independent(name):
    model = tiny_model(name)
    model.eval()
    x = tiny_input(name, batch=3)
    with torch.no_grad():
        a = model(x)
        b = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_each_batchnorm_normalizes_one_tensor_per_forward(name):
    # A BatchNorm called twice in one forward (weights shared across applications) averages the
    # statistics of different tensors into its running estimates, which then fit neither: eval
    # mode computes another function than training did (polynet_cifar did, until 2026-12-03).
    model = tiny_model(name).train()
    calls: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda *_, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    with torch.no_grad():
        model(tiny_input(name, batch=max(get_entry(name).tiny.batch_size, 2)))
    for h in hooks:
        h.remove()
    reused = {n: c for n, c in calls.items() if c > 1}
    assert not reused, f"{name}: BatchNorms called more than once per forward: {reused}"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name):
    model = tiny_model(name)
    torch.manual_seed(1)
    other = tiny_model(name)
    other.load_state_dict(model.state_dict())
    model.eval()
    other.eval()
    x = tiny_input(name)
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_reset_classifier(name):
    model = tiny_model(name)
    model.reset_classifier(7)
    model.eval()
    assert model.num_classes == 7
    with torch.no_grad():
        assert model(tiny_input(name)).shape[-1] == 7


@pytest.mark.parametrize("name", ALL)
def test_bad_input_gets_a_clear_error(name):
    model = tiny_model(name)
    model.eval()
    info = convzoo.model_info(name)
    s = get_entry(name).tiny.input_size
    with pytest.raises(ValueError, match="4D"):
        model(torch.randn(info.in_channels, s, s))
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, info.in_channels + 1, s, s))
    if model.min_input_size > 1:
        small = model.min_input_size - 1
        with pytest.raises(ValueError, match="at least"):
            model(torch.randn(1, info.in_channels, small, small))


def _paper_tolerance(value: float) -> float:
    """Half a unit of the last digit printed: 0.8 -> 0.05, 36.5 -> 0.05, 1.25 -> 0.005."""
    text = repr(float(value))
    decimals = len(text.split(".")[1]) if "." in text and not text.endswith(".0") else 0
    return 0.5 * 10.0**-decimals


@pytest.mark.parametrize("name", ALL)
def test_full_size_param_count_matches_record_and_paper(name):
    info = convzoo.model_info(name)
    assert info.params is not None, f"{name}: model_info records no canonical parameter count"
    with torch.device("meta"):
        model = convzoo.create_model(name)
    n = count_params(model)
    assert n == info.params, f"{name}: {n} parameters, model_info records {info.params}"
    if info.paper_params_m is not None:
        tol = info.paper_params_tol_m or _paper_tolerance(info.paper_params_m)
        assert math.isclose(n / 1e6, info.paper_params_m, abs_tol=tol + 1e-9), (
            f"{name}: {n / 1e6:.3f}M vs paper {info.paper_params_m}M (tolerance {tol}M)"
        )


@pytest.mark.parametrize("name", ALL)
def test_converts_to_float64_and_still_runs(name):
    # .to()/.double() go through nn.Module._apply: a model must not shadow it or hold tensors
    # that do not follow the module.
    model = tiny_model(name)
    model = model.double().eval()
    assert {p.dtype for p in model.parameters()} <= {torch.float64}
    with torch.no_grad():
        out = model(tiny_input(name).double())
    assert out.dtype == torch.float64


def _macs_param(name: str):
    # Counting is shape propagation on meta, but its cost grows with the network: the biggest
    # models (over 150M parameters) run with the slow tests.
    info = convzoo.model_info(name)
    big = (info.params or 0) > 150_000_000
    return pytest.param(name, marks=pytest.mark.slow) if big else name


@pytest.mark.parametrize(
    "name", [_macs_param(n) for n in ALL if convzoo.model_info(n).paper_macs_g is not None]
)
def test_full_size_macs_match_paper(name):
    info = convzoo.model_info(name)
    macs_g = model_counts(name)["macs"] / 1e9
    tol = info.paper_macs_tol_g or _paper_tolerance(info.paper_macs_g)
    assert math.isclose(macs_g, info.paper_macs_g, abs_tol=tol + 1e-9), (
        f"{name}: {macs_g:.4f} GMACs (multiply-adds) vs paper {info.paper_macs_g} (tolerance {tol})"
    )


# The dynamic filter networks are dense next-frame predictors: their generators are an
# encoder-decoder whose resolution goes down and back up with a skip connection across (or, for
# the video model, a recurrent one run once per frame), so "stages of increasing reduction" does
# not describe them and a backbone of them would have no meaning.
BACKBONES = [n for n in ALL if convzoo.model_info(n).family != "dynamic_filter"]


@pytest.mark.parametrize("name", BACKBONES)
def test_stages_are_resolution_stages_and_backbone_matches_feature_info(name):
    """The contract: ``stages`` holds one element per resolution, ``neck`` what follows them."""
    model = tiny_model(name)
    model.eval()
    x = tiny_input(name)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        torch.testing.assert_close(model.neck(inter[-1]), final)
    info = model.feature_info
    assert len(info) == len(inter) == model.num_stages
    reductions = info.reduction()
    assert all(a < b for a, b in itertools.pairwise(reductions)), (
        f"{name}: two stages share a resolution {reductions}; merge them into one stage"
    )
    assert [f.shape[1] for f in inter] == info.channels()

    last_two = [model.num_stages - 2, model.num_stages - 1] if model.num_stages > 1 else [0]
    backbone = tiny_model(name, features_only=True, out_indices=last_two)
    backbone.eval()
    with torch.no_grad():
        maps = backbone(x)
    assert backbone.feature_info.channels() == [info.channels()[i] for i in last_two]
    for f, meta in zip(maps, backbone.feature_info):
        assert f.shape[1] == meta["num_chs"]
        # Reductions are nominal (powers of two); tiny inputs with unpadded convs round down.
        assert x.shape[-1] / f.shape[-1] <= meta["reduction"] * 1.5
    # The backbone's keys are the classifier's own, so classifier weights load into it.
    missing, unexpected = backbone.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    assert all(k.startswith(("head.", "neck.", "stages.")) for k in unexpected)


# Real-depth models where an untrained network used to overflow (ResNet-1202: NaN; DenseNets up
# to 1e16; HyperNet 1e10), next to the tiny build of every model.
DEEP = ["resnet1202_cifar", "densenet_bc100_k12_cifar", "hyper_wrn40_1_cifar", "resnet110_cifar"]


@pytest.mark.parametrize(
    ("name", "full"),
    [(n, False) for n in CLASSIFIERS] + [pytest.param(n, True, id=f"{n}-full") for n in DEEP],
)
def test_untrained_eval_outputs_are_finite_and_bounded(name, full):
    """Fresh running statistics make BatchNorm the identity in eval mode, so the init alone sets
    the output scale. With a variance-preserving init the logits of an N(0, 1) input stay O(1-100)
    (measured: at most ~100, for HyperNet-40-1); 1e3 leaves a 10x margin and still catches any
    init whose scale compounds over depth (those gave 1e5 to inf)."""
    model = convzoo.create_model(name) if full else tiny_model(name)
    model.eval()
    info = convzoo.model_info(name)
    size = info.input_size if full else get_entry(name).tiny.input_size
    with torch.no_grad():
        out = model(torch.randn(2, info.in_channels, size, size))
    assert torch.isfinite(out).all(), f"{name}: non-finite output at init"
    assert out.abs().max().item() < 1e3, f"{name}: max |logit| {out.abs().max().item():.3g}"
