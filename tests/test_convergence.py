"""Converged arms: every run's learning curve (checked against Lightning's own CSV log), the
plateau rule and the did-not-train rule on hand-made curves, and a step budget that keeps the
warm-up one epoch long."""

from __future__ import annotations

import csv
import importlib
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from invariance_recipes.compare.convergence import (
    PLATEAU_RULE,
    TRAINED_RULE,
    convergence_markdown,
    plateau,
    training_columns,
)
from invariance_recipes.compare.experiments import EXPERIMENTS, QUICK
from invariance_recipes.lightning_modules.callbacks import CURVE_CSV, read_curve
from invariance_recipes.run.training import TrainCLI


def curve(*accuracies: float, every: int = 10) -> list[dict]:
    """A validation curve with one point every ``every`` steps."""
    return [
        {"step": every * (i + 1), "epoch": i, "val_acc": a, "train_loss": 1.0}
        for i, a in enumerate(accuracies)
    ]


def write_curve(run_dir: Path, rows: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CURVE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, ["step", "epoch", "val_acc", "train_loss"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("accuracies", "plateaued"),
    [
        # 8 points: the last quarter is steps 70 and 80
        ((0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.902, 0.904), True),  # +0.4 points: flat enough
        ((0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.905, 0.9), True),  # +0.5 points exactly
        ((0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.9, 0.906), False),  # still rising by 0.6
        ((0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.91, 0.91), False),  # fell 1 point below its best
        ((0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1), True),  # flat at chance: plateaued
    ],
)
def test_plateau_rule_compares_the_last_quarter_with_the_best_before(
    accuracies: tuple[float, ...], plateaued: bool
) -> None:
    found = plateau(curve(*accuracies))
    assert found is not None and found.plateaued is plateaued
    assert found.best == max(accuracies)
    assert found.best_last == max(accuracies[6:])
    assert found.best_before == max(accuracies[:6])
    assert found.steps == 80


def test_a_curve_of_one_point_cannot_show_a_plateau() -> None:
    assert plateau(curve(0.9)) is None
    assert plateau([]) is None


def _predictions(labels: np.ndarray, correct: int) -> np.ndarray:
    """Right on the first ``correct`` images, spread evenly over the wrong classes after."""
    wrong = (labels + 1 + np.arange(len(labels)) % 9) % 10
    return np.where(np.arange(len(labels)) < correct, labels, wrong)


def test_did_not_train_rule_names_every_reason(tmp_path: Path) -> None:
    labels = np.arange(1000) % 10
    good = curve(0.5, 0.8, 0.9, 0.9)
    write_curve(tmp_path / "good", good)
    columns = training_columns(tmp_path / "good", labels, _predictions(labels, 900), 10)
    assert columns == {
        "best_val_acc": 0.9, "plateaued": 1.0, "trained": 1.0, "untrained_reason": ""
    }  # fmt: skip

    # one class for every image: a collapse, whatever the curve says
    columns = training_columns(tmp_path / "good", labels, np.full(1000, 3), 10)
    assert columns["trained"] == 0.0 and columns["plateaued"] == 1.0
    assert columns["untrained_reason"].startswith("collapsed: the model predicts class 3 for 100%")

    # validation below twice chance (20% for 10 classes), and still rising
    write_curve(tmp_path / "weak", curve(0.1, 0.12, 0.15, 0.19))
    columns = training_columns(tmp_path / "weak", labels, _predictions(labels, 300), 10)
    assert columns["trained"] == 0.0 and columns["plateaued"] == 0.0
    reasons = columns["untrained_reason"].split("; ")
    assert reasons == [
        "best validation accuracy 19.0% is below 2x chance (20%)",
        "not plateaued at 40 steps: best of the last quarter 19.0% vs 15.0% before",
    ]

    # no curve at all (a run trained before curves were written)
    columns = training_columns(tmp_path / "none", labels, _predictions(labels, 900), 10)
    assert columns["trained"] == 0.0 and math.isnan(columns["best_val_acc"])
    assert "no validation curve" in columns["untrained_reason"]


def test_results_section_states_the_rules_and_lists_the_runs_that_did_not_train() -> None:
    rows = [
        {"run": "a-seed0", "trained": 1.0, "plateaued": 1.0, "untrained_reason": ""},
        {"run": "b-seed0", "trained": 0.0, "plateaued": 0.0, "untrained_reason": "why not"},
    ]
    text = "\n".join(convergence_markdown(rows, "600 optimizer steps for every arm"))
    assert PLATEAU_RULE in text and TRAINED_RULE in text
    assert "Step budget: 600 optimizer steps for every arm." in text
    assert "1 of 2 runs trained; 1 plateaued." in text
    assert "| b-seed0 | why not |" in text and "| a-seed0 |" not in text


@pytest.mark.slow
def test_learning_curve_matches_lightnings_csv_log_and_survives_a_resume(tmp_path: Path) -> None:
    """A budget of 11 steps at 4 steps an epoch: two validated epochs; the warm-up lasts one
    epoch (4 steps), not the whole budget; a resume keeps the finished epochs only."""
    args = [
        "--data.dataset", "digits", "--data.max_samples", "40", "--data.batch_size", "10",
        "--trainer.max_epochs", "-1", "--logger", "csv", "--model.protocols", "[]",
        "--runs_dir", str(tmp_path), "--run_name", "r", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    cli = TrainCLI([*args, "--trainer.max_steps", "11"])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    rows = read_curve(cli.run_dir / CURVE_CSV)
    assert [(r["step"], r["epoch"]) for r in rows] == [(4, 0), (8, 1)]  # step 11 unvalidated
    (log,) = (cli.run_dir / "csv").glob("version_*/metrics.csv")
    with open(log, newline="") as f:
        logged = list(csv.DictReader(f))
    for row in rows:  # Lightning's own record of the same epoch
        val = [r for r in logged if r["epoch"] == str(row["epoch"]) and r["val/acc"]]
        loss = [r for r in logged if r["epoch"] == str(row["epoch"]) and r["train/loss_epoch"]]
        assert row["val_acc"] == pytest.approx(float(val[-1]["val/acc"]))
        assert row["train_loss"] == pytest.approx(float(loss[-1]["train/loss_epoch"]))
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler._milestones == [4]  # one epoch of warm-up within the step budget

    # a run stopped after epoch 0 whose curve holds a row of an epoch its checkpoint never
    # finished (as after a crash): --resume continues from epoch 1 and rewrites it
    first = TrainCLI([*args, "--run_name", "s", "--trainer.max_steps", "4"])
    first.trainer.fit(first.model, datamodule=first.datamodule)
    with open(first.run_dir / CURVE_CSV, "a", newline="") as f:
        csv.writer(f).writerow([7, 1, 0.99, 0.01])
    resumed = TrainCLI([*args, "--run_name", "s", "--trainer.max_steps", "12", "--resume"])
    assert resumed.run_dir == first.run_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.trainer.fit(
            resumed.model, datamodule=resumed.datamodule, ckpt_path=resumed.ckpt_path
        )
    # the best checkpoint is chosen where val/acc exists: the epoch end replayed on a resume
    # has none, and must not warn that it is missing
    assert not [w for w in caught if "monitored key" in str(w.message)]
    again = read_curve(first.run_dir / CURVE_CSV)
    assert [(r["step"], r["epoch"]) for r in again] == [(4, 0), (8, 1), (12, 2)]
    assert again[1]["val_acc"] != 0.99


def test_experiments_list_their_variants_so_a_new_one_joins_none(monkeypatch) -> None:
    """Registering a variant changes no experiment's default arms."""
    from invariance_recipes.compare import experiments
    from invariance_recipes.lightning_modules import variants

    before = {name: e.variants for name, e in experiments.EXPERIMENTS.items()}
    extended = dict(variants.VARIANTS)
    extended["new-downsampler"] = variants.Variant("new-downsampler", "a new one")
    monkeypatch.setattr(variants, "VARIANTS", extended)
    try:
        reloaded = importlib.reload(experiments)
        assert {n: e.variants for n, e in reloaded.EXPERIMENTS.items()} == before
        assert all("new-downsampler" not in v for v in before.values())
    finally:
        monkeypatch.undo()
        importlib.reload(experiments)


def test_the_budget_in_words_is_the_one_the_runs_get() -> None:
    experiment = EXPERIMENTS["unseen-position"]
    steps, batch = experiment.steps, experiment.batch_size
    assert experiment.budget() == f"{steps} optimizer steps of {batch} images for every arm"
    assert experiment.budget([*QUICK, "--trainer.max_epochs", "2"]) == (
        "6 optimizer steps of 50 images for every arm, or 2 epochs if fewer, "
        "at most 300 images per split"
    )
    assert experiment.describe(QUICK).endswith(
        "6 optimizer steps of 50 images for every arm, at most 300 images per split"
    )
