"""One definition of a run that did not learn. A model that predicts one class for almost
every image, or scores no better than chance, has a shift consistency near 1 and a flip
rate near 0 for the wrong reason: in a comparison it would look like the most shift-stable
variant. ``train.py``, ``evaluate.py`` and the comparisons all use :func:`collapse_reason`,
and the comparisons' "did not train" rule builds on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

# One predicted class for at least this share of the images is a collapse.
MAX_CLASS_SHARE = 0.9
# Accuracy within this many binomial standard errors of chance is a collapse.
CHANCE_STANDARD_ERRORS = 2.0


def chance_ceiling(num_classes: int, num_images: int) -> float:
    """The highest accuracy still indistinguishable from guessing: chance plus two binomial
    standard errors of a guesser on ``num_images`` images."""
    chance = 1.0 / num_classes
    return chance + CHANCE_STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / num_images)


def collapse_reason(
    predicted_counts: Sequence[int], accuracy: float, num_classes: int
) -> str | None:
    """Why the predictions are a collapse, or None when they are not.

    Args:
        predicted_counts: how many images were predicted as each class.
        accuracy: the share of correct predictions, in [0, 1].
        num_classes: the number of classes of the task.
    """
    total = sum(predicted_counts)
    if total == 0 or num_classes < 2:
        return None
    top = max(predicted_counts)
    if top >= MAX_CLASS_SHARE * total:
        cls = list(predicted_counts).index(top)
        return (
            f"the model predicts class {cls} for {top / total:.0%} of the {total} images, so "
            "its shift consistency and flip rate are meaningless; lower --model.lr or train longer"
        )
    ceiling = chance_ceiling(num_classes, total)
    if accuracy <= ceiling:
        return (
            f"accuracy {accuracy:.4f} is within two standard errors of chance "
            f"({1 / num_classes:.4f}) on {total} images, so its shift consistency and flip rate "
            "are meaningless; lower --model.lr or train longer"
        )
    return None
