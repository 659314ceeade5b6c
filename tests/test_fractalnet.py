"""FractalNet / FoF: the expansion rule's structure and drop-path as the paper describes it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from convzoo.bench.counts import count_params
from convzoo.models.fractalnet import FRACTAL_DROPOUT, FractalBlock


def tiny(name: str = "fractalnet20_cifar", **overrides) -> nn.Module:
    base = {"widths": (4, 8)} if name.startswith("fractalnet") else {"widths": (4, 4, 8, 8)}
    return convzoo.create_model(name, **{**base, **overrides})


class ConvLog:
    """Records which conv modules ran during a forward pass (by name)."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[str] = []
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda mod, i, o, name=name: self.calls.append(name))


def blocks(model) -> list[FractalBlock]:
    return list(model.stages)


def test_block_structure_follows_the_expansion_rule():
    model = convzoo.create_model("fractalnet40_cifar", widths=(4,) * 5)
    block = blocks(model)[0]
    # Column j has 2^j conv units; a C=4 block has 2^4 - 1 = 15 convs, depth 2^(C-1) = 8.
    assert [len(c) for c in block.columns] == [1, 2, 4, 8]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 5 * 15
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    # Joins after every second deepest unit; input counts 2, 3, 2, 4 (Figure 1, C=4).
    assert {pos: len(k) for pos, k in block.last_kept.items() if len(k) > 1} == {
        2: 2,
        4: 3,
        6: 2,
        8: 4,
    }


def test_join_is_the_mean_of_its_inputs():
    block = FractalBlock(
        2, lambda j, u: nn.Identity() if j == 0 else _Scale(2.0 if u == 0 else 3.0)
    )
    x = torch.ones(1, 1, 2, 2)
    # Column 0: x; column 1: 3 * 2 * x = 6x; mean = 3.5x.
    torch.testing.assert_close(block(x), 3.5 * x)


class _Scale(nn.Module):
    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x):
        return self.s * x


def test_paper_param_counts():
    info = convzoo.model_info("fractalnet20_cifar")
    with torch.device("meta"):
        n20 = count_params(convzoo.create_model("fractalnet20_cifar"))
    # The described architecture: per block C convs from the previous width, 2^C-1-C others.
    widths, prev, expected = (64, 128, 256, 512, 512), 3, 0
    for w in widths:
        expected += 3 * (9 * prev * w + 2 * w) + 4 * (9 * w * w + 2 * w)
        prev = w
    expected += 512 * 10 + 10
    assert n20 == expected == info.params
    assert info.paper_params_m == 38.6 and abs(n20 / 1e6 - 38.6) > 4  # known to differ


def _conv_graph_params(model: torch.nn.Module) -> int:
    """Conv weights plus one bias per output channel: the released Caffe nets' conv parameters."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return sum(c.weight.numel() + c.out_channels for c in convs)


@pytest.mark.parametrize(
    ("name", "released"),
    [
        # gustavla/fractalnet generation/fractalnet.py (FILTERS 64-128-256-512-512, 3 columns).
        ("fractalnet20_cifar", 33_709_184),
        # iPhysicist/CNNDesignPatterns FoF.prototxt, all 49 convs.
        ("fof_cifar", 38_484_096),
    ],
)
def test_conv_graph_equals_the_authors_release(name, released):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    assert _conv_graph_params(model) == released


@pytest.mark.parametrize("column", [0, 1, 2])
def test_global_mode_runs_exactly_one_column(column, monkeypatch):
    model = tiny(drop_path_rate=0.15, global_ratio=1.0)
    log = ConvLog(model)
    model.train()
    monkeypatch.setattr(torch, "randint", lambda high, size, device=None: torch.tensor(column))
    model(torch.randn(2, 3, 8, 8))
    assert model.last_plan.column == column
    # Column j holds 2^j convs per block; nothing of any other column ran.
    assert len(log.calls) == 2 * 2**column
    assert all(f".columns.{column}." in name for name in log.calls)


def test_local_mode_keeps_one_input_per_join_and_skips_dropped_paths():
    model = tiny("fractalnet40_cifar", drop_path_rate=0.9, global_ratio=0.0)
    log = ConvLog(model)
    model.train()
    total = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    skipped = 0
    for _ in range(20):
        log.calls.clear()
        out = model(torch.randn(2, 3, 8, 8))
        assert torch.isfinite(out).all()
        assert model.last_plan.local
        ran = 0
        for block in blocks(model):
            for kept in block.last_kept.values():
                assert len(kept) >= 1
                ran += len(kept)  # each kept join input is exactly one unit evaluation
        assert len(log.calls) == ran
        skipped += total - ran
    assert skipped > 0  # with p=0.9 dropped paths were not computed


def test_local_sampling_drops_at_the_configured_rate():
    model = tiny("fractalnet40_cifar", drop_path_rate=0.15, global_ratio=0.0)
    model.train()
    kept = offered = 0
    for _ in range(60):
        model(torch.randn(1, 3, 8, 8))
        final = blocks(model)[-1].last_kept[8]  # the 4-input output join is always evaluated
        kept, offered = kept + len(final), offered + 4
    assert 0.75 < kept / offered < 0.95


def test_eval_drops_nothing_and_can_select_a_column():
    model = tiny(drop_path_rate=0.5)
    log = ConvLog(model)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        a = model(x)
        assert len(log.calls) == 2 * 7  # every conv of both C=3 blocks
        torch.testing.assert_close(model(x), a, rtol=0, atol=0)
        log.calls.clear()
        model.set_eval_column(model.deepest_column)
        deep = model(x)
        assert len(log.calls) == 2 * 4
        assert all(".columns.2." in n for n in log.calls)
        assert not torch.allclose(deep, a)
        model.set_eval_column(None)
        torch.testing.assert_close(model(x), a, rtol=0, atol=0)
    with pytest.raises(ValueError):
        model.set_eval_column(3)


def test_eval_column_config_field():
    model = tiny(eval_column=0).eval()
    log = ConvLog(model)
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    assert len(log.calls) == 2  # one conv per block


def test_mode_alternates_per_mini_batch():
    model = tiny(drop_path_rate=0.15, global_ratio=0.5)
    model.train()
    modes = []
    for _ in range(120):
        model(torch.randn(2, 3, 8, 8))
        plan = model.last_plan
        modes.append(plan.column is not None)
        if plan.column is not None:
            # Global: every join of every block kept only the sampled column.
            for block in blocks(model):
                assert all(k == [plan.column] for k in block.last_kept.values())
        else:
            assert plan.local
    assert 0.3 < sum(modes) / len(modes) < 0.7


def test_default_config_has_no_drop_path():
    model = tiny().train()
    log = ConvLog(model)
    model(torch.randn(2, 3, 8, 8))
    assert model.last_plan.column is None and not model.last_plan.local
    assert len(log.calls) == 2 * 7


def test_paper_dropout_schedule_option():
    with torch.device("meta"):
        model = convzoo.create_model("fractalnet20_cifar", block_dropout=FRACTAL_DROPOUT)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert sorted(set(rates)) == [0.1, 0.2, 0.3, 0.4]
    assert len(rates) == 4 * 7  # every conv of blocks 2-5
    with pytest.raises(ValueError):
        convzoo.create_model("fractalnet20_cifar", block_dropout=(0.1,))


def test_fof_macro_structure_matches_the_prototxt():
    with torch.device("meta"):
        model = convzoo.create_model("fof_cifar")
    (macro,) = model.stages
    assert [len(c) for c in macro.columns] == [1, 2, 4]
    # (in, out) widths of every macro unit and its pooling factor.
    shape = [
        [(b.columns[0][0][0].in_channels, b.columns[0][0][0].out_channels, b.pool.kernel_size)]
        for col in macro.columns
        for b in col
    ]
    assert shape == [
        [(3, 512, 16)],
        [(3, 128, 4)],
        [(128, 512, 4)],
        [(3, 64, 2)],
        [(64, 128, 2)],
        [(128, 256, 2)],
        [(256, 512, 2)],
    ]
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 7 * 7


def test_fof_global_mode_runs_one_chain():
    model = tiny("fof_cifar", drop_path_rate=0.15, global_ratio=1.0)
    log = ConvLog(model)
    model.train()
    for _ in range(5):
        log.calls.clear()
        model(torch.randn(2, 3, 16, 16))
        macro, inner = model.last_plan
        # 2^m blocks in macro column m, each running 2^i convs of inner column i.
        assert len(log.calls) == 2**macro.column * 2**inner.column


def test_fof_local_mode_keeps_one_per_join():
    model = tiny("fof_cifar", drop_path_rate=0.9, global_ratio=0.0).train()
    model(torch.randn(2, 3, 16, 16))
    assert all(len(k) >= 1 for k in model.stages[0].last_kept.values())
