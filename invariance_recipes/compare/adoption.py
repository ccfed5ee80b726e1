"""A comparison run that was trained already is adopted, not trained again.

Two cases train the same thing twice. ``--tune`` trains every arm once per grid point with
seed 0, the seed of the arm's first comparison run, so the trial of the chosen point trained
exactly what that run would train. And two experiments may share a configuration (the
receptive-field experiment's three-stage network is the unseen-position baseline); with
``--reuse-runs`` a comparison looks for its runs and tuning runs in the other's folder.

A finished run with checkpoints whose saved options equal the run's (the run's name, folder
and reporting aside, seed included) is adopted: its folder is copied under the run's name, the
checkpoints are told where they now are, and the run is resumed from there, which only tests
its best checkpoint. On this CPU that gives the run trained again bit for bit (tested). The
run keeps the adopted run's record of its code (``started.json``) and its training seconds,
and names the folder it adopted (``adopted.json``); its W&B run starts at the test (the
training curve is in the adopted run's W&B run).
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

from invariance_recipes.common.atomic_write import atomic_write_json
from invariance_recipes.compare.tuning import tuning_runs
from invariance_recipes.lightning_modules.callbacks import TESTED
from invariance_recipes.measure.outcomes import OUTCOMES_NPZ
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
#: In an adopted run's folder: the run folder whose training it took over.
ADOPTED_JSON = "adopted.json"
#: What a run's folder holds that belongs to that run alone: its test's outputs (a tuning
#: run's test is skipped; a comparison run's is done again), its measured outcomes, how it
#: ended, its W&B run.
NOT_ADOPTED = (
    TEST_METRICS, TESTED, "shift_*", OUTCOMES_NPZ, STATUS, WANDB_ID_FILE, "wandb", ADOPTED_JSON,
)  # fmt: skip
#: The path fields of a ModelCheckpoint's state (``best_k_models`` is keyed by paths too).
CHECKPOINT_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


def adopt(
    args: Sequence[str], name: str, candidates: Sequence[Path], runs_dir: Path
) -> Path | None:
    """Give run ``name`` (training options ``args``, under ``runs_dir``) the training of the
    first of the ``candidates`` (run folders) that finished training the same options and kept
    its checkpoints; returns the folder adopted, or ``None``. The run must have no folder."""
    found = [c for c in candidates if adoptable(c)]
    if versions(runs_dir, name) or not found:
        return None
    wanted = without_bookkeeping(options_of(args))
    source = next((c for c in found if without_bookkeeping(saved_options(c)) == wanted), None)
    if source is None:
        return None
    staging = runs_dir / f".adopting-{name}"
    shutil.rmtree(staging, ignore_errors=True)  # a copy an earlier attempt left half done
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*NOT_ADOPTED))
    atomic_write_json(staging / ADOPTED_JSON, {"from": str(source)})
    run_dir = runs_dir / name
    for checkpoint in (staging / CHECKPOINTS).glob("*.ckpt"):
        relocate_checkpoint(checkpoint, run_dir / CHECKPOINTS)
    staging.rename(run_dir)  # whole or not at all: a resume never sees half a copy
    return source


def adoptable(run_dir: Path) -> bool:
    """Whether ``run_dir`` finished training (it wrote its test record, empty for a tuning
    run) and still holds the checkpoint to resume from."""
    return (run_dir / TEST_METRICS).is_file() and (run_dir / CHECKPOINTS / LAST).is_file()


def run_folders(results: Sequence[Path]) -> list[Path]:
    """The run folders of results folders: the comparison's runs and the tuning's."""
    parents = [path for folder in results for path in (folder / "runs", tuning_runs(folder))]
    return [
        run_dir
        for parent in parents
        if parent.is_dir()
        for run_dir in sorted(parent.iterdir())
        if run_dir.is_dir() and not run_dir.name.startswith(".")
    ]


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
            str(folder / Path(old).name): score for old, score in state["best_k_models"].items()
        }
    torch.save(checkpoint, path)
