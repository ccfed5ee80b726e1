"""The small CNN backbone: conv-BN-ReLU stages that each end in a downsampling step."""

from __future__ import annotations

import math

from torch import Tensor, nn

from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.layers.circular_conv import conv2d
from invariance_recipes.lightning_modules.nets.downsample import (
    create_activation,
    create_downsample,
    create_norm,
    get_downsampler,
)
from invariance_recipes.lightning_modules.nets.heads import ClassifierHead
from invariance_recipes.lightning_modules.nets.input_check import check_input
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, NetOptions


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
    conv = conv2d(
        in_channels, out_channels, 3, stride, padding=1, padding_mode=padding_mode, bias=False
    )
    act = nn.ReLU(inplace=True) if activation is None else activation
    norm = nn.BatchNorm2d(out_channels) if norm is None else norm
    return nn.Sequential(conv, norm, act)


class SmallCNN(nn.Module):
    """A CNN that trains in seconds per epoch on CPU, for comparing downsampling and heads.

    One stage per entry of ``widths``: ``blocks_per_stage`` conv-BN-activation blocks (ReLU
    unless the method brings its own), the last of which downsamples by 2 the ``downsample``
    way (see ``downsample.py``): ``strided`` gives its convolution stride 2, ``alias-free``
    its activation (activation and ideal step as one function, in one pass), the others
    append their step. Every option has the same parameters, so a comparison
    isolates the downsampling. The feature map has side ``ceil(image_size / 2**len(widths))``.

    Args:
        in_channels, num_classes: image channels and logits.
        image_size: side of the training images (sizes the flattening heads).
        options: the network's options; this backbone reads ``widths`` (channels of each
            stage) and ``blocks_per_stage`` besides the shared ones (see
            :func:`invariance_recipes.lightning_modules.nets.build_net`).
    """

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, options: NetOptions = DEFAULTS
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("image_size", image_size)
        downsample, widths = options.downsample, options.widths
        strided = get_downsampler(downsample).step is None
        # the last activation of a stage takes the step itself, where it can (the same function)
        fused = get_downsampler(downsample).activation_strides
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
            inputs = [channels] + [width] * (options.blocks_per_stage - 1)
            strides = [1] * (options.blocks_per_stage - 1) + [2 if strided else 1]
            act_strides = [1] * (options.blocks_per_stage - 1) + [2 if fused else 1]
            blocks = [
                conv_bn_relu(
                    c,
                    width,
                    options.padding_mode,
                    s,
                    create_activation(downsample, width, a),
                    create_norm(downsample, width),
                )
                for c, s, a in zip(inputs, strides, act_strides, strict=True)
            ]
            if not (strided or fused):
                blocks.append(create_downsample(width, options))
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.features = nn.Sequential(*stages)
        spatial = math.ceil(image_size / self.total_stride)
        self.head = ClassifierHead(channels, spatial, num_classes, options)

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
