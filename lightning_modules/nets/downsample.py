"""The registry of downsampling methods behind the ``downsample`` option, shared by every
backbone: adding a method is one :class:`Downsampler` entry in :data:`DOWNSAMPLERS` (plus
its layer), and every backbone, the CLI and the registry-parametrized tests pick it up.

Each method halves the resolution after a stride-1 conv-BN-ReLU, except ``strided``, whose
convolution has stride 2. Every step maps an ``n``-pixel side to ``ceil(n / 2)``, so the
feature map after ``k`` steps has side ``ceil(image_size / 2**k)`` whatever the method.

==============  ===============================================  ==========================
method          main path (after ReLU)                            residual shortcut
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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

from invariance_common.checks import check_choice
from lightning_modules.layers import (
    BlurPool2d,
    MaxBlurPool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
)
from lightning_modules.layers.conv_blur_pool import BLUR_PAD_TYPES
from lightning_modules.nets.options import PADDING_MODES

# (channels, blur pad type, filt_size) -> layer
LayerFactory = Callable[[int, str, int], nn.Module]


def _identity(channels: int, pad_type: str, filt_size: int) -> nn.Module:
    return nn.Identity()


@dataclass(frozen=True)
class Downsampler:
    """One downsampling method.

    Args:
        summary: what it does, with its paper (shown by ``--help`` and the docs).
        step: builds the stride-2 layer after a stride-1 conv-BN-ReLU; ``None`` when the
            convolution itself has stride 2.
        shortcut: builds the spatial part of a residual shortcut, applied before its 1x1
            convolution.
        shortcut_stride: stride of that 1x1 convolution (2 when ``shortcut`` keeps the size).
        shares_phase: the step chooses a polyphase component that the shortcut must take
            too (``forward_with_phase`` on both), so the block stays on one sampling grid.
    """

    summary: str
    step: LayerFactory | None
    shortcut: LayerFactory = _identity
    shortcut_stride: int = 1
    shares_phase: bool = False


def _blur(channels: int, pad_type: str, filt_size: int) -> nn.Module:
    return BlurPool2d(channels, filt_size, 2, pad_type)


def _avg(channels: int, pad_type: str, filt_size: int) -> nn.Module:
    return nn.AvgPool2d(2, ceil_mode=True)


DOWNSAMPLERS: Mapping[str, Downsampler] = MappingProxyType(
    {
        "max": Downsampler(
            "MaxPool(2)",
            step=lambda c, pad, k: nn.MaxPool2d(2, ceil_mode=True),
            shortcut_stride=2,
        ),
        "blur": Downsampler(
            "MaxPool(2, stride 1) + BlurPool(stride 2) (Zhang, ICML 2019)",
            step=lambda c, pad, k: MaxBlurPool2d(c, 2, k, 2, pad),
            shortcut=_blur,
        ),
        "strided": Downsampler("the convolution has stride 2", step=None, shortcut_stride=2),
        "strided-blur": Downsampler(
            "Conv(stride 1) + ReLU + BlurPool(stride 2) (Zhang, ICML 2019)",
            step=_blur,
            shortcut=_blur,
        ),
        "avg": Downsampler("AvgPool(2)", step=_avg, shortcut=_avg),
        "aps": Downsampler(
            "MaxPool(2, stride 1) + adaptive polyphase sampling (Chaman & Dokmanic, CVPR 2021)",
            step=lambda c, pad, k: MaxPolyphasePool2d(c, 2, 2, k, "l2", pad),
            shortcut=lambda c, pad, k: PolyphaseDownsample2d(c, 2, k, "l2", pad),
            shares_phase=True,
        ),
    }
)


def get_downsampler(name: str) -> Downsampler:
    """The registry entry of ``name``, with a one-line error listing the valid names."""
    check_choice("downsample", name, tuple(DOWNSAMPLERS))
    return DOWNSAMPLERS[name]


def create_downsample(name: str, channels: int, *, padding_mode: str, filt_size: int) -> nn.Module:
    """The stride-2 layer that follows a stride-1 conv-BN-ReLU for ``downsample=name``."""
    spec = get_downsampler(name)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    if spec.step is None:
        raise ValueError(f"downsample={name!r} has no separate step: the convolution has stride 2")
    return spec.step(channels, BLUR_PAD_TYPES[padding_mode], filt_size)


def create_shortcut(name: str, channels: int, *, padding_mode: str, filt_size: int) -> nn.Module:
    """The spatial part of a residual shortcut for ``downsample=name`` (before its 1x1 conv)."""
    spec = get_downsampler(name)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    return spec.shortcut(channels, BLUR_PAD_TYPES[padding_mode], filt_size)
