"""The results of a comparison: one CSV row per run, the mean and spread per variant, per-run
intervals, paired tests against the baseline, plots.

Everything is derived from ``results.csv`` and the per-image outcome files it names, so a rerun
that adds runs (more seeds, more variants) redraws the same tables and plots from all of them.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from invariance_recipes.compare.statistics import holm, mcnemar_exact, mean_std, wilson_interval

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
CURVE_PNG = "accuracy_vs_offset.png"
SCATTER_PNG = "accuracy_vs_consistency.png"
REGIONS_PNG = "accuracy_per_region.png"
KEYS = ("experiment", "variant", "setting", "seed", "run", "outcomes", "wall_s")
# untrained_reason: why a run did not train (compare/convergence.py); commit: the code it started from
TEXT = ("experiment", "variant", "setting", "run", "outcomes", "untrained_reason", "commit")
REFERENCE = "baseline"  # the variant every other one is compared with
ALPHA = 0.05
README_BLOCK = ("<!-- readme -->", "<!-- /readme -->")  # what the README copies from results.md
# What a reader needs to read each kind of column, keyed by a column-name prefix.
LEGEND = {
    "consistency_": "`zero@s`, `circular@s`: shift consistency, the share of test images whose "
    "prediction agrees on two copies shifted by independent random offsets of up to s pixels "
    "per axis, vacated pixels zero (background) or wrapped around (Zhang 2019).",
    "flip_rate": "Flip rate: the share whose prediction changes under a one-pixel shift "
    "(Azulay & Weiss 2019).",
    "acc@": "Per quadrant: accuracy with the test objects placed in that quadrant; unseen: the "
    "mean over the quadrants never seen in training; drop: seen minus unseen.",
    "test/": "Protocol columns (`python recipes/evaluate.py --list-protocols`), each its "
    "headline number: zhang2019, top-1 agreement of two crops of the canvas; aps-circular, of "
    "two circular shifts of the view; afc-fractional, the share whose top-1 never changes over "
    "the quarter- and half-pixel Fourier shifts; afc-worst, over every integer circular shift; "
    "azulay-weiss, the flip rate of a one-pixel step from a random start. They come from each "
    "run's test and have no per-image outcomes, so no paired test.",
    "acc_in_range": "In range, beyond: mean accuracy along the accuracy-vs-offset curve at the "
    "diagonal offsets (o, o) with |o| <= S, the range trained with, and with S < |o| <= 16.",
    "rf_fraction": "RF/canvas: the theoretical receptive field of the last feature map "
    "(`receptive_field`) over the canvas side, in %; setting `stagesN-blocksM`: the small "
    "CNN with N stages of M conv blocks each.",
}
SETTING_LEGEND = "Setting `shiftS`: trained with every image shifted by up to S pixels per axis."
CURVE = re.compile(r"^test/acc_at_shift/([+-]\d+)_([+-]\d+)$")

Row = dict[str, Any]


def curve_accuracy(row: Row, low: int, high: int) -> float:
    """The mean test accuracy of a run's accuracy-vs-offset curve over the offsets whose larger
    axis lies in ``[low, high]`` pixels (NaN if the curve has none there)."""
    values = [
        float(value)
        for key, value in row.items()
        if (m := CURVE.match(key)) and low <= max(abs(int(m[1])), abs(int(m[2]))) <= high
    ]
    return fmean(values) if values else math.nan


def read_rows(path: Path) -> list[Row]:
    """The rows of a results CSV (numbers as floats, ``seed`` as int); none if it is missing."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [_parse(row) for row in csv.DictReader(f)]


def _parse(row: dict[str, str]) -> Row:
    out: Row = {}
    for key, value in row.items():
        if key in TEXT or value == "":
            out[key] = value
        else:
            out[key] = int(value) if key == "seed" else float(value)
    return out


def columns_of(rows: Sequence[Row]) -> list[str]:
    """The identity columns, then every metric any row has (the run's test/* metrics last)."""
    metrics = {k for row in rows for k in row} - set(KEYS)
    return [*KEYS, *sorted(metrics, key=_column_order)]


def _column_order(key: str) -> tuple[bool, bool, int, str]:
    # the experiment's metrics first, then the run's test/* metrics, the curve by offset
    curve = CURVE.match(key)
    return key.startswith("test/"), bool(curve), int(curve[2]) if curve else 0, key


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Write the rows to a CSV file, replacing it in one step."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns_of(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)  # a crash while writing never leaves a truncated results.csv


def aggregate(rows: Sequence[Row], columns: Sequence[str]) -> list[Row]:
    """Mean and sample standard deviation (n - 1) over seeds per (variant, setting).

    Groups keep the order of their first row. ``std`` is NaN for a single seed.
    """
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["setting"]), []).append(row)
    out = []
    for (variant, setting), members in groups.items():
        summary: Row = {"variant": variant, "setting": setting, "n": len(members)}
        for column in columns:
            values = [float(r[column]) for r in members if r.get(column, "") != ""]
            summary[column], summary[f"{column}_std"] = mean_std(values)
        out.append(summary)
    return out


Outcomes = Mapping[str, Mapping[str, np.ndarray]]  # run name -> per-image outcome arrays


def markdown(
    title: str,
    summary: str,
    setup: str,
    command: str,
    rows: Sequence[Row],
    columns: Sequence[str],
    outcomes: Outcomes | None = None,
    provenance: str = "",
) -> str:
    """A README-ready report: what was run; a table of mean ± std per variant, in percent; the
    paired comparison with the baseline (what the README copies); the 95% interval of every
    run; and the provenance.

    Args:
        outcomes: per-image outcomes by run name (``invariance_recipes.measure.outcomes``); without
            them the paired tests and intervals are left out, with a note.
        provenance: the provenance section (``invariance_recipes.compare.provenance``).
    """
    outcomes = outcomes or {}
    table = aggregate(rows, [*columns, "wall_s"])
    swept = any(r["setting"] != "default" for r in table)
    seeds = sorted({r["seed"] for r in rows})
    head = ["variant", *(["setting"] if swept else []), "seeds", *map(header, columns)]
    spread = "mean ± std over seeds" if len(seeds) > 1 else "one seed"
    lines = [
        f"# {title}",
        "",
        summary[0].upper() + summary[1:] + ("" if summary[-1] in ".?!" else "."),
        "",
        f"Setup: {setup}. Command: `{command}`",
        "",
        f"Test-set numbers in %, {spread} ({', '.join(map(str, seeds))}); time: training "
        "and evaluation of one run in seconds.",
        "",
        *(text for prefix, text in LEGEND.items() if any(c.startswith(prefix) for c in columns)),
        *([SETTING_LEGEND] if any(r["setting"].startswith("shift") for r in table) else []),
        "",
        README_BLOCK[0],
        "| " + " | ".join([*head, "time (s)"]) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for r in table:
        cells = [r["variant"], *([r["setting"]] if swept else []), str(r["n"])]
        cells += [_percent(r[c], r[f"{c}_std"]) for c in columns]
        cells.append(f"{r['wall_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *paired_markdown(rows, columns, outcomes), README_BLOCK[1], ""]
    lines += intervals_markdown(rows, columns, outcomes)
    text = "\n".join(lines).rstrip("\n") + "\n"
    return text + ("\n" + provenance if provenance else "")


@dataclass(frozen=True)
class Paired:
    """One variant against the reference on one column (and setting), over the shared seeds."""

    variant: str
    setting: str
    column: str
    seeds: int
    difference: float  # variant - reference, share of images, mean over seeds
    only_variant: int  # discordant images: outcome true for the variant only (all seeds)
    only_reference: int
    p_value: float
    adjusted: float = math.nan  # Holm-adjusted over every test of the table


def paired_comparisons(
    rows: Sequence[Row], columns: Sequence[str], outcomes: Outcomes, reference: str = REFERENCE
) -> list[Paired]:
    """Every variant against ``reference``, per setting and column, on the same test images.

    The method, next to the aggregation it qualifies: for each seed both runs' per-image
    outcomes are paired (same images, same keyed offsets; checked by the images' fingerprint);
    the discordant images of all seeds are summed and McNemar's exact test (two-sided binomial,
    p = 1/2) is applied once; the p-values of all variants and columns of the table are then
    Holm-corrected together.
    """
    runs: dict[tuple[str, str], dict[int, str]] = {}
    for row in rows:
        if row["run"] in outcomes:
            runs.setdefault((row["setting"], row["variant"]), {})[row["seed"]] = row["run"]
    found = []
    for (setting, variant), by_seed in runs.items():
        base = runs.get((setting, reference), {})
        seeds = sorted(set(by_seed) & set(base))
        if variant == reference or not seeds:
            continue
        for column in columns:
            if not all(column in outcomes[by_seed[s]] for s in seeds):
                continue
            pairs = []
            for s in seeds:
                mine, theirs = outcomes[by_seed[s]], outcomes[base[s]]
                if str(mine["images_sha256"]) != str(theirs["images_sha256"]):
                    raise ValueError(
                        f"runs {by_seed[s]} and {base[s]} were tested on different images, so "
                        f"they cannot be paired: compare runs with the same seed and data options"
                    )
                pairs.append((mine[column], theirs[column]))
            test = mcnemar_exact(pairs)
            difference = float(np.mean([a.mean() - b.mean() for a, b in pairs]))
            found.append(
                Paired(variant, setting, column, len(seeds), difference, test.only_a,
                       test.only_b, test.p_value)
            )  # fmt: skip
    adjusted = holm([p.p_value for p in found])
    return [replace(p, adjusted=a) for p, a in zip(found, adjusted, strict=True)]


def paired_markdown(
    rows: Sequence[Row], columns: Sequence[str], outcomes: Outcomes, reference: str = REFERENCE
) -> list[str]:
    """The paired-comparison table (lines), with its caption naming the method."""
    found = paired_comparisons(rows, columns, outcomes, reference)
    if not found:
        return [f"No paired comparison with {reference}: per-image outcomes of both are missing."]
    tested = [c for c in columns if any(p.column == c for p in found)]
    swept = any(p.setting != "default" for p in found)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for p in found:
        mark = "*" if p.adjusted <= ALPHA else ""
        cells.setdefault((p.variant, p.setting), {})[p.column] = (
            f"{100 * p.difference:+.1f} ({p.only_variant}/{p.only_reference}, "
            f"p{_p(p.adjusted)}){mark}"
        )
    seeds = sorted({p.seeds for p in found})
    lines = [
        f"Paired comparison with {reference} on the same test images and offsets: difference "
        f"in points (variant minus {reference}, mean over {'/'.join(map(str, seeds))} seeds), "
        f"images where only the variant / only {reference} had the outcome (all seeds), and "
        f"the p-value of McNemar's exact test on those discordant images, seeds summed, "
        f"Holm-corrected over all {len(found)} tests of this table; * established at "
        f"{ALPHA}.",
        "",
        "| "
        + " | ".join(["variant", *(["setting"] if swept else []), *map(header, tested)])
        + " |",
        "|" + "---|" * (1 + swept + len(tested)),
    ]
    for (variant, setting), by_column in cells.items():
        row = [variant, *([setting] if swept else [])]
        lines.append("| " + " | ".join([*row, *(by_column.get(c, "n/a") for c in tested)]) + " |")
    return lines


def intervals_markdown(
    rows: Sequence[Row], columns: Sequence[str], outcomes: Outcomes
) -> list[str]:
    """Each run's value with its Wilson 95% interval over the test images (lines)."""
    measured = [r for r in rows if r["run"] in outcomes]
    if not measured:
        return []
    tested = [c for c in columns if any(c in outcomes[r["run"]] for r in measured)]
    sizes = sorted({len(outcomes[r["run"]]["index"]) for r in measured})
    lines = [
        "## Each run",
        "",
        f"Per run: value in % and its Wilson 95% interval over the "
        f"{'/'.join(map(str, sizes))} test images.",
        "",
        "| " + " | ".join(["run", *map(header, tested)]) + " |",
        "|" + "---|" * (1 + len(tested)),
    ]
    for r in measured:
        cells = [r["run"]]
        for column in tested:
            values = outcomes[r["run"]].get(column)
            if values is None:
                cells.append("n/a")
                continue
            low, high = wilson_interval(int(np.count_nonzero(values)), len(values))
            cells.append(f"{100 * values.mean():.1f} [{100 * low:.1f}, {100 * high:.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _p(value: float) -> str:
    return f"={value:.2g}" if value >= 0.001 else "<0.001"


def header(column: str) -> str:
    """The short name of a metric column in tables and plot axes."""
    if column.startswith("consistency_"):
        return column.removeprefix("consistency_")
    if column.startswith("acc@"):
        return column.removeprefix("acc@")
    if column.startswith("test/"):  # a protocol's headline: test/<protocol>/<metric>
        return column.split("/")[1]
    names = {
        "acc": "accuracy", "flip_rate": "flip rate", "unseen_drop": "drop",
        "acc_in_range": "in range", "acc_beyond_range": "beyond",
    }  # fmt: skip
    return (names | {"rf_fraction": "RF/canvas"}).get(column, column)


def _percent(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f}" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def _label(row: Row) -> str:
    return row["variant"] if row["setting"] == "default" else f"{row['variant']}, {row['setting']}"


# matplotlib's ten default colours, then the light shades of tab20: 20 distinct series, where
# the default cycle would give the 11th variant the 1st one's colour
SERIES_COLORS = (*plt.cm.tab10.colors, *plt.cm.tab20.colors[1::2])


def _axes(size: tuple[float, float]) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    ax.set_prop_cycle(color=SERIES_COLORS)
    return fig, ax


def plot_curves(rows: Sequence[Row]) -> Any:
    """Accuracy against the diagonal offset: the mean over seeds per variant (and setting),
    with a band of ± one standard deviation."""
    offsets = sorted(
        ((int(m[1]), k) for k in {k for r in rows for k in r} if (m := CURVE.match(k))),
    )
    columns, x = [k for _, k in offsets], [dx for dx, _ in offsets]
    fig, ax = _axes((6.4, 4))
    for r in aggregate(rows, columns):
        mean = [r[c] for c in columns]
        std = [0.0 if math.isnan(r[f"{c}_std"]) else r[f"{c}_std"] for c in columns]
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=_label(r))
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set(xlabel="offset (pixels, dy = dx)", ylabel="test accuracy", ylim=(0, 1.02))
    several = len({r["seed"] for r in rows}) > 1
    ax.set_title(
        "test accuracy vs offset" + (" (band: ± 1 std over seeds)" if several else ""), fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_scatter(rows: Sequence[Row], x: str, y: str) -> Any:
    """One point per run: accuracy against shift consistency."""
    fig, ax = _axes((6.4, 4))
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(_label(row), []).append(row)
    for label, members in groups.items():
        ax.scatter([r[x] for r in members], [r[y] for r in members], label=label, s=40)
    mode, _, shift = x.removeprefix("consistency_").partition("@")
    ax.set(
        xlabel=f"shift consistency ({mode} shifts up to {shift} px)",
        ylabel="test accuracy" + (" in unseen quadrants" if y == "acc@unseen" else ""),
    )
    ax.set_title("accuracy vs shift consistency (one point per run)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_regions(rows: Sequence[Row], regions: Sequence[str], seen: str) -> Any:
    """Grouped bars: accuracy per test region and variant, error bars ± one std over seeds."""
    columns = [f"acc@{region}" for region in regions]
    table = aggregate(rows, columns)
    width = 0.8 / max(1, len(table))
    fig, ax = _axes((7, 4))
    for i, r in enumerate(table):
        x = [j + (i - (len(table) - 1) / 2) * width for j in range(len(regions))]
        std = [r[f"{c}_std"] for c in columns]
        yerr = None if all(map(math.isnan, std)) else [0.0 if math.isnan(e) else e for e in std]
        ax.bar(x, [r[c] for c in columns], width, yerr=yerr, capsize=2, label=_label(r))
    ax.set_xticks(range(len(regions)), [f"{g}\n(seen)" if g == seen else g for g in regions])
    ax.set(ylabel="test accuracy", ylim=(0, 1.02))
    ax.set_title(f"trained with objects only in the {seen} quadrant", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside lower center", fontsize=8, ncols=min(5, len(table)))
    return fig


def write_plots(
    out: Path, rows: Sequence[Row], scatter: tuple[str, str], regions: Sequence[str], seen: str
) -> list[Path]:
    """Draw every plot of the experiment from its rows; returns the PNG files."""
    figures = {CURVE_PNG: plot_curves(rows), SCATTER_PNG: plot_scatter(rows, *scatter)}
    if regions:
        figures[REGIONS_PNG] = plot_regions(rows, regions, seen)
    if any("rf_fraction" in row for row in rows):  # the receptive-field experiment
        from invariance_recipes.measure.receptive_fields import RF_PLOT_PNG, plot_unseen_vs_field

        figures[RF_PLOT_PNG] = plot_unseen_vs_field(rows)
    paths = []
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths
