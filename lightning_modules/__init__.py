"""The model side: anti-aliased and polyphase layers, networks, shift metrics, and the one
LightningModule every variant trains with. Importable on its own."""

from lightning_modules.classifier import InvarianceClassifier
from lightning_modules.layers import (
    BlurPool2d,
    ConvBlurPool2d,
    MaxBlurPool2d,
    PolyphaseDownsample2d,
    aps_downsample,
    binomial_filter,
)
from lightning_modules.metrics import (
    AccuracyVsShift,
    EquivarianceError,
    FlipRate,
    MeanAbsoluteChange,
    ShiftConsistency,
    ShiftReport,
    evaluate_shift_robustness,
    feature_equivariance_error,
)
from lightning_modules.nets import antialias, build_net
from lightning_modules.shifts import offset_sweep, sample_offsets, translate
from lightning_modules.variants import VARIANTS, Variant, get_variant

__all__ = [
    "VARIANTS",
    "AccuracyVsShift",
    "BlurPool2d",
    "ConvBlurPool2d",
    "EquivarianceError",
    "FlipRate",
    "InvarianceClassifier",
    "MaxBlurPool2d",
    "MeanAbsoluteChange",
    "PolyphaseDownsample2d",
    "ShiftConsistency",
    "ShiftReport",
    "Variant",
    "antialias",
    "aps_downsample",
    "binomial_filter",
    "build_net",
    "evaluate_shift_robustness",
    "feature_equivariance_error",
    "get_variant",
    "offset_sweep",
    "sample_offsets",
    "translate",
]
