"""RevNet: exact inverse, activation-free backward == ordinary autograd, BN stats, RNG replay."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import convzoo
from convzoo.layers.preact import preact_branch
from convzoo.layers.reversible import ReversibleCoupling, ReversibleSequence, set_memory_saving

SMALL = {"depths": (3, 3, 2), "channels": (8, 8, 16, 16)}


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("bottleneck", [False, True])
def test_block_inverse_recovers_input(bottleneck):
    torch.manual_seed(0)
    block = ReversibleCoupling(
        preact_branch(8, 8, bottleneck=bottleneck), preact_branch(8, 8, bottleneck=bottleneck)
    )
    x = torch.randn(4, 16, 8, 8)
    for mode in ("train", "eval"):
        block.train(mode == "train")
        with torch.no_grad():
            y = block(x)
            assert not torch.allclose(y, x)
            err = (block.inverse(y) - x).abs().max().item()
        assert err < 1e-5, f"{mode}: inverse error {err}"


def _train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("bottleneck", [False, True])
def test_memory_saving_gradients_and_bn_stats_match_autograd(bottleneck):
    torch.manual_seed(0)
    model = convzoo.create_model("revnet38_cifar", bottleneck=bottleneck, **SMALL)
    model.train()
    x, target = torch.randn(6, 3, 16, 16, requires_grad=True), torch.randint(0, 10, (6,))
    twin = copy.deepcopy(model).set_memory_saving(False)
    assert any(isinstance(m, ReversibleSequence) and len(m.blocks) == 2 for m in model.modules()), (
        "the small model must contain reversible blocks"
    )

    grads_rev = _train_step(model, x, target)
    x_grad_rev = x.grad.clone()
    x.grad = None
    grads_ref = _train_step(twin, x, target)

    assert grads_rev.keys() == grads_ref.keys()
    for name, g in grads_ref.items():
        assert _relative_error(grads_rev[name], g) < 1e-5, name
    assert _relative_error(x_grad_rev, x.grad) < 1e-5
    # BatchNorm updated its running statistics once per step in both modes, to the same values.
    buffers_ref = dict(twin.named_buffers())
    for name, buf in model.named_buffers():
        torch.testing.assert_close(buf, buffers_ref[name], rtol=0, atol=0)
    nbt = [b for n, b in model.named_buffers() if n.endswith("num_batches_tracked")]
    assert nbt and all(int(b) == 1 for b in nbt)


def test_memory_saving_keeps_only_the_sequence_output():
    torch.manual_seed(0)
    seq = ReversibleSequence(
        [
            ReversibleCoupling(
                preact_branch(4, 4, bottleneck=False), preact_branch(4, 4, bottleneck=False)
            )
            for _ in range(6)
        ]
    )
    x = torch.randn(2, 8, 8, 8, requires_grad=True)

    def saved_bytes(memory_saving: bool) -> int:
        set_memory_saving(seq, memory_saving)
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            if not isinstance(t, nn.Parameter) and t.data_ptr() != x.data_ptr():
                seen[t.data_ptr()] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = seq(x)
        out.sum().backward()  # the recomputation in backward is transient: not counted
        return sum(seen.values())

    one_activation = x.numel() * x.element_size()
    assert saved_bytes(True) == one_activation  # the output only
    assert saved_bytes(False) > 10 * one_activation


def test_dropout_is_replayed_not_redrawn():
    torch.manual_seed(0)

    def fn() -> nn.Module:
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Dropout(0.5), nn.BatchNorm2d(4))

    seq = ReversibleSequence([ReversibleCoupling(fn(), fn()) for _ in range(3)])
    twin = copy.deepcopy(seq)
    set_memory_saving(twin, False)
    x = torch.randn(3, 8, 6, 6, requires_grad=True)
    torch.manual_seed(123)
    seq(x).square().sum().backward()
    after_rev = torch.rand(1)  # the global RNG stream continues as if nothing was replayed
    grads = [p.grad.clone() for p in seq.parameters()]
    torch.manual_seed(123)
    twin(x).square().sum().backward()
    after_ref = torch.rand(1)
    torch.testing.assert_close(after_rev, after_ref)
    for g, p in zip(grads, twin.parameters()):
        assert _relative_error(g, p.grad) < 1e-5


def test_switch_is_the_same_module_and_weights():
    model = convzoo.create_model("revnet38_cifar", **SMALL)
    seqs = [m for m in model.modules() if isinstance(m, ReversibleSequence)]
    assert seqs and all(s.memory_saving for s in seqs)
    assert model.set_memory_saving(False) is model
    assert not any(s.memory_saving for s in seqs)
    with pytest.raises(TypeError):
        ReversibleSequence([nn.Identity()])


@pytest.mark.parametrize(
    ("name", "paper_m"),
    [("revnet38_cifar", 0.46), ("revnet110_cifar", 1.73), ("revnet164_cifar", 1.75)],
)
def test_cifar_param_counts_match_table_1(name, paper_m):
    with torch.device("meta"):
        model = convzoo.create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / 1e6 - paper_m) < 0.005 + 1e-9
