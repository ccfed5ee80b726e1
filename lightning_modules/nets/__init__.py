"""Networks built from plain options, and ``antialias`` for torchvision models."""

from lightning_modules.nets.antialias import antialias
from lightning_modules.nets.build import build_net
from lightning_modules.nets.heads import ClassifierHead
from lightning_modules.nets.options import BACKBONES, DOWNSAMPLES, HEADS, PADDING_MODES
from lightning_modules.nets.resnet import CifarResNet18, DownsamplingBasicBlock
from lightning_modules.nets.small_cnn import SmallCNN

__all__ = [
    "BACKBONES",
    "DOWNSAMPLES",
    "HEADS",
    "PADDING_MODES",
    "CifarResNet18",
    "ClassifierHead",
    "DownsamplingBasicBlock",
    "SmallCNN",
    "antialias",
    "build_net",
]
