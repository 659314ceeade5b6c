"""Invertible blocks and backpropagation without stored activations (RevNet, i-RevNet).

An ``InvertibleBlock`` maps a tensor to a tensor and can undo it (``inverse``). A
``ReversibleSequence`` of such blocks has two training modes, switched at run time on the same
module and weights (``memory_saving``, or ``set_memory_saving(model, flag)``):

* ordinary autograd: every block's intermediate activations are kept for the backward pass;
* memory saving (Gomez et al. 2017, "The Reversible Residual Network: Backpropagation Without
  Storing Activations", arXiv 1707.04585, Algorithm 1): one ``torch.autograd.Function`` runs the
  blocks with autograd off, so no block input or intermediate activation is kept; only the
  sequence's output is saved. Backward walks the blocks in reverse, reconstructs each block's
  input from its output, re-runs the block's residual functions with autograd on and
  back-propagates through them (one extra forward pass of F and G per block).

The pitfalls of recomputation are handled here, once, for every block:

* BatchNorm running statistics: during reconstruction and recomputation the block's norm layers
  normalise with the batch statistics (exactly as in the forward pass) but do not update
  ``running_mean``/``running_var``/``num_batches_tracked`` a second time
  (``frozen_norm_stats``).
* Mixed precision: the recomputation runs under the forward pass's autocast state.
* Randomness: the RNG state (CPU and the tensor's accelerator) is captured before each residual
  function call in the forward pass and restored when that function is re-run, so dropout masks
  are replayed, not re-drawn (``InvertibleBlock.branch``).

Not supported in memory-saving mode: double backward (``create_graph=True``); use
``memory_saving=False`` for that.

The additive coupling ``ReversibleCoupling`` (y1 = x1 + F(x2), y2 = x2 + G(y1)) lives here
because both RevNet and i-RevNet use this machinery; i-RevNet's block (coupling + invertible
down-sampling) is defined in its family file on top of ``InvertibleBlock``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

RngState = tuple[Tensor, Tensor | None]
# One gradient per parameter of a block, in ``parameters()`` order (None: unused).
ParamGrads = tuple[Tensor | None, ...]


def capture_rng(device: torch.device) -> RngState:
    """The CPU generator state and, for an accelerator tensor, that device's generator state."""
    accel = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), accel


@contextlib.contextmanager
def replay_rng(state: RngState, device: torch.device) -> Iterator[None]:
    """Run with the generators set to ``state``; the global state is restored afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


@contextlib.contextmanager
def frozen_norm_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm in training mode that normalises with batch statistics but updates nothing.

    With ``track_running_stats=False`` a training-mode ``_BatchNorm`` passes no running buffers
    to ``F.batch_norm`` and skips the ``num_batches_tracked`` increment, which is exactly the
    recomputation we need (no copies of the buffers).
    """
    norms = [
        m
        for m in module.modules()
        if isinstance(m, _BatchNorm) and m.training and m.track_running_stats
    ]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class InvertibleBlock(nn.Module):
    """A block with ``forward(x) -> y`` and ``inverse(y) -> x``.

    Subclasses call their residual functions through ``self.branch(key, fn, x)`` so that random
    layers inside them are replayed identically during reconstruction. ``backward_pass`` defaults
    to "invert, then re-run forward with autograd"; couplings override it with the cheaper
    reconstruction that reuses the recomputed branch outputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rng_record: dict[str, RngState] | None = None
        self._rng_replay: dict[str, RngState] | None = None

    def branch(self, key: str, fn: nn.Module, x: Tensor) -> Tensor:
        if self._rng_replay is not None and key in self._rng_replay:
            with replay_rng(self._rng_replay[key], x.device):
                replayed: Tensor = fn(x)
                return replayed
        if self._rng_record is not None:
            self._rng_record[key] = capture_rng(x.device)
        out: Tensor = fn(x)
        return out

    def inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def backward_pass(self, y: Tensor, grad_y: Tensor) -> tuple[Tensor, Tensor, ParamGrads]:
        """Reconstruct the input ``x`` from ``y`` and return ``(x, dL/dx, dL/dparams)``."""
        with torch.no_grad():
            x = self.inverse(y)
        with torch.enable_grad():
            x_req = x.detach().requires_grad_(True)
            out = self(x_req)
            return (x, *_vjp(out, x_req, self, grad_y))


def _vjp(out: Tensor, inp: Tensor, module: nn.Module, grad: Tensor) -> tuple[Tensor, ParamGrads]:
    """dL/d(inp) and dL/d(module's parameters) for ``out`` with incoming gradient ``grad``."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [inp, *params], grad, allow_unused=True)
    by_param = dict(zip(params, grads[1:]))
    return grads[0], tuple(by_param.get(p) for p in module.parameters())


class ReversibleCoupling(InvertibleBlock):
    """RevNet's reversible block on the two channel halves of ``x``:

    y1 = x1 + F(x2),  y2 = x2 + G(y1);   inverse: x2 = y2 - G(y1),  x1 = y1 - F(x2).

    F and G must preserve shape (the reversible blocks of a RevNet all have stride 1).
    """

    def __init__(self, f: nn.Module, g: nn.Module) -> None:
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y1 = x1 + self.branch("f", self.f, x2)
        y2 = x2 + self.branch("g", self.g, y1)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        y1, y2 = y.chunk(2, dim=1)
        x2 = y2 - self.branch("g", self.g, y1)
        x1 = y1 - self.branch("f", self.f, x2)
        return torch.cat([x1, x2], dim=1)

    def backward_pass(self, y: Tensor, grad_y: Tensor) -> tuple[Tensor, Tensor, ParamGrads]:
        # Gomez et al. Algorithm 1: G(y1) and F(x2) are each recomputed once, with autograd on;
        # the same values serve the reconstruction and the backward pass.
        y1, y2 = y.chunk(2, dim=1)
        gy1, gy2 = grad_y.chunk(2, dim=1)
        with torch.enable_grad():
            y1_req = y1.detach().requires_grad_(True)
            g_out = self.branch("g", self.g, y1_req)
            x2 = y2 - g_out.detach()
            grad_y1_from_g, g_grads = _vjp(g_out, y1_req, self.g, gy2)
            grad_y1 = gy1 + grad_y1_from_g
            x2_req = x2.requires_grad_(True)
            f_out = self.branch("f", self.f, x2_req)
            x1 = y1 - f_out.detach()
            grad_x2_from_f, f_grads = _vjp(f_out, x2_req, self.f, grad_y1)
        grad_x = torch.cat([grad_y1, gy2 + grad_x2_from_f], dim=1)
        x = torch.cat([x1, x2.detach()], dim=1)
        # self.parameters() lists f's parameters, then g's (registration order).
        return x, grad_x, f_grads + g_grads


class _ReversibleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, blocks: Sequence[InvertibleBlock], x: Tensor, *params: Tensor) -> Tensor:
        rng: list[dict[str, RngState] | None] = []
        for block in blocks:
            record: dict[str, RngState] | None = {} if block.training else None
            block._rng_record = record
            try:
                x = block(x)
            finally:
                block._rng_record = None
            rng.append(record)
        ctx.blocks = blocks
        ctx.rng = rng
        # Recompute under the same autocast state as the forward pass (mixed precision).
        device_type = x.device.type
        ctx.autocast = (
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )
        # The only activation kept: the sequence's output, from which everything is rebuilt.
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:
        (y,) = ctx.saved_tensors
        device_type, autocast_on, autocast_dtype = ctx.autocast
        per_block: list[ParamGrads] = []
        for block, rng in zip(reversed(ctx.blocks), reversed(ctx.rng)):
            block._rng_replay = rng
            try:
                with (
                    frozen_norm_stats(block),
                    torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_on),
                ):
                    y, grad_y, param_grads = block.backward_pass(y, grad_y)
            finally:
                block._rng_replay = None
            per_block.append(param_grads)
        flat = [g for grads in reversed(per_block) for g in grads]
        return (None, grad_y, *flat)


class ReversibleSequence(nn.Module):
    """Invertible blocks applied in order; ``memory_saving`` picks the backward algorithm."""

    def __init__(self, blocks: Sequence[InvertibleBlock], memory_saving: bool = True) -> None:
        super().__init__()
        for b in blocks:
            if not isinstance(b, InvertibleBlock):
                raise TypeError(
                    f"ReversibleSequence takes InvertibleBlocks, got {type(b).__name__}"
                )
        self.blocks = nn.ModuleList(blocks)
        self.memory_saving = memory_saving

    def forward(self, x: Tensor) -> Tensor:
        params = [p for b in self.blocks for p in b.parameters()]
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in params)
        )
        if self.memory_saving and needs_grad and len(self.blocks) > 0:
            out: Tensor = _ReversibleFunction.apply(list(self.blocks), x, *params)
            return out
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, y: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            assert isinstance(block, InvertibleBlock)  # checked in __init__
            y = block.inverse(y)
        return y


def set_memory_saving(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch every ``ReversibleSequence`` in ``model`` between the two backward algorithms."""
    for m in model.modules():
        if isinstance(m, ReversibleSequence):
            m.memory_saving = enabled
    return model
