"""The model side: anti-aliased and polyphase layers, networks, shift metrics, and the one
LightningModule every variant trains with.

Names are imported on first use (PEP 562), so ``import lightning_modules.layers`` costs what
``import torch`` costs: Lightning loads only with :class:`InvarianceClassifier`, and
torchmetrics only with the metrics.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    "InvarianceClassifier": "lightning_modules.classifier",
    "BlurPool2d": "lightning_modules.layers",
    "ConvBlurPool2d": "lightning_modules.layers",
    "MaxBlurPool2d": "lightning_modules.layers",
    "PolyphaseDownsample2d": "lightning_modules.layers",
    "aps_downsample": "lightning_modules.layers",
    "binomial_filter": "lightning_modules.layers",
    "AccuracyVsShift": "lightning_modules.metrics",
    "EquivarianceError": "lightning_modules.metrics",
    "FlipRate": "lightning_modules.metrics",
    "MeanAbsoluteChange": "lightning_modules.metrics",
    "ShiftConsistency": "lightning_modules.metrics",
    "ShiftReport": "lightning_modules.metrics",
    "evaluate_shift_robustness": "lightning_modules.metrics",
    "feature_equivariance_error": "lightning_modules.metrics",
    "antialias": "lightning_modules.nets",
    "build_net": "lightning_modules.nets",
    "offset_sweep": "lightning_modules.shifts",
    "sample_offsets": "lightning_modules.shifts",
    "translate": "lightning_modules.shifts",
    "VARIANTS": "lightning_modules.variants",
    "Variant": "lightning_modules.variants",
    "get_variant": "lightning_modules.variants",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static checkers and IDEs see the names directly
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
