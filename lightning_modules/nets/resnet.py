"""CIFAR-style ResNet-18 on torchvision's ``ResNet`` and ``BasicBlock``, with every option."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet, conv1x1

from invariance_recipes.common.borders import torch_padding_mode
from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.nets.downsample import (
    create_activation,
    create_downsample,
    create_shortcut,
    get_downsampler,
)
from invariance_recipes.lightning_modules.nets.heads import ClassifierHead
from invariance_recipes.lightning_modules.nets.input_check import check_input
from invariance_recipes.lightning_modules.nets.options import DEFAULTS, NetOptions


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
        options: the network's options; ``downsample`` (other than ``strided``, which keeps
            torchvision's own block), ``padding_mode`` and ``filt_size`` build the steps.
    """

    def __init__(self, inplanes: int, planes: int, options: NetOptions) -> None:
        kind = options.downsample
        spec = get_downsampler(kind)
        shortcut_conv = nn.Sequential(
            conv1x1(inplanes, planes, spec.shortcut_stride), spec.norm(planes)
        )
        super().__init__(inplanes, planes, downsample=shortcut_conv, norm_layer=spec.norm)
        self.step = create_downsample(planes, options, in_block=True)
        self.shortcut = create_shortcut(inplanes, options)
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
        options: the network's options (the shared ones; the stages are fixed, see
            :func:`invariance_recipes.lightning_modules.nets.build_net`).
    """

    total_stride = 8

    def __init__(
        self, in_channels: int, num_classes: int, image_size: int, options: NetOptions = DEFAULTS
    ) -> None:
        check_positive("in_channels", in_channels)
        check_positive("image_size", image_size)
        downsample = options.downsample
        strided = get_downsampler(downsample).step is None
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
                layer[0] = DownsamplingBasicBlock(inplanes, planes, options)
                new_convs += [m for m in layer[0].modules() if isinstance(m, nn.Conv2d)]
        for conv in new_convs:  # torchvision's ResNet initialization
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and any(module.padding):
                module.padding_mode = torch_padding_mode(options.padding_mode)
        spatial = math.ceil(image_size / self.total_stride)
        self.head = ClassifierHead(512, spatial, num_classes, options)

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
