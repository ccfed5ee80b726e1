"""The comparison section: what one arm of a comparison costs beyond its training steps.

Each arm of the small-shift experiment is trained and measured exactly as ``compare.py`` does
it (:func:`~invariance_recipes.compare.comparison.execute`, the experiment's own data, network
and full validation and test sets), but for a short step budget; :class:`PhaseClock` splits
the wall time into phases. A converged run differs only in how many steps and validations it
has, so its cost is projected from the measured ones: the fixed phases once, the steps and
the loading between them per step, each epoch's own work and validation per epoch.

Phases: ``start`` (a fresh interpreter importing the comparison's stack), ``build`` (options,
network, data, logger, until ``fit`` sets up), ``steps`` (forward, backward and optimizer
step of every batch), ``loading`` (the loader's next batch, augmentation included),
``epochs`` (the rest of ``fit``: each epoch's first batch, checkpoints, logging),
``validation`` (every validation, the sanity check included), ``test`` (loading the best
checkpoint and testing it) and ``measure`` (the protocols and per-image outcomes from one
more load of that checkpoint, and writing them).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn

from invariance_recipes.benchmarks.imports import import_seconds
from invariance_recipes.benchmarks.rows import Config, Row
from invariance_recipes.compare.comparison import common_args, execute, label_of, plan
from invariance_recipes.compare.comparison import parse_args as compare_args
from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.datamodules.sources import default_data_dir, render_cache

EXPERIMENT = "small-shift"
TARGET = 1.3  # a converged run may cost at most this many times its training steps alone
STACK = "invariance_recipes.compare.comparison"  # what a comparison's process imports first
PHASES = ("start", "build", "steps", "loading", "epochs", "validation", "test", "measure")


class PhaseClock(Callback):
    """Wall-clock marks of the phases of one run; the newest clock is :attr:`latest`, since
    the run's command line builds it (``--trainer.callbacks+=``), not the benchmark."""

    latest: ClassVar[PhaseClock | None] = None

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.steps = 0.0  # inside the training batches
        self.loading = 0.0  # between two batches of one epoch: the loader's next batch
        self.batches = 0
        self.epochs = 0
        self.validations: list[tuple[bool, float]] = []  # (sanity check?, seconds)
        self.epoch_batches = 0  # batches of a whole training epoch
        self._started = 0.0
        self._batch_ended: float | None = None
        PhaseClock.latest = self

    @staticmethod
    def _now(pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.marks.setdefault(f"{TrainerFn(stage).value} setup", self._now(pl_module))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.marks[f"{TrainerFn(stage).value} teardown"] = self._now(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_batches = len(trainer.train_dataloader)  # type: ignore[arg-type]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batch_ended = None  # an epoch's first batch comes with the loader's start

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any
    ) -> None:
        self._started = self._now(pl_module)
        if self._batch_ended is not None:
            self.loading += self._started - self._batch_ended

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any) -> None:
        self._batch_ended = self._now(pl_module)
        self.steps += self._batch_ended - self._started
        self.batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = self._now(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        elapsed = self._now(pl_module) - self._started
        self.validations.append((trainer.sanity_checking, elapsed))


def phase_seconds(clock: PhaseClock, began: float, ended: float, start: float) -> dict[str, float]:
    """The run's phases in seconds from the clock's marks; they add up to the whole run."""
    marks = clock.marks
    validation = sum(seconds for _, seconds in clock.validations)
    fit = marks["fit teardown"] - marks["fit setup"]
    return {
        "start": start,
        "build": marks["fit setup"] - began,
        "steps": clock.steps,
        "loading": clock.loading,
        "epochs": fit - clock.steps - clock.loading - validation,
        "validation": validation,
        # from the end of fit: the test's setup includes loading the best checkpoint
        "test": marks["test teardown"] - marks["fit teardown"],
        "measure": ended - marks["test teardown"],
    }


def projected_seconds(clock: PhaseClock, phases: dict[str, float], steps: int) -> dict[str, float]:
    """The phases of the same run trained for ``steps``: the steps and the loading between
    them scale per batch, the epochs' own work (first batch, checkpoints) per epoch,
    validation per whole epoch (one after each), the rest stays."""
    per_batch = steps / clock.batches
    sanity = sum(seconds for sanity, seconds in clock.validations if sanity)
    epoch_ends = [seconds for sanity, seconds in clock.validations if not sanity]
    return phases | {
        "steps": phases["steps"] * per_batch,
        "loading": phases["loading"] * per_batch,
        "epochs": phases["epochs"] * math.ceil(steps / clock.epoch_batches) / clock.epochs,
        "validation": sanity + steps // clock.epoch_batches * sum(epoch_ends) / len(epoch_ends),
    }


def _breakdown(phases: dict[str, float]) -> str:
    return ", ".join(f"{name} {phases[name]:.3g} s" for name in PHASES)


def _row(setting: str, phases: dict[str, float], target: float, note: str) -> Row:
    whole = sum(phases.values())
    ratio = whole / phases["steps"]
    return Row(
        "comparison",
        torch.get_num_threads(),
        setting,
        "whole run",
        "training steps",
        whole * 1e3,
        phases["steps"] * 1e3,
        ratio,
        ratio,
        ratio,
        target,
        f"{note}: {_breakdown(phases)}",
    )


def comparison_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """One short run per arm of the experiment, measured and projected to its step budget."""
    experiment = get_experiment(EXPERIMENT)
    variants = list(experiment.variants[: cfg.comparison_arms])
    render_cache(experiment.dataset, default_data_dir())  # rendered once, before any timing
    start = statistics.median(import_seconds(STACK) for _ in range(cfg.import_runs))
    short = [
        "--trainer.max_steps", str(cfg.comparison_steps),
        "--trainer.limit_train_batches", str(cfg.comparison_epoch_batches),
        "--trainer.accelerator", "gpu" if device.type == "cuda" else "cpu",
        "--trainer.callbacks+=" + f"{__name__}.PhaseClock",
        "--on_collapse", "warn",  # a few steps do not train a network
        *(["--data.max_samples", str(cfg.max_samples)] if cfg.max_samples else []),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        argv = ["--experiment", EXPERIMENT, "--logger", "csv", "--out", folder]
        args, _ = compare_args([*argv, "--variants", *variants, "--seeds", "1"])
        common = common_args(args, experiment, short, Path(folder))
        for run in plan(experiment, label_of(args), variants, 1, common):
            began = time.perf_counter()
            execute(run, experiment, Path(folder) / "runs")
            ended = time.perf_counter()
            clock = PhaseClock.latest
            assert clock is not None and clock.batches, "the run did not use the phase clock"
            phases = phase_seconds(clock, began, ended, start)
            validations = sum(not sanity for sanity, _ in clock.validations)
            setting = (
                f"{run.variant}, {EXPERIMENT} run of {clock.batches} steps "
                f"({clock.batches // validations if validations else clock.batches} per "
                f"validation), {experiment.batch_size} images a step"
            )
            rows.append(_row(setting, phases, math.inf, "measured"))
            budget = projected_seconds(clock, phases, experiment.steps)
            rows.append(
                _row(
                    f"{run.variant}, projected to {experiment.steps} steps, a validation "
                    f"every {clock.epoch_batches}",
                    budget,
                    TARGET,
                    "projected",
                )
            )
    notes.append(
        f"comparison: `start` is a fresh interpreter importing `{STACK}` (median of "
        f"{cfg.import_runs}), paid once per process: a comparison pays it once for all its runs, "
        "so the whole run here counts it for every run; loggers: CSV"
    )
    return rows
