"""Scaled weight standardization (Brock, De & Smith 2021, arXiv 2101.08692, section 4).

Each output unit's filter is standardized over its fan-in N and rescaled by a learnable gain:

    W_hat[i] = gain[i] * (W[i] - mean(W[i])) / (sqrt(var(W[i]) + eps) * sqrt(N))

so that ``sum_j W_hat[i, j] ** 2 == gain[i] ** 2``: a unit-variance input gives a unit-variance
output, and the zero-mean filters cancel the positive mean that ReLU/GELU activations carry.
The standardization is part of the forward pass (gradients flow through it), not a reparametrization
applied once.

Where ``eps`` sits: the reference JAX code computes ``rsqrt(max(N * var, 1e-4))``; this layer
computes ``rsqrt(var + eps) / sqrt(N)`` (timm's form, the form of the weight-standardization
paper). The two agree unless a filter is nearly constant (``N * var`` below ~1e-4).

``padding="same"`` is TensorFlow's SAME rule, which the reference models use: the total padding is
chosen so the output has ``ceil(input / stride)`` pixels, and an odd total puts the extra pixel at
the bottom/right. For stride 1 and odd kernels that is ordinary symmetric padding; for stride 2 on
even inputs it differs from PyTorch's symmetric ``(k - 1) // 2``, so it is computed per input.

The other half of the signal-propagation rule is ``GammaAct``: an activation scaled by
gamma = 1 / std(act(z)), z ~ N(0, 1), so that a unit-variance input stays unit-variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding of one spatial dimension as (before, after)."""
    total = max(
        (math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0
    )
    return total // 2, total - total // 2


def pad_same(
    x: Tensor, kernel_size: int, stride: int, dilation: int = 1, value: float = 0.0
) -> Tensor:
    """Pad an NCHW tensor so a ``kernel_size``/``stride`` window op behaves as TF's SAME."""
    top, bottom = same_padding(x.shape[-2], kernel_size, stride, dilation)
    left, right = same_padding(x.shape[-1], kernel_size, stride, dilation)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class ScaledStdConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is scale-standardized per output unit on every forward.

    ``gain`` (shape ``(out_channels, 1, 1, 1)``, learnable) starts at ``gain_init``. ``padding``
    is an int (symmetric), ``None`` (symmetric ``(k - 1) // 2 * dilation``) or ``"same"`` (TF
    SAME, computed from the input size). Square kernels only.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        eps: float = 1e-5,
        gain_init: float = 1.0,
    ) -> None:
        if not isinstance(kernel_size, int):
            raise TypeError(f"ScaledStdConv2d takes a square kernel (an int), got {kernel_size!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.same = padding == "same"
        if isinstance(padding, str) and not self.same:
            raise ValueError(f"padding must be an int, None or 'same', got {padding!r}")
        static = (kernel_size - 1) // 2 * dilation if padding is None or self.same else padding
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=0 if self.same else static,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.eps = eps
        self.gain_init = gain_init
        self.gain = nn.Parameter(torch.full((out_channels, 1, 1, 1), float(gain_init)))

    def standardized_weight(self) -> Tensor:
        w = self.weight.flatten(1)  # (out, fan_in)
        var, mean = torch.var_mean(w, dim=1, unbiased=False, keepdim=True)
        scale = self.gain.flatten(1) * torch.rsqrt((var + self.eps) * w.shape[1])
        return ((w - mean) * scale).view_as(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.same:
            x = pad_same(x, self.kernel_size[0], self.stride[0], self.dilation[0])
        return F.conv2d(
            x,
            self.standardized_weight(),
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        # torch leaves _ConvNd.extra_repr unannotated; it returns str.
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]
        return base + f", eps={self.eps}" + (", padding=same" if self.same else "")


class SameMaxPool2d(nn.Module):
    """3x3 stride-2 max pool with TF SAME padding (padded with -inf)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)


# gamma = 1 / std(act(z)) for z ~ N(0, 1): the reference code's constants (nfnets/base.py).
GAMMA: dict[str, float] = {
    "relu": 1.7139588594436646,
    "gelu": 1.7015043497085571,
    "silu": 1.7881293296813965,
}
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
}


class GammaAct(nn.Module):
    """``act(x) * gamma``: the variance-preserving activation of NF networks."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        if activation not in GAMMA:
            raise ValueError(f"activation must be one of {sorted(GAMMA)}, got {activation!r}")
        self.activation = activation
        self.fn = _ACTIVATIONS[activation]
        self.gamma = GAMMA[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) * self.gamma

    def extra_repr(self) -> str:
        return f"{self.activation}, gamma={self.gamma:.6f}"
