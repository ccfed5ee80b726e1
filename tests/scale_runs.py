"""Checks shared by the multi-process tests (torchrun, SLURM): one run folder for all ranks,
and test metrics equal to a single-process evaluation of the checkpoint they tested."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch

from invariance_recipes.measure.evaluation import evaluate_checkpoint
from recipe_runs import read_test_metrics


def only_run_folder(runs_dir: Path, name: str) -> Path:
    """The run folder of ``name``; fails when ranks made their own (``NAME-v2``). Hidden
    files (the srun tasks' handoff of the folder name) are bookkeeping, not folders."""
    folders = sorted(p.name for p in runs_dir.iterdir() if not p.name.startswith("."))
    assert folders == [name], f"one run folder expected for all ranks, found {folders}"
    return runs_dir / name


def assert_matches_single_process(run_dir: Path) -> dict[str, float]:
    """The run's test metrics against one process evaluating its best checkpoint."""
    metrics = read_test_metrics(run_dir)
    (best,) = glob.glob(str(run_dir / "checkpoints" / "best-epoch=*.ckpt"))
    with torch.inference_mode():
        single = evaluate_checkpoint(Path(best), max_shifts=(4,), modes=("zero", "circular"))
    assert metrics["test/acc"] == pytest.approx(single["acc"], abs=1e-6)
    assert metrics["test/flip_rate"] == pytest.approx(single["flip_rate"], abs=1e-6)
    assert metrics["test/mac"] == pytest.approx(single["mac"], abs=1e-5)
    for mode in ("zero", "circular"):
        assert metrics[f"test/consistency_{mode}"] == pytest.approx(
            single["consistency"][4][mode], abs=1e-6
        )
    return metrics
