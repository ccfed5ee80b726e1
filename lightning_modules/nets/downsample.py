"""The downsampling steps behind the ``downsample`` option, shared by every backbone.

Each option halves the resolution after a stride-1 conv-BN-ReLU, except ``strided``, where
the convolution itself has stride 2. Every step maps an ``n``-pixel side to ``ceil(n / 2)``,
so the feature map after ``k`` steps has side ``ceil(image_size / 2**k)`` whatever the option.

==============  ===============================================  ==========================
option          main path (after ReLU)                            residual shortcut
==============  ===============================================  ==========================
max             MaxPool(2)                                        1x1 conv, stride 2
blur            MaxPool(2, stride 1) + BlurPool (Zhang 2019)      BlurPool + 1x1 conv
strided         (conv with stride 2)                              1x1 conv, stride 2
strided-blur    BlurPool (Zhang 2019)                             BlurPool + 1x1 conv
avg             AvgPool(2)                                        AvgPool(2) + 1x1 conv
aps             MaxPool(2, stride 1) + APS (Chaman & Dokmanic)    same phase + 1x1 conv
==============  ===============================================  ==========================

The shortcut is the linear part of the main path's step on the same sampling grid (for
``aps`` the phase chosen on the main path), which keeps a ResNet with APS exactly
shift-invariant. ``filt_size`` sets the BlurPool taps and, for ``aps``, the stride-1 blur
before the selection (``filt_size=1``: plain APS).
"""

from __future__ import annotations

from torch import nn

from lightning_modules.layers import (
    BlurPool2d,
    MaxBlurPool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
)
from lightning_modules.layers.checks import check_choice
from lightning_modules.layers.conv_blur_pool import BLUR_PAD_TYPES
from lightning_modules.nets.options import DOWNSAMPLES, PADDING_MODES


def downsample_step(kind: str, channels: int, *, padding_mode: str, filt_size: int) -> nn.Module:
    """The stride-2 layer that follows a stride-1 conv-BN-ReLU for ``downsample=kind``."""
    check_choice("downsample", kind, DOWNSAMPLES)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    pad_type = BLUR_PAD_TYPES[padding_mode]
    if kind == "max":
        return nn.MaxPool2d(2, ceil_mode=True)
    if kind == "blur":
        return MaxBlurPool2d(channels, 2, filt_size, 2, pad_type)
    if kind == "strided-blur":
        return BlurPool2d(channels, filt_size, 2, pad_type)
    if kind == "avg":
        return nn.AvgPool2d(2, ceil_mode=True)
    if kind == "aps":
        return MaxPolyphasePool2d(channels, 2, 2, filt_size, "l2", pad_type)
    raise ValueError("downsample='strided' has no separate step: the convolution has stride 2")


def shortcut_step(kind: str, channels: int, *, padding_mode: str, filt_size: int) -> nn.Module:
    """The spatial part of a residual shortcut, applied before its stride-1 1x1 convolution.

    ``nn.Identity`` for ``max`` and ``strided``, whose shortcut convolution keeps stride 2.
    """
    check_choice("downsample", kind, DOWNSAMPLES)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    pad_type = BLUR_PAD_TYPES[padding_mode]
    if kind in ("blur", "strided-blur"):
        return BlurPool2d(channels, filt_size, 2, pad_type)
    if kind == "avg":
        return nn.AvgPool2d(2, ceil_mode=True)
    if kind == "aps":
        return PolyphaseDownsample2d(channels, 2, filt_size, "l2", pad_type)
    return nn.Identity()
