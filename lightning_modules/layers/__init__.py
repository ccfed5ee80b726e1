"""Anti-aliased, polyphase and alias-free layers (Zhang 2019; Chaman & Dokmanic 2021;
Rojas-Gomez et al. 2022; Michaeli, Michaeli & Soudry 2023)."""

from invariance_recipes.lightning_modules.layers.alias_free_activation import (
    NONLINEARITIES,
    AliasFreeActivation,
)
from invariance_recipes.lightning_modules.layers.binomial import binomial_filter
from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.circular_conv import CircularConv2d
from invariance_recipes.lightning_modules.layers.conv_blur_pool import ConvBlurPool2d
from invariance_recipes.lightning_modules.layers.ideal_lowpass import (
    IdealLowPassDownsample2d,
    ideal_downsample,
    ideal_upsample,
)
from invariance_recipes.lightning_modules.layers.learnable_polyphase import (
    MIXTURES,
    LearnablePolyphaseDownsample2d,
    PolyphaseFollower2d,
    PolyphaseScoringNet,
)
from invariance_recipes.lightning_modules.layers.max_blur_pool import MaxBlurPool2d
from invariance_recipes.lightning_modules.layers.max_learnable_polyphase_pool import (
    MaxLearnablePolyphasePool2d,
)
from invariance_recipes.lightning_modules.layers.max_polyphase_pool import MaxPolyphasePool2d
from invariance_recipes.lightning_modules.layers.padding import PAD_TYPES, circular_pad, pad2d
from invariance_recipes.lightning_modules.layers.polyphase import (
    NORMS,
    PolyphaseDownsample2d,
    aps_downsample,
    polyphase_stack,
    select_phase,
    take_phase,
)
from invariance_recipes.lightning_modules.layers.same_max_pool import SameMaxPool2d
from invariance_recipes.lightning_modules.layers.spatial_pyramid_pool import (
    SPP_MODES,
    SpatialPyramidPool2d,
)

__all__ = [
    "MIXTURES",
    "NONLINEARITIES",
    "NORMS",
    "PAD_TYPES",
    "SPP_MODES",
    "AliasFreeActivation",
    "BlurPool2d",
    "CircularConv2d",
    "ConvBlurPool2d",
    "IdealLowPassDownsample2d",
    "LearnablePolyphaseDownsample2d",
    "MaxBlurPool2d",
    "MaxLearnablePolyphasePool2d",
    "MaxPolyphasePool2d",
    "PolyphaseDownsample2d",
    "PolyphaseFollower2d",
    "PolyphaseScoringNet",
    "SameMaxPool2d",
    "SpatialPyramidPool2d",
    "aps_downsample",
    "binomial_filter",
    "circular_pad",
    "ideal_downsample",
    "ideal_upsample",
    "pad2d",
    "polyphase_stack",
    "select_phase",
    "take_phase",
]
