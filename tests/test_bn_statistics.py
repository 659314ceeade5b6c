"""benchmarks/bn_statistics.py: the per-application copy of a shared PolyNet, and re-estimation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import load_benchmark, randomize_bn
from convzoo.registry import create_model, get_entry

SHARED = {"share_norm": True, "share_projection": True}


def _shared_tiny() -> tuple[nn.Module, dict]:
    args = {**get_entry("polynet_cifar").tiny.overrides, **SHARED}
    torch.manual_seed(0)
    return randomize_bn(create_model("polynet_cifar", **args)), args


def test_per_application_copy_computes_the_shared_function_in_training_mode():
    mod = load_benchmark("bn_statistics")
    shared, args = _shared_tiny()
    unshared = mod.per_application(shared, "polynet_cifar", args)
    assert sum(p.numel() for p in unshared.parameters()) > sum(
        p.numel() for p in shared.parameters()
    )
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        a = copy.deepcopy(shared).train()(x)
        b = copy.deepcopy(unshared).train()(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_only_a_shared_build_is_copied_per_application():
    # Copying norms.0 over a per-application build would overwrite its trained norms.
    mod = load_benchmark("bn_statistics")
    shared, args = _shared_tiny()
    unshared = mod.per_application(shared, "polynet_cifar", args)
    assert mod.shares_norms(shared.state_dict())
    assert not mod.shares_norms(unshared.state_dict())
    assert not mod.shares_norms(create_model("resnet20_cifar").state_dict())


def test_reestimated_statistics_reproduce_training_only_per_application():
    # Re-estimated on one batch, eval mode gives the training-mode output on that batch up to the
    # unbiased variance's n / (n - 1); the shared network's mixed statistics do not.
    mod = load_benchmark("bn_statistics")
    shared, args = _shared_tiny()
    unshared = mod.per_application(shared, "polynet_cifar", args)
    torch.manual_seed(1)
    x = torch.randn(32, 3, 16, 16)
    gaps = []
    for model in (shared, unshared):
        with torch.no_grad():
            train_out = copy.deepcopy(model).train()(x)
            mod.reestimate(model, [(x, torch.zeros(32))], limit=1)
            gaps.append((model(x) - train_out).abs().max().item() / train_out.abs().max().item())
    assert gaps[1] < 0.05 and gaps[0] > 4 * gaps[1], gaps


def test_accuracy_counts_and_restores_the_norms():
    mod = load_benchmark("bn_statistics")
    model, _ = _shared_tiny()
    x = torch.randn(10, 3, 16, 16)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    assert mod.accuracy(model, [(x, y)]) == 100.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mod.accuracy(model, [(x, y)], batch_stats=True)
    assert not model.training
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):  # a counter; momentum 0 leaves the estimates
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_bad_arguments_are_one_line(tmp_path, capsys):
    mod = load_benchmark("bn_statistics")
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "none.pt")])
    assert "none.pt: no such file" in capsys.readouterr().err
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        mod.main([str(tmp_path / "x.pt"), "--model-args", "{nope"])
    assert "--model-args: not JSON" in capsys.readouterr().err
