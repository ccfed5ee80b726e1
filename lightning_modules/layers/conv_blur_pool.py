"""The anti-aliased strided convolution: Conv(stride 1) + ReLU + BlurPool (Zhang, ICML 2019)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.circular_conv import conv2d

# Blur padding that matches a convolution's: zero-padding a blur would darken the border, so
# zero-padded convolutions get the reference's reflect padding; circular stays circular.
BLUR_PAD_TYPES = {
    "zero": "reflect",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}


class ConvBlurPool2d(nn.Sequential):
    """``Conv(stride s) + ReLU`` made shift-robust: ``Conv(stride 1) + BN + ReLU + BlurPool(s)``.

    A strided convolution is a dense convolution followed by naive subsampling; Zhang
    (ICML 2019, "Making Convolutional Networks Shift-Invariant Again") evaluates it densely,
    applies the nonlinearity, and blurs before subsampling. Children are named ``conv``,
    ``norm`` (``nn.Identity`` when ``norm=False``), ``act`` and ``blur``.

    Args:
        in_channels, out_channels, kernel_size: the convolution (odd or even kernels, "same"
            padding).
        stride: subsampling factor of the blur.
        filt_size: binomial taps of the blur, 1..7.
        padding_mode: convolution padding, ``zero`` (or torch's ``zeros``), ``reflect``, ``replicate`` or
            ``circular``; the blur pads the matching way (``reflect`` for ``zeros``).
        norm: BatchNorm after the convolution (the convolution then has no bias).
    Shape:
        - Input: ``[N, in_channels, H, W]``.
        - Output: ``[N, out_channels, ceil(H / stride), ceil(W / stride)]``.

    Examples:
        >>> import torch
        >>> block = ConvBlurPool2d(3, 8, kernel_size=3, stride=2, filt_size=4)
        >>> block(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        filt_size: int = 4,
        padding_mode: str = "zero",
        norm: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_positive("in_channels", in_channels)
        check_positive("out_channels", out_channels)
        check_positive("kernel_size", kernel_size)
        padding_mode = check_border("padding_mode", padding_mode)
        super().__init__(
            OrderedDict(
                conv=conv2d(
                    in_channels,
                    out_channels,
                    kernel_size,
                    padding="same",
                    padding_mode=padding_mode,
                    bias=not norm,
                    device=device,
                    dtype=dtype,
                ),
                norm=nn.BatchNorm2d(out_channels, device=device, dtype=dtype)
                if norm
                else nn.Identity(),
                act=nn.ReLU(inplace=True),
                blur=BlurPool2d(
                    out_channels,
                    filt_size,
                    stride,
                    BLUR_PAD_TYPES[padding_mode],
                    device=device,
                    dtype=dtype,
                ),
            )
        )

    def extra_repr(self) -> str:
        return f"stride={self.blur.stride}"
