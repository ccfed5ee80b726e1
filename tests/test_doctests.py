"""The ``Shape:`` and ``Examples:`` of the public layers, metrics and functional forms run
as written: a documented call that stops working fails here."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    *(
        f"invariance_recipes.lightning_modules.layers.{name}"
        for name in (
            "blur_pool",
            "max_blur_pool",
            "conv_blur_pool",
            "polyphase",
            "max_polyphase_pool",
            "learnable_polyphase",
            "ideal_lowpass",
            "alias_free_activation",
            "same_max_pool",
            "spatial_pyramid_pool",
        )
    ),
    *(
        f"invariance_recipes.lightning_modules.metrics.{name}"
        for name in ("consistency", "flip_rate", "mean_absolute_change", "accuracy_vs_shift")
    ),
    "invariance_recipes.lightning_modules.functional",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run_as_written(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} documents no example"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
