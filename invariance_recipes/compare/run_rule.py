"""The rule, fixed before the runs, for a run that did not train: it is no evidence, so the
tables leave it out and say why.

A run did not train when its test predictions collapsed (``run.collapse.collapse_reason``: one
class for 90% of the images, or accuracy within two standard errors of chance), or when
``results.csv`` marks it so in an optional flag column: ``trained`` (false: did not train) or
``plateaued`` (false: its validation accuracy had not plateaued at the step budget, see the
run's ``curve.csv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from invariance_recipes.run.collapse import collapse_reason

# Flag column -> why a false value leaves the run out.
FLAGS = {
    "trained": "marked as not trained in results.csv",
    "plateaued": "validation accuracy had not plateaued at the step budget (see its curve.csv)",
}
TRUE, FALSE = ("true", "1", "1.0", "yes"), ("false", "0", "0.0", "no")


def parse_flag(value: Any) -> float | str:
    """A flag cell as the 1.0 / 0.0 the comparison writes (``true``/``false``, ``1``/``0``,
    ``yes``/``no`` are read too); empty stays ``""``."""
    text = str(value).strip().lower()
    if text == "":
        return ""
    if text in TRUE or text in FALSE:
        return float(text in TRUE)
    raise ValueError(f"flag value {value!r}: write true or false (or 1 / 0)")


def did_not_train(row: Mapping[str, Any], outcomes: Mapping[str, np.ndarray] | None) -> str | None:
    """Why a run is no evidence, or None when it trained."""
    for flag, why in FLAGS.items():
        if parse_flag(row.get(flag, "")) == 0.0:
            return why
    if outcomes and "prediction" in outcomes and "label" in outcomes:
        prediction, label = np.asarray(outcomes["prediction"]), np.asarray(outcomes["label"])
        classes = int(max(prediction.max(), label.max())) + 1
        counts = np.bincount(prediction, minlength=classes)
        return collapse_reason(counts.tolist(), float(np.mean(prediction == label)), classes)
    return None


def split_trained(
    rows: Sequence[dict], outcomes: Mapping[str, Mapping[str, np.ndarray]]
) -> tuple[list[dict], list[tuple[dict, str]]]:
    """The rows that are evidence, and those left out with the reason."""
    kept, left_out = [], []
    for row in rows:
        reason = did_not_train(row, outcomes.get(row["run"]))
        if reason is None:
            kept.append(row)
        else:
            left_out.append((row, reason))
    return kept, left_out
