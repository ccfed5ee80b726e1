"""The collapse rule, against numbers worked out by hand."""

from __future__ import annotations

import math

from invariance_recipes.run.collapse import chance_ceiling, collapse_reason


def test_one_class_for_ninety_percent_is_a_collapse() -> None:
    reason = collapse_reason([90, 5, 5], accuracy=0.40, num_classes=3)
    assert reason is not None and "class 0 for 90%" in reason and "--model.lr" in reason
    assert collapse_reason([89, 6, 5], accuracy=0.60, num_classes=3) is None


def test_accuracy_near_chance_is_a_collapse() -> None:
    # 10 classes, 400 images: chance 0.1, standard error sqrt(0.1 * 0.9 / 400) = 0.015
    assert math.isclose(chance_ceiling(10, 400), 0.1 + 2 * 0.015)
    spread = [40] * 10
    assert "within two standard errors of chance" in collapse_reason(spread, 0.13, 10)
    assert collapse_reason(spread, 0.131, 10) is None


def test_no_images_is_not_judged() -> None:
    assert collapse_reason([0, 0], accuracy=0.0, num_classes=2) is None
