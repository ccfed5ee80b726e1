"""CIFAR-style ResNet-18 on torchvision's ``ResNet`` and ``BasicBlock``, with every option."""

from __future__ import annotations

import math
from collections.abc import Sequence

from invariance_recipes.lightning_modules.layers.checks import check_filt_size
from invariance_recipes.lightning_modules.nets.downsample import (
    create_activation,
    create_downsample,
    create_shortcut,
    get_downsampler,
)
from invariance_recipes.lightning_modules.nets.heads import ClassifierHead
from invariance_recipes.lightning_modules.nets.input_check import check_input
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, PADDING_MODES
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet, conv1x1

from invariance_recipes.common.checks import check_choice, check_positive


class DownsamplingBasicBlock(BasicBlock):
    """torchvision's ``BasicBlock`` whose stride-2 step is a separate layer after the first ReLU.

    Main path: ``conv1 (stride 1) -> bn1 -> relu -> step -> conv2 -> bn2``; shortcut:
    ``shortcut -> downsample`` (1x1 convolution and BatchNorm); each method's steps are
    listed in ``downsample.py``. This is the published layout of:

    - Zhang's anti-aliased BasicBlock (``blur``: step and shortcut are BlurPool; Zhang,
      ICML 2019; adobe/antialiased-cnns ``antialiased_cnns/resnet.py`` ``BasicBlock``);
    - Chaman & Dokmanic's APS BasicBlock (``aps``: APS after ``relu``, the shortcut takes
      the same polyphase indices; CVPR 2021; achaman2/truly_shift_invariant_cnns
      ``models/aps_models/resnet.py`` ``BasicBlock``);
    - the LPS BasicBlock (``lps``: the shortcut applies the main path's phase weights;
      Rojas-Gomez et al., NeurIPS 2022; raymondyeh07/learnable_polyphase_sampling
      ``learn_poly_sampling/models/resnet_custom.py`` ``BasicBlockCustom``).

    With a phase-sharing method both paths stay on one sampling grid, so the block stays
    exactly shift-consistent for circular shifts; :attr:`shares_phase` switches it off (a
    control for that claim).

    Args:
        inplanes, planes: input and output channels.
        kind: a ``downsample`` option other than ``strided`` (torchvision's own block).
        padding_mode, filt_size, lps_hidden_divisor: see
            :func:`invariance_recipes.lightning_modules.nets.build_net`.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        kind: str,
        padding_mode: str,
        filt_size: int,
        lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor,
    ) -> None:
        spec = get_downsampler(kind)
        shortcut_conv = nn.Sequential(
            conv1x1(inplanes, planes, spec.shortcut_stride), spec.norm(planes)
        )
        super().__init__(inplanes, planes, downsample=shortcut_conv, norm_layer=spec.norm)
        options = {"padding_mode": padding_mode, "filt_size": filt_size}
        self.step = create_downsample(
            kind, planes, in_block=True, lps_hidden_divisor=lps_hidden_divisor, **options
        )
        self.shortcut = create_shortcut(kind, inplanes, **options)
        self.relu = create_activation(kind, planes)
        self.shares_phase = spec.shares_phase

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.shares_phase:
            out, phase = self.step.forward_with_phase(out)
            identity = self.shortcut.forward_with_phase(x, phase)[0]
        else:
            out = self.step(out)
            identity = self.shortcut(x)
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(identity))


class CifarResNet18(ResNet):
    """ResNet-18 for small images: 3x3 stem with stride 1, no max-pool, total stride 8.

    Built by torchvision's ``ResNet`` (its block layout and initialization); the first
    block of ``layer2``..``layer4`` downsamples the ``downsample`` way
    (:class:`DownsamplingBasicBlock`; ``strided`` keeps torchvision's block). Every
    convolution with padding uses ``padding_mode``. The head replaces torchvision's
    average pool and ``fc``.

    Args:
        in_channels, num_classes, image_size: images and logits (``image_size`` sizes the
            flattening heads).
        downsample, head, padding_mode, filt_size, mlp_hidden, dropout: see
            :func:`invariance_recipes.lightning_modules.nets.build_net`.
    """

    total_stride = 8

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        *,
        downsample: str = DEFAULTS.downsample,
        head: str = DEFAULTS.head,
        padding_mode: str = DEFAULTS.padding_mode,
        filt_size: int = DEFAULTS.filt_size,
        lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor,
        mlp_hidden: Sequence[int] = DEFAULTS.mlp_hidden,
        dropout: float = DEFAULTS.dropout,
    ) -> None:
        check_positive("in_channels", in_channels)
        check_positive("image_size", image_size)
        strided = get_downsampler(downsample).step is None
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        check_filt_size(filt_size)
        check_positive("lps_hidden_divisor", lps_hidden_divisor)
        if image_size < self.total_stride:
            raise ValueError(
                f"image_size={image_size} is smaller than resnet18's total stride "
                f"{self.total_stride}: use images of at least 8x8"
            )
        super().__init__(BasicBlock, [2, 2, 2, 2], norm_layer=get_downsampler(downsample).norm)
        self.in_channels = in_channels
        self.image_size = image_size
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        del self.maxpool, self.avgpool, self.fc
        new_convs = [self.conv1]
        # The activation is the method's (ReLU unless it brings its own); a block applies
        # its one module twice, after bn1 and after the sum, as torchvision's does.
        self.relu = create_activation(downsample, 64)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                block.relu = create_activation(downsample, block.conv1.out_channels)
        if not strided:
            for layer in (self.layer2, self.layer3, self.layer4):
                inplanes, planes = layer[0].conv1.in_channels, layer[0].conv1.out_channels
                layer[0] = DownsamplingBasicBlock(
                    inplanes,
                    planes,
                    kind=downsample,
                    padding_mode=padding_mode,
                    filt_size=filt_size,
                    lps_hidden_divisor=lps_hidden_divisor,
                )
                new_convs += [m for m in layer[0].modules() if isinstance(m, nn.Conv2d)]
        for conv in new_convs:  # torchvision's ResNet initialization
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and any(module.padding):
                module.padding_mode = padding_mode
        spatial = math.ceil(image_size / self.total_stride)
        self.head = ClassifierHead(head, 512, spatial, num_classes, mlp_hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        check_input(
            x,
            in_channels=self.in_channels,
            image_size=self.image_size,
            total_stride=self.total_stride,
            fixed_size=self.head.fixed_size,
        )
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(x)

    def extra_repr(self) -> str:
        return f"downsample={self.downsample!r}, total_stride={self.total_stride}"
