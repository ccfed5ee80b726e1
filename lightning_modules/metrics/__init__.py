"""torchmetrics metrics of translation invariance and equivariance, and a one-call report."""

from invariance_recipes.common.extras import require_extra

require_extra("metrics")  # one line naming the pip install when the extra is missing

from invariance_recipes.lightning_modules.metrics.accuracy_vs_shift import AccuracyVsShift
from invariance_recipes.lightning_modules.metrics.consistency import ShiftConsistency
from invariance_recipes.lightning_modules.metrics.equivariance import (
    EquivarianceError,
    equivariance_error,
    feature_equivariance_error,
)
from invariance_recipes.lightning_modules.metrics.flip_rate import FlipRate
from invariance_recipes.lightning_modules.metrics.mean_absolute_change import MeanAbsoluteChange
from invariance_recipes.lightning_modules.metrics.protocol_report import (
    ProtocolReport,
    evaluate_protocols,
)
from invariance_recipes.lightning_modules.metrics.protocols import (
    PROTOCOLS,
    ProtocolSpec,
    get_protocol,
)
from invariance_recipes.lightning_modules.metrics.report import (
    ShiftReport,
    evaluate_shift_robustness,
)
from invariance_recipes.lightning_modules.metrics.worst_case import WorstCaseConsistency

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
