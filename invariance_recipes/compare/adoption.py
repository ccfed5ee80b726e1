"""A comparison run that its tuning has trained already is adopted, not trained again.

``--tune`` trains every arm once per grid point with seed 0, the seed of the arm's first
comparison run, so the trial of the chosen point trained exactly what that run would train.
When the trial still holds its checkpoints and its saved options equal the run's (the run's
name and folder aside), the run takes over the trial's training: the trial's folder is copied
under the run's name, the checkpoints are told where they now are, and the run is resumed
from there, which only tests its best checkpoint. On this CPU that gives the run trained
again bit for bit (tested) and saves one training run per arm, an eighth of a tuned 5-seed
comparison. The run keeps the trial's record of its code (``started.json``) and its training
seconds; its W&B run starts at the test (the training curve is the trial's W&B run's).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from invariance_recipes.lightning_modules.callbacks import TESTED
from invariance_recipes.run.checkpoints import LAST
from invariance_recipes.run.cli import TrainCLI
from invariance_recipes.run.loggers import WANDB_ID_FILE
from invariance_recipes.run.run_folders import CHECKPOINTS, STATUS, versions
from invariance_recipes.run.training import TEST_METRICS

#: Options that name a run, its folder and where it reports, that a tuning run sets to skip
#: its test, or that act on the test alone: the rest must be equal for the trial to be the run.
BOOKKEEPING = (
    "run_name", "runs_dir", "resume", "ckpt_path", "logger", "project", "experiment",
    "log_model", "on_collapse", "trainer.limit_test_batches", "trainer.enable_progress_bar",
)  # fmt: skip
#: What a trial's folder holds that belongs to that run alone: its (skipped) test's outputs,
#: how it ended, its W&B run.
NOT_ADOPTED = (TEST_METRICS, TESTED, STATUS, WANDB_ID_FILE, "wandb")
#: The path fields of a ModelCheckpoint's state (``best_k_models`` is keyed by paths too).
CHECKPOINT_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


def adopt_trial(args: Sequence[str], name: str, trial_dir: Path, runs_dir: Path) -> bool:
    """Give run ``name`` (training options ``args``) the training of the tuning run in
    ``trial_dir``, if that run trained the same options and kept its checkpoints; returns
    whether it did. The run must have no folder yet."""
    if versions(runs_dir, name) or not (trial_dir / CHECKPOINTS / LAST).is_file():
        return False
    if without_bookkeeping(saved_options(trial_dir)) != without_bookkeeping(options_of(args)):
        return False
    staging = runs_dir / f".adopting-{name}"
    shutil.rmtree(staging, ignore_errors=True)  # a copy an earlier attempt left half done
    shutil.copytree(trial_dir, staging, ignore=shutil.ignore_patterns(*NOT_ADOPTED))
    run_dir = runs_dir / name
    for checkpoint in (staging / CHECKPOINTS).glob("*.ckpt"):
        relocate_checkpoint(checkpoint, run_dir / CHECKPOINTS)
    staging.rename(run_dir)  # whole or not at all: a resume never sees half a copy
    return True


def options_of(args: Sequence[str]) -> dict[str, Any]:
    """The full configuration a training command line resolves to, variant preset included,
    without building anything (the CLI's ``--print_config``)."""
    printed = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(printed):
        TrainCLI([*args, "--print_config"])
    return yaml.safe_load(printed.getvalue())


def saved_options(run_dir: Path) -> dict[str, Any]:
    """The configuration a run was trained with (its ``config.yaml``)."""
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def without_bookkeeping(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the :data:`BOOKKEEPING` options."""
    trimmed = {
        key: dict(value) if isinstance(value, dict) else value for key, value in config.items()
    }
    for option in BOOKKEEPING:
        *parents, leaf = option.split(".")
        node = trimmed
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return trimmed


def relocate_checkpoint(path: Path, folder: Path) -> None:
    """Point the checkpoint callbacks' state in ``path`` at ``folder``, where the copied
    checkpoints will be. Lightning restores that state when it resumes from a checkpoint and
    when it tests one, and of a moved folder it keeps only the best path, which would be the
    trial's; relocated, the run tests and names its own copies."""
    folder = Path(os.path.realpath(folder))  # how ModelCheckpoint records its folder
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key, state in checkpoint.get("callbacks", {}).items():
        if not key.startswith("ModelCheckpoint"):
            continue
        state["dirpath"] = str(folder)
        for field in CHECKPOINT_PATHS:
            if state.get(field):
                state[field] = str(folder / Path(state[field]).name)
        state["best_k_models"] = {
            str(folder / Path(path).name): score for path, score in state["best_k_models"].items()
        }
    torch.save(checkpoint, path)
