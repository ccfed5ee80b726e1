"""torchmetrics metrics of translation invariance and equivariance, and a one-call report."""

from lightning_modules.metrics.accuracy_vs_shift import AccuracyVsShift
from lightning_modules.metrics.consistency import ShiftConsistency
from lightning_modules.metrics.equivariance import (
    EquivarianceError,
    equivariance_error,
    feature_equivariance_error,
)
from lightning_modules.metrics.flip_rate import FlipRate
from lightning_modules.metrics.mean_absolute_change import MeanAbsoluteChange
from lightning_modules.metrics.report import ShiftReport, evaluate_shift_robustness

__all__ = [
    "AccuracyVsShift",
    "EquivarianceError",
    "FlipRate",
    "MeanAbsoluteChange",
    "ShiftConsistency",
    "ShiftReport",
    "equivariance_error",
    "evaluate_shift_robustness",
    "feature_equivariance_error",
]
