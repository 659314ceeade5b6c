"""Conv -> norm -> activation, the unit almost every family is built from."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


class ConvNormAct(nn.Sequential):
    """``Conv2d`` (``padding`` defaults to "same" for odd kernels) then ``norm_layer`` then
    ``act_layer``. Either may be ``None``. The conv has a bias only when there is no norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int = 1,
        *,
        padding: int | tuple[int, int] | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: NormLayer | None = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels} -> {out_channels}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if padding is None:
            padding = ((ks[0] - 1) // 2 * dilation, (ks[1] - 1) // 2 * dilation)
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                ks,
                stride=stride,
                padding=padding,
                groups=groups,
                dilation=dilation,
                bias=norm_layer is None if bias is None else bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels
