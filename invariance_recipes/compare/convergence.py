"""Whether a run trained: the plateau rule on its validation curve and the did-not-train rule,
both fixed before any run, and the learning-curve plot of an experiment.

A comparison measures methods only when every arm is trained to its own plateau; otherwise it
measures how fast each architecture learns. The rules read only what training logged on the
validation split (``curve.csv``, written by ``LearningCurve``) and, for the collapse check, the
tested checkpoint's predictions; nothing here selects a model or a setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from invariance_recipes.compare.results import SERIES_COLORS
from invariance_recipes.lightning_modules.callbacks import CURVE_CSV, read_curve
from invariance_recipes.run.collapse import collapse_reason

#: The plateau rule's tolerance, in accuracy points.
PLATEAU_POINTS = 0.5
#: The share of training, counted in optimizer steps, whose best must match the rest.
LAST_SHARE = 0.25
#: A run whose best validation accuracy is below this multiple of chance did not train.
CHANCE_MULTIPLE = 2.0
LEARNING_CURVES_PNG = "learning_curves.png"

PLATEAU_RULE = (
    f"Plateau rule: a run has plateaued when the best validation accuracy of the last "
    f"{LAST_SHARE:.0%} of its training steps is within {PLATEAU_POINTS} points of the run's best "
    f"before them (a curve still rising by more than that, or falling by more, has not)."
)
TRAINED_RULE = (
    f"Did-not-train rule, fixed before the runs: a run did not train when its tested "
    f"checkpoint's predictions collapse (`collapse_reason`: one class for most images, or "
    f"accuracy within two standard errors of chance), when its best validation accuracy is "
    f"below {CHANCE_MULTIPLE:g}x chance, or when it has not plateaued at the step budget. "
    f"Such runs are listed here with the reason and are not evidence for any claim."
)


@dataclass(frozen=True)
class Plateau:
    """The plateau rule applied to one validation curve (accuracies as shares)."""

    plateaued: bool
    best: float  # the run's best validation accuracy
    best_before: float  # the best before the last quarter
    best_last: float  # the best of the last quarter
    steps: int  # the last validated step


def plateau(curve: Sequence[Mapping[str, Any]]) -> Plateau | None:
    """Apply the plateau rule to ``curve`` rows (``step``, ``val_acc``); ``None`` when the curve
    has fewer than two points, too short to tell."""
    if len(curve) < 2:
        return None
    steps = curve[-1]["step"]
    cut = (1 - LAST_SHARE) * steps
    last = [r["val_acc"] for r in curve if r["step"] > cut] or [curve[-1]["val_acc"]]
    before = [r["val_acc"] for r in curve if r["step"] <= cut] or [curve[0]["val_acc"]]
    best_last, best_before = max(last), max(before)
    within = abs(best_last - best_before) <= PLATEAU_POINTS / 100 + 1e-9
    return Plateau(within, max(best_last, best_before), best_before, best_last, steps)


def training_columns(
    run_dir: Path, labels: np.ndarray, predictions: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """The run's ``best_val_acc``, ``plateaued`` (1/0), ``trained`` (1/0) and, for a run that
    did not train, ``untrained_reason``, by the rules above.

    Args:
        labels, predictions: per test image, of the tested checkpoint (for the collapse check).
    """
    curve = read_curve(run_dir / CURVE_CSV)
    found = plateau(curve)
    best = max((r["val_acc"] for r in curve), default=float("nan"))
    counts = np.bincount(predictions.astype(np.int64), minlength=num_classes).tolist()
    accuracy = float(np.mean(labels == predictions)) if len(labels) else 0.0
    reasons = []
    if (collapse := collapse_reason(counts, accuracy, num_classes)) is not None:
        reasons.append(f"collapsed: {collapse.split(', so ')[0]}")
    chance = 1 / num_classes
    if not best >= CHANCE_MULTIPLE * chance:
        reasons.append(
            f"best validation accuracy {100 * best:.1f}% is below {CHANCE_MULTIPLE:g}x chance "
            f"({100 * CHANCE_MULTIPLE * chance:.0f}%)"
        )
    if found is None:
        reasons.append(f"no validation curve to check the plateau on ({CURVE_CSV})")
    elif not found.plateaued:
        reasons.append(
            f"not plateaued at {found.steps} steps: best of the last quarter "
            f"{100 * found.best_last:.1f}% vs {100 * found.best_before:.1f}% before"
        )
    return {
        "best_val_acc": best,
        "plateaued": float(found is not None and found.plateaued),
        "trained": float(not reasons),
        "untrained_reason": "; ".join(reasons),
    }


def convergence_markdown(rows: Sequence[Mapping[str, Any]], budget: str) -> list[str]:
    """The section of ``results.md`` that states the rules and lists the runs that did not
    train (lines)."""
    lines = [
        "## Convergence",
        "",
        f"Step budget: {budget}.",
        "",
        PLATEAU_RULE,
        "",
        TRAINED_RULE,
        "",
    ]
    judged = [r for r in rows if r.get("trained", "") != ""]
    failed = [r for r in judged if not r["trained"]]
    if not judged:
        return [*lines, "The runs carry no convergence record (trained before it existed).", ""]
    plateaued = sum(bool(r["plateaued"]) for r in judged)
    lines.append(
        f"{len(judged) - len(failed)} of {len(judged)} runs trained; {plateaued} plateaued. "
        f"Learning curves: `{LEARNING_CURVES_PNG}`; each run's in `runs/RUN/{CURVE_CSV}`."
    )
    if failed:
        lines += ["", "Runs that did not train (excluded from every claim):", ""]
        lines += ["| run | reason |", "|---|---|"]
        lines += [f"| {r['run']} | {r['untrained_reason']} |" for r in failed]
    return [*lines, ""]


def run_folder(out: Path, row: Mapping[str, Any]) -> Path:
    """The folder of a results row's run (the one its outcomes file lies in)."""
    if row.get("outcomes"):
        return out / Path(str(row["outcomes"])).parent
    return out / "runs" / str(row["run"])


def plot_learning_curves(out: Path, rows: Sequence[Mapping[str, Any]]) -> Any:
    """Validation accuracy against optimizer steps for every run, one colour per arm."""
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    ax.set_prop_cycle(color=SERIES_COLORS)
    colors: dict[str, Any] = {}
    for row in rows:
        curve = read_curve(run_folder(out, row) / CURVE_CSV)
        if not curve:
            continue
        arm = (
            row["variant"] if row["setting"] == "default" else f"{row['variant']}, {row['setting']}"
        )
        x, y = [r["step"] for r in curve], [100 * r["val_acc"] for r in curve]
        if arm in colors:
            ax.plot(x, y, color=colors[arm], linewidth=1)
        else:
            (line,) = ax.plot(x, y, linewidth=1, label=arm)
            colors[arm] = line.get_color()
    ax.set(xlabel="optimizer step", ylabel="validation accuracy (%)")
    ax.set_title("learning curves (one line per run)", fontsize=10)
    ax.grid(alpha=0.3)
    if colors:
        ax.legend(fontsize=7, ncols=2)
    return fig
