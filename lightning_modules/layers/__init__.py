"""Anti-aliased and polyphase downsampling layers (Zhang 2019; Chaman & Dokmanic 2021)."""

from lightning_modules.layers.binomial import binomial_filter
from lightning_modules.layers.blur_pool import BlurPool2d
from lightning_modules.layers.conv_blur_pool import ConvBlurPool2d
from lightning_modules.layers.max_blur_pool import MaxBlurPool2d
from lightning_modules.layers.max_polyphase_pool import MaxPolyphasePool2d
from lightning_modules.layers.padding import PAD_TYPES, pad2d
from lightning_modules.layers.polyphase import (
    NORMS,
    PolyphaseDownsample2d,
    aps_downsample,
    select_phase,
    take_phase,
)
from lightning_modules.layers.same_max_pool import SameMaxPool2d
from lightning_modules.layers.spatial_pyramid_pool import SPP_MODES, SpatialPyramidPool2d

__all__ = [
    "NORMS",
    "PAD_TYPES",
    "SPP_MODES",
    "BlurPool2d",
    "ConvBlurPool2d",
    "MaxBlurPool2d",
    "MaxPolyphasePool2d",
    "PolyphaseDownsample2d",
    "SameMaxPool2d",
    "SpatialPyramidPool2d",
    "aps_downsample",
    "binomial_filter",
    "pad2d",
    "select_phase",
    "take_phase",
]
