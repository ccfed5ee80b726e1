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


MODEL_SIDE = "invariance_recipes.lightning_modules"
DATA_SIDE = "invariance_recipes.datamodules"


def loaded_after(statement: str) -> set[str]:
    """Modules in ``sys.modules`` after running ``statement`` in a new process: each top-level
    name, and each module of our own under its full dotted name."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    names = json.loads(out.stdout.strip().splitlines()[-1])
    return {n.split(".")[0] for n in names} | {
        n for n in names if n.startswith("invariance_recipes.")
    }


@pytest.mark.parametrize(
    "module",
    [
        "invariance_recipes.lightning_modules.layers",
        "invariance_recipes.lightning_modules.nets",
        "invariance_recipes.lightning_modules.shifts",
        "invariance_recipes.lightning_modules",
    ],
)
def test_torch_only_parts_import_no_framework(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_metrics_need_torchmetrics_but_not_lightning() -> None:
    loaded = loaded_after("import invariance_recipes.lightning_modules.metrics")
    assert "torchmetrics" in loaded
    assert not loaded & {"lightning", "pytorch_lightning", "wandb", "albumentations"}


def test_lazy_names_resolve_to_their_definitions() -> None:
    import invariance_recipes.lightning_modules
    from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d

    assert invariance_recipes.lightning_modules.BlurPool2d is BlurPool2d
    assert set(invariance_recipes.lightning_modules.__all__) <= set(
        dir(invariance_recipes.lightning_modules)
    )
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = invariance_recipes.lightning_modules.Nope


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        (f"import {DATA_SIDE}", MODEL_SIDE),
        (f"import {MODEL_SIDE}, {MODEL_SIDE}.metrics, {MODEL_SIDE}.nets", DATA_SIDE),
        ("import invariance_recipes.common.checks, invariance_recipes.common.borders", "torch"),
    ],
)
def test_the_model_side_and_the_data_side_do_not_import_each_other(
    statement: str, forbidden: str
) -> None:
    assert forbidden not in loaded_after(statement)
