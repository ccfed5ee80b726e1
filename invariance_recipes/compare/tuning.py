"""Tuning on validation only: the same small grid for every arm, one seed, the choice recorded.

``compare.py --experiment X --tune`` trains every arm (variant, and setting in a sweep) once
per grid point (``Experiment.tuning_grid``, seed 0, the experiment's step budget) and keeps, per
arm, the value with the best validation accuracy on its learning curve. The test split is never
read: the tuning runs skip their test. The choices go to ``tuning.json`` in the results folder;
the comparison's runs read them from there and ``results.md`` prints them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invariance_recipes.compare.convergence import plateau
from invariance_recipes.lightning_modules.callbacks import CURVE_CSV, read_curve

TUNING_JSON = "tuning.json"
TUNING_DIR = "tuning"  # the tuning runs' folders, apart from the comparison's runs
TUNING_SEED = 0


@dataclass(frozen=True)
class Trial:
    """One tuning run: an arm trained with one grid point."""

    arm: str
    variant: str
    setting: str
    values: Mapping[str, float]
    name: str

    def args(self) -> list[str]:
        """The grid point as training options."""
        return [arg for key, value in self.values.items() for arg in (f"--model.{key}", str(value))]


def tuning_runs(out: Path) -> Path:
    """The folder of a results folder's tuning runs."""
    return out / TUNING_DIR / "runs"


def arm_of(variant: str, setting: str) -> str:
    """The name of an arm: the variant, and the setting in a sweep."""
    return variant if setting == "default" else f"{variant}/{setting}"


def grid_points(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, in the grid's order."""
    points: list[dict[str, float]] = [{}]
    for key, values in grid.items():
        points = [{**point, key: value} for point in points for value in values]
    return points


def trials(
    label: str, grid: Mapping[str, Sequence[float]], arms: Sequence[tuple[str, str]]
) -> list[Trial]:
    """The tuning runs of (variant, setting) arms; names are fixed, so a rerun finds them."""
    found = []
    for variant, setting in arms:
        for point in grid_points(grid):
            values = "-".join(f"{key}{value:g}" for key, value in point.items())
            parts = [label, "tune", variant, *([] if setting == "default" else [setting]), values]
            found.append(Trial(arm_of(variant, setting), variant, setting, point, "-".join(parts)))
    return found


def trial_record(trial: Trial, run_dir: Path) -> dict[str, Any]:
    """What a finished tuning run says about its grid point: its validation curve only."""
    curve = read_curve(run_dir / CURVE_CSV)
    found = plateau(curve)
    return {
        "values": dict(trial.values),
        "run": trial.name,
        "best_val_acc": max((r["val_acc"] for r in curve), default=None),
        "plateaued": None if found is None else found.plateaued,
        "steps": curve[-1]["step"] if curve else 0,
    }


def choose(records: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """The grid point with the best validation accuracy.

    Among equals a plateaued curve goes first: at the same accuracy, one still rising or
    falling at the budget would need a larger budget to be trained by the plateau rule. Then
    the first in grid order. Both keys read the validation curve only.
    """
    scored = [r for r in records if r["best_val_acc"] is not None]
    if not scored:
        return None
    return dict(max(scored, key=lambda r: (r["best_val_acc"], r["plateaued"] is True))["values"])


def tuning_document(
    grid: Mapping[str, Sequence[float]],
    steps: int,
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    planned: int,
) -> dict[str, Any]:
    """The content of ``tuning.json``: the grid, the seed, the budget, whether all ``planned``
    trials have finished, and per arm every finished trial and the choice."""
    finished = sum(len(found) for found in records.values())
    return {
        "grid": {key: list(values) for key, values in grid.items()},
        "seed": TUNING_SEED,
        "steps": steps,
        "trials": planned,
        "finished": finished,
        "complete": finished == planned,
        "selected_on": "best validation accuracy of the learning curve, a plateaued curve first "
        "among equals (never the test split)",
        "arms": {
            arm: {"trials": list(found), "choice": choose(found)} for arm, found in records.items()
        },
    }


def read_tuning(out: Path) -> dict[str, Any] | None:
    """The tuning file of a results folder, if the experiment was tuned."""
    path = out / TUNING_JSON
    return json.loads(path.read_text()) if path.is_file() else None


def untuned_arms(tuning: Mapping[str, Any], arms: Sequence[tuple[str, str]]) -> list[str]:
    """The arms among ``arms`` (variant, setting) that the tuning file has not tuned at every
    grid point: their runs would train with a choice that may still change. Arms are tuned
    independently, so a comparison of the tuned arms may start while others still tune."""
    points = len(grid_points(tuning["grid"]))
    tuned = {arm: len(entry["trials"]) for arm, entry in tuning["arms"].items()}
    return [arm_of(*arm) for arm in arms if tuned.get(arm_of(*arm), 0) < points]


def tuned_args(tuning: Mapping[str, Any] | None, variant: str, setting: str) -> list[str]:
    """The training options an arm's runs take from the tuning file (none if untuned)."""
    if tuning is None:
        return []
    chosen = (tuning["arms"].get(arm_of(variant, setting)) or {}).get("choice")
    return [a for key, value in (chosen or {}).items() for a in (f"--model.{key}", str(value))]


def chosen_trial(tuning: Mapping[str, Any] | None, variant: str, setting: str) -> str | None:
    """The name of the tuning run that trained the arm's choice (with :data:`TUNING_SEED`)."""
    entry = (tuning or {"arms": {}})["arms"].get(arm_of(variant, setting)) or {}
    chosen = [t for t in entry.get("trials", ()) if t["values"] == entry.get("choice")]
    return chosen[0].get("run") if chosen else None


def tuning_markdown(tuning: Mapping[str, Any] | None, arms: Sequence[tuple[str, str]]) -> list[str]:
    """The section of ``results.md`` that says how each arm was tuned (lines)."""
    lines = ["## Tuning", ""]
    if tuning is None:
        return [
            *lines,
            "Not tuned: every arm trained with the default options (run the same command with "
            "--tune first to tune them on validation).",
            "",
        ]
    grid = ", ".join(
        f"{key} in {{{', '.join(f'{v:g}' for v in values)}}}"
        for key, values in tuning["grid"].items()
    )
    lines += [
        f"The same grid for every arm ({grid}), seed {tuning['seed']}, {tuning['steps']} steps, "
        f"selected on {tuning['selected_on']}. Best validation accuracy in % per grid point; "
        f"the chosen point in bold.",
        "",
    ]
    points = grid_points(tuning["grid"])
    names = [", ".join(f"{k} {v:g}" for k, v in point.items()) for point in points]
    lines += ["| arm | " + " | ".join(names) + " | chosen |", "|---|" + "---|" * (len(names) + 1)]
    for variant, setting in arms:
        arm = arm_of(variant, setting)
        entry = tuning["arms"].get(arm)
        if entry is None:
            lines.append(f"| {arm} | " + " | ".join("n/a" for _ in names) + " | not tuned |")
            continue
        cells = []
        for point in points:
            record = next((r for r in entry["trials"] if r["values"] == point), None)
            value = None if record is None else record["best_val_acc"]
            cell = "n/a" if value is None else f"{100 * value:.1f}"
            cells.append(f"**{cell}**" if point == entry["choice"] else cell)
        chosen = entry["choice"]
        text = ", ".join(f"{k} {v:g}" for k, v in chosen.items()) if chosen else "none"
        record = next((r for r in entry["trials"] if r["values"] == chosen), None)
        if record is not None and record["plateaued"] is False:
            text += f" (not plateaued in {tuning['steps']} steps: raise the budget)"
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {text} |")
    return [*lines, ""]
