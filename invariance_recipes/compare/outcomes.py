"""Per-image outcomes of a checkpoint: what the paired tests between variants compare.

A share (accuracy, consistency) hides which images changed; McNemar's test and the paired
bootstrap need, for every test image, whether the run got it right and whether its prediction
agreed under each shift. Every variant trained with the same seed has the same test split, and
the offsets are keyed by each image and the model's shift seed
(``invariance_recipes.lightning_modules.shifts.sample_offset_pair``), so all variants see identical shifted copies
and their outcomes pair up image by image.

Saved as ``outcomes.npz`` in the run folder (arrays aligned with ``index``, the sample's position
in the test split), with a fingerprint of the test images so two files can be checked to pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from invariance_recipes.common.atomic_write import atomic_path
from invariance_recipes.compare.experiments import Experiment, best_checkpoint
from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules.crop_shift import center_view
from invariance_recipes.lightning_modules.shifts import (
    sample_integers,
    sample_offset_pair,
    translate,
)
from invariance_recipes.run.checkpoints import load_checkpoint

OUTCOMES_NPZ = "outcomes.npz"


def agreement_key(mode: str, max_shift: int) -> str:
    """The name of a consistency outcome, as in the results columns (``consistency_zero@4``)."""
    return f"consistency_{mode}@{max_shift}"


@torch.no_grad()
def record_outcomes(
    ckpt: Path,
    *,
    max_shifts: Sequence[int],
    modes: Sequence[str],
    test_placement: str | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Per test image of the checkpoint's own test split: the label, the clean prediction,
    ``acc`` (clean prediction correct), one ``consistency_MODE@S`` per mode and max shift (the
    predictions on two copies shifted by independent keyed offsets of up to S px agree, as in
    Zhang 2019) and ``flip_rate`` (the prediction changes under a diagonal one-pixel step with
    keyed signs, as in Azulay & Weiss 2019). ``test_placement`` moves the test objects to
    another placement, as ``evaluate_checkpoint`` does.
    """
    model, data_hparams = load_checkpoint(ckpt)
    model.to(device).eval()
    overrides: dict[str, object] = {"batch_size": batch_size, "num_workers": 0}
    if test_placement:
        overrides["test_placement"] = test_placement
    data = TranslationDataModule(**{**data_hparams, **overrides})
    data.setup("test")
    seed, fill = model.hparams.shift_seed, data.fill_value
    parts: dict[str, list[Tensor]] = {}
    digest = hashlib.sha256()
    for canvas, y in data.test_dataloader():
        x, y = center_view(canvas.to(device), data.image_size), y.to(device)  # what the net sees
        digest.update(x.detach().cpu().numpy().tobytes())
        clean = model(x).argmax(dim=1)
        batch = {"label": y, "prediction": clean, "acc": clean == y}
        for max_shift in max_shifts:
            pair = sample_offset_pair(x, max_shift, seed)
            for mode in modes:
                first, second = model(translate(x.repeat(2, 1, 1, 1), pair, mode, fill)).chunk(2)
                agree = first.argmax(dim=1) == second.argmax(dim=1)
                batch[agreement_key(mode, max_shift)] = agree
        steps = sample_integers(x, 2, -1 - seed) * 2 - 1  # ShiftReport's one-pixel steps
        batch["flip_rate"] = model(translate(x, steps, "zero", fill)).argmax(dim=1) != clean
        for key, value in batch.items():
            parts.setdefault(key, []).append(value.cpu())
    outcomes = {key: torch.cat(values).numpy() for key, values in parts.items()}
    outcomes["index"] = np.arange(len(outcomes["label"]))
    outcomes["images_sha256"] = np.array(digest.hexdigest())
    return outcomes


def experiment_outcomes(
    experiment: Experiment, run_dir: Path, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """The outcomes behind every proportion column of the experiment, on the run's best
    checkpoint: accuracy, flip rate and consistency per mode and max shift; with test regions,
    ``acc@REGION`` per region and ``acc@unseen``, the regions never seen in training one after
    the other (so its mean is the mean over those regions, as in the table)."""
    ckpt = best_checkpoint(run_dir)
    outcomes = record_outcomes(
        ckpt, max_shifts=experiment.max_shifts, modes=experiment.modes, device=device
    )
    unseen = []
    for region in experiment.regions:
        there = record_outcomes(ckpt, max_shifts=(), modes=(), test_placement=region, device=device)
        outcomes[f"acc@{region}"] = there["acc"]
        if region != experiment.placement:
            unseen.append(there["acc"])
    if unseen:
        outcomes["acc@unseen"] = np.concatenate(unseen)
    return outcomes


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
