"""The small CNN backbone: conv-BN-ReLU stages that each end in a downsampling step."""

from __future__ import annotations

import math
from collections.abc import Sequence

from invariance_recipes.lightning_modules.layers.checks import check_filt_size
from invariance_recipes.lightning_modules.nets.downsample import (
    create_activation,
    create_downsample,
    create_norm,
    get_downsampler,
)
from invariance_recipes.lightning_modules.nets.heads import ClassifierHead
from invariance_recipes.lightning_modules.nets.input_check import check_input
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, PADDING_MODES
from torch import Tensor, nn

from invariance_recipes.common.checks import check_choice, check_positive


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    padding_mode: str,
    stride: int = 1,
    activation: nn.Module | None = None,
    norm: nn.Module | None = None,
) -> nn.Sequential:
    """3x3 convolution (no bias: a normalization follows), BatchNorm (or ``norm``), ReLU (or
    ``activation``)."""
    conv = nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=1, padding_mode=padding_mode, bias=False
    )
    act = nn.ReLU(inplace=True) if activation is None else activation
    norm = nn.BatchNorm2d(out_channels) if norm is None else norm
    return nn.Sequential(conv, norm, act)


class SmallCNN(nn.Module):
    """A CNN that trains in seconds per epoch on CPU, for comparing downsampling and heads.

    One stage per entry of ``widths``: ``blocks_per_stage`` conv-BN-activation blocks (ReLU unless the
    method brings its own), the last of
    which downsamples by 2 the ``downsample`` way (see ``downsample.py``): ``strided``
    gives its convolution stride 2, the others append their step. Every option has the same parameters, so a comparison
    isolates the downsampling. The feature map has side ``ceil(image_size / 2**len(widths))``.

    Args:
        in_channels, num_classes: image channels and logits.
        image_size: side of the training images (sizes the flattening heads).
        widths: channels of each stage.
        blocks_per_stage: conv-BN-ReLU blocks per stage.
        downsample, head, padding_mode, filt_size, lps_hidden_divisor, mlp_hidden, dropout: see
            :func:`invariance_recipes.lightning_modules.nets.build_net`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        widths: Sequence[int] = DEFAULTS.widths,
        blocks_per_stage: int = DEFAULTS.blocks_per_stage,
        downsample: str = DEFAULTS.downsample,
        head: str = DEFAULTS.head,
        padding_mode: str = DEFAULTS.padding_mode,
        filt_size: int = DEFAULTS.filt_size,
        lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor,
        mlp_hidden: Sequence[int] = DEFAULTS.mlp_hidden,
        dropout: float = DEFAULTS.dropout,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("image_size", image_size)
        check_positive("blocks_per_stage", blocks_per_stage)
        strided = get_downsampler(downsample).step is None
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        check_filt_size(filt_size)
        check_positive("lps_hidden_divisor", lps_hidden_divisor)
        if not widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
        ):
            raise ValueError(
                f"widths={tuple(widths)!r} is invalid: list one positive channel count per "
                "stage, e.g. (32, 64, 128)"
            )
        self.in_channels = in_channels
        self.image_size = image_size
        self.total_stride = 2 ** len(widths)
        if image_size < self.total_stride:
            raise ValueError(
                f"image_size={image_size} is smaller than the total stride {self.total_stride} "
                f"of {len(widths)} stages: use fewer widths or larger images"
            )
        self.downsample = downsample
        stages = []
        channels = in_channels
        for width in widths:
            inputs = [channels] + [width] * (blocks_per_stage - 1)
            strides = [1] * (blocks_per_stage - 1) + [2 if strided else 1]
            blocks = [
                conv_bn_relu(
                    c,
                    width,
                    padding_mode,
                    s,
                    create_activation(downsample, width),
                    create_norm(downsample, width),
                )
                for c, s in zip(inputs, strides, strict=True)
            ]
            if not strided:
                step = create_downsample(
                    downsample,
                    width,
                    padding_mode=padding_mode,
                    filt_size=filt_size,
                    lps_hidden_divisor=lps_hidden_divisor,
                )
                blocks.append(step)
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.features = nn.Sequential(*stages)
        spatial = math.ceil(image_size / self.total_stride)
        self.head = ClassifierHead(head, channels, spatial, num_classes, mlp_hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        check_input(
            x,
            in_channels=self.in_channels,
            image_size=self.image_size,
            total_stride=self.total_stride,
            fixed_size=self.head.fixed_size,
        )
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return f"downsample={self.downsample!r}, total_stride={self.total_stride}"
