"""Per-image outcomes of a checkpoint: what the paired tests between variants compare.

A share (accuracy, consistency) hides which images changed; McNemar's test and the paired
bootstrap need, for every test image, whether the run got it right and whether its prediction
agreed under each shift. Every run has the same test split, and ShiftReport keys its offsets by
each image and the model's shift seed, so all variants see identical shifted copies and their
outcomes pair up image by image. A trained run is measured once (:func:`measure_run`): the
table's columns are the means of these outcomes.

Saved as ``outcomes.npz`` in the run folder (arrays aligned with ``index``, the sample's position
in the test split), with a fingerprint of the test images so two files can be checked to pair.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

import numpy as np
import torch

from invariance_recipes.common.atomic_write import atomic_path
from invariance_recipes.lightning_modules.callbacks import TESTED
from invariance_recipes.lightning_modules.classifier import InvarianceClassifier
from invariance_recipes.measure.evaluation import (
    PROTOCOL_PREFIX,
    evaluation_pass,
    protocol_scalars,
)
from invariance_recipes.run.checkpoints import load_checkpoint

OUTCOMES_NPZ = "outcomes.npz"
#: Per-image arrays that are not proportions of the table.
NOT_COLUMNS = ("label", "prediction", "index", "images_sha256")


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint the training run tested (its best by validation accuracy), as its test
    recorded in ``TESTED``."""
    record = run_dir / TESTED
    if not record.is_file():
        raise FileNotFoundError(f"{run_dir} has no {TESTED} (written by its test): train it again")
    return run_dir / json.loads(record.read_text())["checkpoint"]


@dataclass
class Measurement:
    """A trained run measured once: the table's columns and the per-image outcomes they are
    the means of, and the model that was measured (for columns read from the network)."""

    columns: dict[str, float]
    outcomes: dict[str, np.ndarray]
    model: InvarianceClassifier


@torch.inference_mode()
def measure_run(
    run_dir: Path,
    *,
    max_shifts: Sequence[int],
    modes: Sequence[str],
    regions: Sequence[str] = (),
    seen: str | None = None,
    protocols: Sequence[str] = (),
    device: str | torch.device = "cpu",
) -> Measurement:
    """Load the checkpoint the run tested once and measure everything the tables need.

    Per test image: ``acc``, ``flip_rate`` and one ``consistency_MODE@S`` per mode and max
    shift, from one pass with ShiftReport's keyed offsets (Zhang 2019's random pairs, Azulay
    & Weiss's one-pixel step); with ``regions``, ``acc@REGION`` with the test objects placed
    there (one more pass each) and ``acc@unseen``, the regions other than ``seen`` one after
    the other. Every proportion column is the mean of its outcome; ``mac`` is ShiftReport's,
    and ``unseen_drop`` the seen region's accuracy minus the unseen one. With ``protocols``,
    the same pass measures them: their numbers (``test/<protocol>/<metric>_<source>``, each
    by its own aggregation) and their per-image outcomes, for the paired tests.
    """
    model, data_hparams = load_checkpoint(best_checkpoint(run_dir))
    report, outcomes = evaluation_pass(
        model,
        data_hparams,
        max_shifts=max_shifts,
        modes=modes,
        curve_max_shift=1,
        protocols=protocols,
        device=device,
    )
    unseen = []
    for region in regions:
        _, there = evaluation_pass(
            model, data_hparams, max_shifts=(), modes=(), test_placement=region, device=device
        )
        outcomes[f"acc@{region}"] = there["acc"]
        if region != seen:
            unseen.append(there["acc"])
    if unseen:  # [images, quadrants]: an image is one image, whichever quadrant it is in
        outcomes["acc@unseen"] = np.stack(unseen, axis=1)
    columns = {
        key: float(values.mean())
        for key, values in outcomes.items()
        if key not in NOT_COLUMNS and not key.startswith(PROTOCOL_PREFIX)
    }
    columns |= protocol_scalars(report)
    if "mac" in report:
        columns["mac"] = report["mac"]
    if unseen and seen in regions:
        columns["unseen_drop"] = columns[f"acc@{seen}"] - fmean(
            columns[f"acc@{r}"] for r in regions if r != seen
        )
    return Measurement(columns, outcomes, model)


def save_outcomes(outcomes: dict[str, np.ndarray], run_dir: Path) -> Path:
    """Write the outcomes to ``run_dir/outcomes.npz`` (compressed; booleans stay 1 byte)."""
    path = run_dir / OUTCOMES_NPZ
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a kill never leaves half a file
        np.savez_compressed(f, **outcomes)
    return path


def load_outcomes(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an outcomes file (no pickled objects allowed); a damaged file is a
    ``ValueError`` naming it."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            outcomes = {key: npz[key] for key in npz.files}
    except Exception as err:  # cut short, overwritten, not an npz: zipfile, OSError, ValueError
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {reason}); delete it and rerun the "
            "comparison: it is measured again from the run's checkpoint"
        ) from None
    return outcomes


def outcomes_of_rows(out: Path, rows: Sequence[dict]) -> dict[str, dict[str, np.ndarray]]:
    """The outcomes of every row of a results folder that names an existing outcomes file."""
    found = {}
    for row in rows:
        name = row.get("outcomes", "")
        if name and (out / name).is_file():
            found[row["run"]] = load_outcomes(out / name)
    return found


def check_paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    """Raise ``ValueError`` unless two runs' outcomes are on the same test images."""
    if str(a["images_sha256"]) != str(b["images_sha256"]):
        raise ValueError(
            f"{what}: the outcomes are on different test images, so they cannot be paired: "
            f"compare runs with the same seed and data options"
        )
