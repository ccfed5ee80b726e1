"""The model side: anti-aliased and polyphase layers, networks, shift metrics, and the one
LightningModule every variant trains with.

Names are imported on first use (PEP 562), so ``import invariance_recipes.lightning_modules.layers`` costs what
``import torch`` costs: Lightning loads only with :class:`InvarianceClassifier`, and
torchmetrics only with the metrics.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Public name -> the submodule that defines it.
_EXPORTS = {
    "InvarianceClassifier": "invariance_recipes.lightning_modules.classifier",
    "BlurPool2d": "invariance_recipes.lightning_modules.layers",
    "ConvBlurPool2d": "invariance_recipes.lightning_modules.layers",
    "MaxBlurPool2d": "invariance_recipes.lightning_modules.layers",
    "PolyphaseDownsample2d": "invariance_recipes.lightning_modules.layers",
    "aps_downsample": "invariance_recipes.lightning_modules.layers",
    "binomial_filter": "invariance_recipes.lightning_modules.layers",
    "AccuracyVsShift": "invariance_recipes.lightning_modules.metrics",
    "EquivarianceError": "invariance_recipes.lightning_modules.metrics",
    "FlipRate": "invariance_recipes.lightning_modules.metrics",
    "MeanAbsoluteChange": "invariance_recipes.lightning_modules.metrics",
    "ShiftConsistency": "invariance_recipes.lightning_modules.metrics",
    "ShiftReport": "invariance_recipes.lightning_modules.metrics",
    "evaluate_shift_robustness": "invariance_recipes.lightning_modules.metrics",
    "feature_equivariance_error": "invariance_recipes.lightning_modules.metrics",
    "antialias": "invariance_recipes.lightning_modules.nets",
    "build_net": "invariance_recipes.lightning_modules.nets",
    "offset_sweep": "invariance_recipes.lightning_modules.shifts",
    "sample_offsets": "invariance_recipes.lightning_modules.shifts",
    "translate": "invariance_recipes.lightning_modules.shifts",
    "VARIANTS": "invariance_recipes.lightning_modules.variants",
    "Variant": "invariance_recipes.lightning_modules.variants",
    "get_variant": "invariance_recipes.lightning_modules.variants",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # static checkers and IDEs see the names directly
    from invariance_recipes.lightning_modules.classifier import InvarianceClassifier
    from invariance_recipes.lightning_modules.layers import (
        BlurPool2d,
        ConvBlurPool2d,
        MaxBlurPool2d,
        PolyphaseDownsample2d,
        aps_downsample,
        binomial_filter,
    )
    from invariance_recipes.lightning_modules.metrics import (
        AccuracyVsShift,
        EquivarianceError,
        FlipRate,
        MeanAbsoluteChange,
        ShiftConsistency,
        ShiftReport,
        evaluate_shift_robustness,
        feature_equivariance_error,
    )
    from invariance_recipes.lightning_modules.nets import antialias, build_net
    from invariance_recipes.lightning_modules.shifts import offset_sweep, sample_offsets, translate
    from invariance_recipes.lightning_modules.variants import VARIANTS, Variant, get_variant
