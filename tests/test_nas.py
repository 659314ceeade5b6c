"""FBNet DNAS and compound-scaling search, at tiny size."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import convzoo
from convzoo.bench.counts import count_params
from convzoo.models.fbnet import CANDIDATES, MacroStage, spec_from_json
from convzoo.nas import fbnet_search
from convzoo.nas.fbnet_search import SearchConfig, expected_latency, fbnet_loss, search_step
from convzoo.nas.latency import LatencyTable, measure_latency_table
from convzoo.nas.scaling import scaling_grid
from convzoo.nas.supernet import SUPERNETS, FBNetSupernet, SupernetConfig

TINY = SupernetConfig(
    macro=(
        MacroStage(out_channels=8, layers=1, stride=1),
        MacroStage(out_channels=16, layers=2, stride=2),
    ),
    stem_channels=8, stem_stride=1, head_channels=16, input_size=8, num_classes=3,
)  # fmt: skip


def tiny_supernet() -> FBNetSupernet:
    torch.manual_seed(0)
    return FBNetSupernet(TINY)


def test_mixed_layer_is_the_weighted_sum_of_its_candidates():
    net = tiny_supernet().eval()
    w = net.mixing_weights()
    torch.testing.assert_close(w.sum(-1), torch.ones(len(net.layers)))
    layer = net.layers[1]
    x = torch.randn(2, layer.in_channels, 8, 8)
    expected = sum(w[1, k] * op(x) for k, op in enumerate(layer.ops))
    torch.testing.assert_close(layer(x, w[1]), expected)


def test_low_temperature_makes_the_masks_one_hot():
    net = tiny_supernet()
    net.theta.data.normal_()
    net.temperature = 5.0
    soft = net.mixing_weights().max(-1).values
    net.temperature = 1e-3
    hard = net.mixing_weights().max(-1).values
    assert soft.max() < 0.9
    torch.testing.assert_close(hard, torch.ones_like(hard), atol=1e-3, rtol=0)


def test_latency_table_round_trip_and_prediction(tmp_path):
    net = tiny_supernet()
    table = measure_latency_table(net, "cpu", repeats=1)
    assert len(table.entries) == len(net.layers) and table.candidates == list(CANDIDATES)
    assert all(v > 0 for row in table.entries for v in row.values())
    path = table.save(tmp_path / "lat.json")
    loaded = LatencyTable.load(path)
    assert loaded == table
    spec = net.sample_spec()
    blocks = [b for s in spec for b in s]
    expected = table.fixed_ms + sum(table.entries[i][b.candidate] for i, b in enumerate(blocks))
    assert math.isclose(loaded.predict(spec), expected)
    onehot = torch.zeros(len(blocks), len(CANDIDATES))
    for i, b in enumerate(blocks):
        onehot[i, CANDIDATES.index(b.candidate)] = 1
    assert math.isclose(
        float(expected_latency(onehot, loaded.as_tensor(), loaded.fixed_ms)), expected, rel_tol=1e-6
    )
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        LatencyTable.load(tmp_path / "bad.json")


def test_search_step_updates_weights_on_train_batch_and_theta_on_arch_batch():
    net = tiny_supernet()
    cfg = SearchConfig(supernet="cifar", epochs=2, warmup_epochs=0)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    t_opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    train = (torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,)))
    arch = (torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,)))
    seen = []
    forward = net.forward

    def spy(x, weights=None):
        seen.append(("train" if x is train[0] else "arch", weights.requires_grad))
        return forward(x, weights)

    net.forward = spy
    theta0 = net.theta.detach().clone()
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    stats = search_step(net, w_opt, None, train, arch, torch.rand(3, 9) + 1, 2.0, cfg)
    assert seen == [("train", False)] and "theta_loss" not in stats
    torch.testing.assert_close(net.theta.detach(), theta0, rtol=0, atol=0)
    assert any(not torch.equal(a, p) for a, p in zip(w0, net.weight_parameters()))
    w1 = [p.detach().clone() for p in net.weight_parameters()]
    seen.clear()
    search_step(net, w_opt, t_opt, train, arch, torch.rand(3, 9) + 1, 2.0, cfg)
    assert seen == [("train", False), ("arch", True)]
    assert not torch.equal(net.theta.detach(), theta0)
    assert any(not torch.equal(a, p) for a, p in zip(w1, net.weight_parameters()))


def test_loss_is_eq2_and_rejects_sub_unit_latency():
    ce = torch.tensor(2.0)
    assert math.isclose(
        float(fbnet_loss(ce, torch.tensor(20.0), 0.2, 0.6)),
        2.0 * 0.2 * math.log(20.0) ** 0.6,
        rel_tol=1e-6,
    )
    with pytest.raises(ValueError, match="latency_scale"):
        fbnet_loss(ce, torch.tensor(0.5), 0.2, 0.6)


def test_emitted_spec_builds_the_chosen_candidates():
    net = tiny_supernet()
    choice = [CANDIDATES.index(c) for c in ("k5_e6", "k3_e1_g2", "skip")]
    with torch.no_grad():
        net.theta.zero_()
        for layer, k in enumerate(choice):
            net.theta[layer, k] = 1.0
    spec = net.sample_spec()
    assert [b.candidate for s in spec for b in s] == ["k5_e6", "k3_e1_g2", "skip"]
    model = convzoo.create_model("fbnet_c", **net.model_args(spec))
    built = [b for stage in model.stages for row in stage for b in row]
    for layer, k, block in zip(net.layers, choice, built):
        assert count_params(block) == count_params(layer.ops[k])
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_run_search_end_to_end_writes_a_buildable_spec(tmp_path, monkeypatch):
    monkeypatch.setitem(SUPERNETS, "cifar", dataclasses.replace(TINY, num_classes=10))
    cfg = SearchConfig(epochs=2, warmup_epochs=1, batch_size=16, max_train_samples=96,
                       output=str(tmp_path / "s"), progress=False)  # fmt: skip
    result = fbnet_search.run_search(cfg)
    spec = spec_from_json((tmp_path / "s" / "arch.json").read_text())
    assert [b.candidate for s in spec for b in s] == [c for s in result["architecture"] for c in s]
    assert result["predicted_latency_ms"] > 0 and result["measured_latency_ms"] > 0
    args = json.loads((tmp_path / "s" / "model_args.json").read_text())
    model = convzoo.create_model("fbnet_c", **args)  # spec as a file path
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    assert LatencyTable.load(tmp_path / "s" / "latency_table.json").candidates == list(CANDIDATES)


def test_scaling_grid_respects_the_constraint():
    grid = scaling_grid(budget=2.0, step=0.05, tolerance=0.05)
    assert grid and all(min(c) >= 1.0 for c in grid)
    for a, b, g in grid:
        assert abs(a * b * b * g * g - 2.0) <= 0.1 + 1e-9
    assert (1.2, 1.1, 1.15) in grid  # the paper's choice lies on the grid
    assert (1.0, 1.0, 1.0) not in grid
    with pytest.raises(ValueError):
        scaling_grid(budget=0.5)


def test_scaling_search_trains_candidates_and_scales_the_best(tmp_path):
    from convzoo.models.efficientnet import B0_STAGES
    from convzoo.nas.scaling import ScalingSearchConfig, run_scaling_search

    tiny = {"stages": B0_STAGES[:2], "stem_channels": 8, "head_channels": 32, "drop_path_rate": 0.0}
    cfg = ScalingSearchConfig(
        model_args=tiny, base_resolution=16, step=0.1, tolerance=0.1, max_candidates=2,
        phis=(1, 2), output=str(tmp_path),
        train={"epochs": 1, "batch_size": 32, "max_train_samples": 64, "progress": False,
               "plots": False, "device": "cpu"},
    )  # fmt: skip
    result = run_scaling_search(cfg)
    rows = result["candidates"]
    assert len(rows) == 2
    for r in rows:
        assert abs(r["alpha"] * r["beta"] ** 2 * r["gamma"] ** 2 - 2.0) <= 0.2 + 1e-9
        assert 0.0 <= r["val_acc"] <= 100.0 and r["resolution"] == round(16 * r["gamma"])
        assert r["macs"] > result["base_cost"]["macs"]
    best = max(rows, key=lambda r: r["val_acc"])
    assert result["chosen"] == {k: best[k] for k in ("alpha", "beta", "gamma")}
    macs = [s["macs"] for s in result["scaled"]]
    assert macs[0] < macs[1]
    assert (tmp_path / "scaling.json").exists()


def test_auto_latency_scale_keeps_log_latency_positive():
    from convzoo.nas.fbnet_search import auto_latency_scale

    def table(fixed, entries):
        return LatencyTable(["k3_e1", "skip"], entries, fixed)

    fast = table(0.05, [{"k3_e1": 0.02, "skip": 0.001}] * 3)  # fastest net: 0.053 ms
    assert auto_latency_scale(fast) == 1000.0  # 53 units: the first power of ten >= 10
    assert auto_latency_scale(table(12.0, [{"k3_e1": 3.0, "skip": 0.1}])) == 1.0
    ce = torch.tensor(1.0)
    assert torch.isfinite(fbnet_loss(ce, torch.tensor(0.053 * auto_latency_scale(fast)), 0.2, 0.6))
