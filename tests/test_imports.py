"""The layering of the packages, checked in fresh interpreters: what each import pulls in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recipe_runs import ROOT

# every test here starts fresh interpreters: the full suite runs them, not the inner loop
pytestmark = pytest.mark.slow

HEAVY = ("lightning", "pytorch_lightning", "torchmetrics", "wandb", "albumentations")


def loaded_after(statement: str) -> set[str]:
    """Top-level modules in ``sys.modules`` after running ``statement`` in a new process."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "module",
    [
        "lightning_modules.layers",
        "lightning_modules.nets",
        "lightning_modules.shifts",
        "lightning_modules",
    ],
)
def test_torch_only_parts_import_no_framework(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_metrics_need_torchmetrics_but_not_lightning() -> None:
    loaded = loaded_after("import lightning_modules.metrics")
    assert "torchmetrics" in loaded
    assert not loaded & {"lightning", "pytorch_lightning", "wandb", "albumentations"}


def test_lazy_names_resolve_to_their_definitions() -> None:
    import lightning_modules
    from lightning_modules.layers.blur_pool import BlurPool2d

    assert lightning_modules.BlurPool2d is BlurPool2d
    assert set(lightning_modules.__all__) <= set(dir(lightning_modules))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = lightning_modules.Nope


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import datamodules", "lightning_modules"),
        (
            "import lightning_modules, lightning_modules.metrics, lightning_modules.nets",
            "datamodules",
        ),
        ("import invariance_common.checks, invariance_common.shift_modes", "torch"),
    ],
)
def test_the_model_side_and_the_data_side_do_not_import_each_other(
    statement: str, forbidden: str
) -> None:
    assert forbidden not in loaded_after(statement)
