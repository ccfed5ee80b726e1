"""Networks built from plain options through three registries (backbones, downsampling
methods, heads), and ``antialias`` for torchvision models. Imports only torch and
torchvision."""

from invariance_recipes.lightning_modules.nets.antialias import antialias
from invariance_recipes.lightning_modules.nets.build import BACKBONES, Backbone, build_net
from invariance_recipes.lightning_modules.nets.downsample import (
    DOWNSAMPLERS,
    Downsampler,
    create_activation,
    create_downsample,
    create_shortcut,
    get_downsampler,
)
from invariance_recipes.lightning_modules.nets.heads import HEADS, ClassifierHead, HeadSpec
from invariance_recipes.lightning_modules.nets.options import (
    ARCHITECTURE_KEYS,
    DEFAULTS,
    PADDING_MODES,
    NetOptions,
)
from invariance_recipes.lightning_modules.nets.receptive_field import (
    RECEPTIVE_FIELD_RULES,
    ReceptiveFieldRow,
    receptive_field,
)
from invariance_recipes.lightning_modules.nets.resnet import CifarResNet18, DownsamplingBasicBlock
from invariance_recipes.lightning_modules.nets.small_cnn import SmallCNN

__all__ = [
    "ARCHITECTURE_KEYS",
    "BACKBONES",
    "DEFAULTS",
    "DOWNSAMPLERS",
    "HEADS",
    "PADDING_MODES",
    "RECEPTIVE_FIELD_RULES",
    "Backbone",
    "CifarResNet18",
    "ClassifierHead",
    "Downsampler",
    "DownsamplingBasicBlock",
    "HeadSpec",
    "NetOptions",
    "ReceptiveFieldRow",
    "SmallCNN",
    "antialias",
    "build_net",
    "create_activation",
    "create_downsample",
    "create_shortcut",
    "get_downsampler",
    "receptive_field",
]
