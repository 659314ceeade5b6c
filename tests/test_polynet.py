"""PolyNet: the PolyInception polynomials of Figure 4, weight sharing, and the Very Deep layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from conftest import randomize_bn
from convzoo.bench.counts import count_params
from convzoo.models.polynet_blocks import InceptionUnit, PolyInception

BRANCHES = (((1, 4),), ((1, 3), (3, 4)))
C = 6


def module(kind: str, order: int, scale: float = 0.5, **kw) -> PolyInception:
    torch.manual_seed(0)
    # Non-trivial BatchNorm statistics, so a wrong application order shows in the output.
    return randomize_bn(PolyInception(C, BRANCHES, kind, order, scale, **kw)).eval()


def one_f() -> int:
    return count_params(InceptionUnit(C, BRANCHES))


def test_poly2_shares_f_completely():
    m = module("poly", 2)
    assert len(m.units) == 1
    assert count_params(m) == one_f()


def test_mpoly2_and_2way_have_two_units():
    for kind in ("mpoly", "way"):
        m = module(kind, 2)
        assert len(m.units) == 2
        assert count_params(m) == 2 * one_f()
        assert m.units[0].projections[0][0].weight is not m.units[1].projections[0][0].weight


def test_released_poly3_shares_convs_not_norms():
    # Very Deep PolyNet: convs of F shared, a BatchNorm set and a projection per application.
    m = module("poly", 3, share_norm=False, share_projection=False)
    shared_convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    f = InceptionUnit(C, BRANCHES)
    f_convs = [c for c in f.modules() if isinstance(c, nn.Conv2d)]
    # 3 branch convs shared + one projection conv per application.
    assert len(shared_convs) == len(f_convs) - 1 + 3
    norms = sum(isinstance(b, nn.BatchNorm2d) for b in m.modules())
    assert norms == 3 * sum(isinstance(b, nn.BatchNorm2d) for b in f.modules())


@pytest.mark.parametrize("shared", [True, False])
def test_eval_reproduces_training_only_with_per_application_norms(shared):
    # Running statistics taken from one batch (cumulative average, one training forward) make
    # eval mode compute the training-mode output on that batch, unless one BatchNorm serves
    # F(x), F(F(x)) and F(F(F(x))) and averages their statistics into estimates fitting none.
    m = PolyInception(C, BRANCHES, "poly", 3, 0.5, share_norm=shared, share_projection=shared)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None
    torch.manual_seed(0)
    x = torch.randn(32, C, 5, 5) * 2 + 1
    n = x.shape[0] * x.shape[2] * x.shape[3]  # values per channel: every conv keeps 5x5
    with torch.no_grad():
        train_out = m.train()(x)
        for bn in m.modules():
            if isinstance(bn, nn.BatchNorm2d):  # the unbiased running variance -> the biased one
                bn.running_var.mul_((n - 1) / n)  # type: ignore[operator]
        eval_out = m.eval()(x)
    diff = (eval_out - train_out).abs().max().item()
    scale = train_out.abs().max().item()
    assert (diff > 0.05 * scale) if shared else (diff < 1e-5 * scale), (diff, scale)


@pytest.mark.parametrize("shared", [True, False])
def test_poly_is_i_plus_f_plus_ff_plus_fff(shared):
    m = module("poly", 3, share_norm=shared, share_projection=shared)
    x = torch.randn(2, C, 5, 5)
    f, s, relu = m.units[0], m.scale, torch.relu
    with torch.no_grad():
        f1 = f(x, 0)
        f2 = f(relu(f1), 1)
        f3 = f(relu(f2), 2)
        torch.testing.assert_close(m(x), relu(x + s * (f1 + f2 + f3)))
        if not shared:  # per-application BatchNorm really differs
            assert not torch.allclose(f(x, 0), f(x, 1))


def test_mpoly_is_i_plus_f_plus_gf_plus_hgf():
    m = module("mpoly", 3)
    x = torch.randn(2, C, 5, 5)
    f, g, h = m.units
    s, relu = m.scale, torch.relu
    with torch.no_grad():
        a = f(x)
        b = g(relu(a))
        c = h(relu(b))
        torch.testing.assert_close(m(x), relu(x + s * (a + b + c)))


def test_way_is_i_plus_f_plus_g():
    m = module("way", 2)
    x = torch.randn(2, C, 5, 5)
    f, g = m.units
    with torch.no_grad():
        torch.testing.assert_close(m(x), torch.relu(x + m.scale * (f(x) + g(x))))


def test_reduction_branches_must_end_with_their_stride():
    from convzoo.models.polynet_blocks import InceptionReduction

    assert InceptionReduction(8, (((1, 4), (3, 6, 2)),)).out_channels == 14
    with pytest.raises(ValueError, match="stride-2"):
        InceptionReduction(8, (((3, 6, 2), (1, 4)),))
    with pytest.raises(ValueError, match="stride-2"):
        InceptionReduction(8, (((3, 6),),))


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="kind"):
        PolyInception(C, BRANCHES, "poli", 2)
    with pytest.raises(ValueError, match="order"):
        PolyInception(C, BRANCHES, "way", 0)


def test_very_deep_polynet_layout():
    with torch.device("meta"):
        model = convzoo.create_model("polynet")
    a, (red_a, b), (red_b, c) = model.stages
    kinds = [[(m.kind, m.order) for m in stage] for stage in (a, b, c)]
    assert kinds[0] == [("way", 2)] * 10
    assert kinds[1] == [("poly", 3), ("way", 2)] * 10
    assert kinds[2] == [("poly", 3), ("way", 2)] * 5
    assert (red_a.out_channels, red_b.out_channels) == (1152, 2048)
    # Residual scale: linear from 1 to 0.7 over the 40 modules (released model: 0.992308, ...).
    scales = [m.scale for stage in (a, b, c) for m in stage]
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(0.7)
    assert scales[1] == pytest.approx(0.992308, abs=1e-6)
    assert scales[10] == pytest.approx(0.923077, abs=1e-6)
    assert model.num_features == 2048


@pytest.mark.parametrize("size, expected", [(299, (35, 17, 8)), (331, (39, 19, 9))])
def test_polynet_feature_map_sizes(size, expected):
    # Inception-v4 sizes at 299 px; 9x9 at 331 px is where the released model pools.
    tiny = convzoo.registry.get_entry("polynet").tiny.overrides
    model = convzoo.create_model("polynet", **tiny).eval()
    x = torch.randn(1, 3, size, size)
    sizes = []
    with torch.no_grad():
        x = model.stem(x)
        for stage in model.stages:
            x = stage(x)
            sizes.append(x.shape[-1])
    assert tuple(sizes) == expected


def test_polynet_cifar_poly_modules_share_convs_not_norms():
    # The released model's sharing: a fully shared F breaks eval mode (test above).
    model = convzoo.create_model("polynet_cifar")
    polys = [m for m in model.modules() if isinstance(m, PolyInception) and m.kind == "poly"]
    assert polys
    for m in polys:
        unit = m.units[0]
        assert len(unit.projections) == m.order
        assert all(len(layer.norms) == m.order for branch in unit.branches for layer in branch)


def test_stochastic_paths_skip_compute():
    model = convzoo.create_model(
        "polynet_cifar", **convzoo.registry.get_entry("polynet_cifar").tiny.overrides
    )
    model_dp = convzoo.create_model(
        "polynet_cifar",
        drop_path_rate=0.95,
        **convzoo.registry.get_entry("polynet_cifar").tiny.overrides,
    )
    counts = []
    for m in (model, model_dp):
        calls = []
        for conv in m.modules():
            if isinstance(conv, nn.Conv2d):
                conv.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        m.train()
        for _ in range(5):
            m(torch.randn(2, 3, 16, 16))
        counts.append(len(calls))
    assert counts[1] < counts[0]
    model_dp.eval()
    with torch.no_grad():  # eval keeps every path
        x = torch.randn(1, 3, 16, 16)
        torch.testing.assert_close(model_dp(x), model_dp(x))


def test_matches_the_released_very_deep_polynet():
    """Same outputs as Cadene's port of the released model, weights mapped one to one in order.

    ``pretrainedmodels`` is in the ``test`` extra; random weights, nothing downloads. Measured
    difference: at most 2e-6 on features of magnitude ~2.5 (float32, 1 and 2 threads, three
    seeds, 75 and 107 px); a weight mapped to the wrong place differs by O(1).
    """
    import sys

    import pretrainedmodels  # noqa: F401  (the package binds the module name to a function)

    reference = sys.modules["pretrainedmodels.models.polynet"].PolyNet
    torch.manual_seed(0)
    ref = randomize_bn(reference()).eval()
    ours = convzoo.create_model("polynet").eval()
    theirs = {k: v for k, v in ref.state_dict().items() if "num_batches" not in k}
    mine = {k: v for k, v in ours.state_dict().items() if "num_batches" not in k}
    assert len(theirs) == len(mine)
    mapped = {}
    for (mk, mv), (tk, tv) in zip(mine.items(), theirs.items(), strict=True):
        assert mv.shape == tv.shape, (mk, tk)
        mapped[mk] = tv
    ours.load_state_dict(mapped, strict=False)
    x = torch.randn(1, 3, 75, 75)  # the smallest input both accept
    with torch.no_grad():
        torch.testing.assert_close(ours.forward_features(x), ref.features(x), rtol=1e-5, atol=1e-5)


def test_polynet_moves_between_devices_and_dtypes():
    # nn.Module._apply backs .to()/.cpu()/.double(); a block method of that name once shadowed it.
    model = convzoo.create_model(
        "polynet_cifar", **convzoo.registry.get_entry("polynet_cifar").tiny.overrides
    )
    model = model.to(torch.float64).cpu()
    assert {p.dtype for p in model.parameters()} == {torch.float64}
