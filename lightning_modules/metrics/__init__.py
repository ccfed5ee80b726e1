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
from lightning_modules.metrics.protocol_report import ProtocolReport, evaluate_protocols
from lightning_modules.metrics.protocols import PROTOCOLS, ProtocolSpec, get_protocol
from lightning_modules.metrics.report import ShiftReport, evaluate_shift_robustness
from lightning_modules.metrics.worst_case import WorstCaseConsistency

__all__ = [
    "PROTOCOLS",
    "AccuracyVsShift",
    "EquivarianceError",
    "FlipRate",
    "MeanAbsoluteChange",
    "ProtocolReport",
    "ProtocolSpec",
    "ShiftConsistency",
    "ShiftReport",
    "WorstCaseConsistency",
    "equivariance_error",
    "evaluate_protocols",
    "evaluate_shift_robustness",
    "feature_equivariance_error",
    "get_protocol",
]
