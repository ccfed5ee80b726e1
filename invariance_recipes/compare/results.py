"""The results of a comparison: one CSV row per run, the mean per variant with an interval that
counts seeds and images, per-run intervals, paired tests against the baseline, plots.

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

from invariance_recipes.common.atomic_write import atomic_path
from invariance_recipes.compare.run_rule import FLAGS, parse_flag, split_trained
from invariance_recipes.compare.statistics import (
    ALPHA,
    EQUIVALENCE_MARGIN,
    Estimate,
    crossed_mean,
    holm,
    mean_std,
    outcome_matrix,
    wilson_interval,
)
from invariance_recipes.lightning_modules.metrics.protocols import column_label, legend
from invariance_recipes.measure.receptive_fields import RF_COLUMN

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
CURVE_PNG = "accuracy_vs_offset.png"
SCATTER_PNG = "accuracy_vs_consistency.png"
REGIONS_PNG = "accuracy_per_region.png"
RF_PLOT_PNG = "unseen_accuracy_vs_receptive_field.png"
KEYS = ("experiment", "variant", "setting", "seed", "run", "outcomes", "wall_s")
#: 1 when a row's ``wall_s`` holds every attempt of its run (recorded by the run), 0 or absent
#: when the run predates that record and only the invocation that finished it was timed
TIMED = "wall_s_all_attempts"
# untrained_reason: why a run did not train (compare/convergence.py); commit: the code it started from
TEXT = ("experiment", "variant", "setting", "run", "outcomes", "untrained_reason", "commit")
REFERENCE = "baseline"  # the variant every other one is compared with
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
    "acc_in_range": "In range, beyond: mean accuracy along the accuracy-vs-offset curve at the "
    "diagonal offsets (o, o) with |o| <= S, the range trained with, and with S < |o| <= 16.",
    "rf_fraction": "RF/canvas: the theoretical receptive field of the last feature map "
    "(`receptive_field`) over the canvas side, in %; setting `stagesN-blocksM`: the small "
    "CNN with N stages of M conv blocks each.",
}
#: Protocol columns (``test/<protocol>/<metric>``) get a legend generated from the registry,
#: and a note on whether their per-image outcomes were recorded (runs measured before they were
#: have their test's means only).
PROTOCOL_NOTE = {
    True: "They are measured per image on each run's tested checkpoint, with the same intervals "
    "and paired tests as the other columns.",
    False: "They have no per-image outcomes, so Student's t over the seeds' values and no "
    "paired test.",
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
    """The rows of a results CSV (numbers as floats, ``seed`` as int); none if it is missing.

    A damaged file (cut short, overwritten, not text) is a ``ValueError`` naming it."""
    if not path.is_file():
        return []
    line = 1
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = []
            for row in reader:
                line = reader.line_num
                if None in row or None in row.values() or "run" not in row:
                    raise ValueError("a row has more or fewer cells than the header")
                rows.append(_parse(row))
            return rows
    except (csv.Error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(
            f"{path} is damaged at line {line} ({str(err).splitlines()[0][:120]}); delete it "
            "and rerun the same command: finished runs are measured again, not retrained"
        ) from None


def _parse(row: dict[str, str]) -> Row:
    out: Row = {}
    for key, value in row.items():
        if key in TEXT or value == "":
            out[key] = value
        elif key in FLAGS:  # the run rule's optional flags (trained, plateaued)
            out[key] = parse_flag(value)
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
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns_of(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)


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
INTERVAL_NOTE = (
    "Each cell: the mean over seeds and test images, in %, with its 95% interval counting both "
    "(the same test images for every seed: a crossed random-effects model of seed and image, "
    "Satterthwaite's t; `invariance_recipes/compare/statistics.py`); a column without per-image "
    "outcomes gets Student's t over the seeds' values, and one seed no interval."
)


def estimate(
    members: Sequence[Row], column: str, outcomes: Outcomes
) -> tuple[Estimate, bool] | None:
    """The mean of one column over an arm's runs, and whether it counts images: from the
    ``seeds x images`` outcomes when every run has them on the same images, else from the runs'
    values (Student's t over seeds, valid too when each seed drew its own test images)."""
    per_run = [outcomes.get(r["run"], {}) for r in members]
    if members and all(column in o for o in per_run) and same_images(per_run):
        return crossed_mean(outcome_matrix([o[column] for o in per_run])), True
    values = [float(r[column]) for r in members if r.get(column, "") != ""]
    if not values:
        return None
    return crossed_mean(np.array(values)[:, None]), False


def same_images(per_run: Sequence[Mapping[str, np.ndarray]]) -> bool:
    """Whether the runs were tested on the same images (one fingerprint), so their per-image
    outcomes pair up image by image."""
    return len({str(o.get("images_sha256", "")) for o in per_run}) == 1


def check_same_images(per_run: Sequence[Mapping[str, np.ndarray]], runs: Sequence[str]) -> None:
    """Raise ``ValueError`` unless the runs were tested on the same images."""
    if not same_images(per_run):
        raise ValueError(
            f"runs {', '.join(runs)} were tested on different images, so they cannot be paired: "
            "compare runs with the same seed and data options"
        )


def _interval_cell(found: tuple[Estimate, bool] | None, signed: bool = False) -> str:
    if found is None:
        return "n/a"
    e = found[0]
    fmt = "{:+.1f}" if signed else "{:.1f}"
    low, high = e.interval()
    if not (math.isfinite(low) and math.isfinite(high)):
        return fmt.format(100 * e.mean)
    if found[1] and not signed:  # a share of images stays within [0, 100] %
        low, high = max(low, 0.0), min(high, 1.0)
    return f"{fmt.format(100 * e.mean)} [{fmt.format(100 * low)}, {fmt.format(100 * high)}]"


def _groups(rows: Sequence[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["setting"]), []).append(row)
    return groups


def _images(members: Sequence[Row], outcomes: Outcomes) -> str:
    sizes = {
        len(outcomes[r["run"]]["index"]) for r in members if "index" in outcomes.get(r["run"], {})
    }
    return "/".join(map(str, sorted(sizes))) or "n/a"


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
    """A README-ready report: what was run; a table of the mean per variant with its 95%
    interval counting seeds and images, in percent; the paired comparison with the baseline
    (what the README copies); the runs left out by the run rule; the 95% interval of every run;
    and the provenance.

    Args:
        outcomes: per-image outcomes by run name (``invariance_recipes.measure.outcomes``); without
            them the intervals count seeds only and the paired tests are left out, with a note.
        provenance: the provenance section (``invariance_recipes.compare.provenance``).
    """
    outcomes = outcomes or {}
    rows, left_out = split_trained(rows, outcomes)
    groups = _groups(rows)
    swept = any(setting != "default" for _, setting in groups)
    seeds = sorted({r["seed"] for r in rows})
    head = ["variant", *(["setting"] if swept else []), "seeds", "images", *map(header, columns)]
    lines = [
        f"# {title}",
        "",
        summary[0].upper() + summary[1:] + ("" if summary[-1] in ".?!" else "."),
        "",
        f"Setup: {setup}. Command: `{command}`",
        "",
        f"Test-set numbers in %, seeds {', '.join(map(str, seeds))}; images: distinct test "
        f"images per run; {time_legend(rows)} " + INTERVAL_NOTE,
        "",
        *(text for prefix, text in LEGEND.items() if any(c.startswith(prefix) for c in columns)),
        *protocol_legend(columns, rows, outcomes),
        *([SETTING_LEGEND] if any(s.startswith("shift") for _, s in groups) else []),
        "",
        README_BLOCK[0],
        "| " + " | ".join([*head, "time (s)"]) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for (variant, setting), members in groups.items():
        cells = [variant, *([setting] if swept else []), str(len(members))]
        cells.append(_images(members, outcomes))
        cells += [_interval_cell(estimate(members, c, outcomes)) for c in columns]
        cells.append(f"{fmean(float(r['wall_s']) for r in members):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *paired_markdown(rows, columns, outcomes), *left_out_markdown(left_out)]
    lines += [README_BLOCK[1], ""]
    lines += intervals_markdown(rows, columns, outcomes)
    text = "\n".join(lines).rstrip("\n") + "\n"
    return text + ("\n" + provenance if provenance else "")


def time_legend(rows: Sequence[Row]) -> str:
    """What the time column counts, and which runs it undercounts."""
    text = (
        "time: training (every attempt of a resumed run), test and measurement of one run in "
        "seconds, mean over seeds"
    )
    untimed = sum(float(row.get(TIMED) or 0.0) != 1.0 for row in rows)
    if untimed:
        text += (
            f" ({untimed} of {len(rows)} runs started before runs recorded their training time "
            "and count only the invocation that finished them: less than their whole time "
            "where a stop interrupted them)"
        )
    return text + "."


def left_out_markdown(left_out: Sequence[tuple[Row, str]]) -> list[str]:
    """The runs the run rule left out of every table, each with why (lines; none if none)."""
    if not left_out:
        return []
    return [
        "",
        f"Left out of every table ({len(left_out)} run(s) that did not train, by the rule fixed "
        "before the runs: collapsed predictions, or flagged not trained / not plateaued):",
        "",
        *(f"- {row['run']}: {reason}" for row, reason in left_out),
        "",
    ]


@dataclass(frozen=True)
class Paired:
    """One variant against the reference on one column (and setting), over the shared seeds.

    ``estimate`` is the mean over seeds and images of the per-image difference (variant minus
    reference); ``adjusted`` its two-sided p, and ``equivalent`` the TOST p of a difference
    within ``EQUIVALENCE_MARGIN``, each Holm-adjusted over every test of the table."""

    variant: str
    setting: str
    column: str
    estimate: Estimate
    p_value: float
    p_equivalent: float
    adjusted: float = math.nan
    equivalent: float = math.nan

    @property
    def difference(self) -> float:
        return self.estimate.mean

    @property
    def seeds(self) -> int:
        return self.estimate.seeds


def paired_comparisons(
    rows: Sequence[Row], columns: Sequence[str], outcomes: Outcomes, reference: str = REFERENCE
) -> list[Paired]:
    """Every variant against ``reference``, per setting and column, on the same test images.

    The method, next to the aggregation it qualifies: for each seed both runs' per-image
    outcomes are paired (same images, same keyed offsets; checked by the images' fingerprint)
    and subtracted; the ``seeds x images`` differences get the crossed random-effects interval
    (``statistics.crossed_mean``), which counts both the seeds and the images, so images shared
    by the seeds are not counted as independent; the two-sided p-values of all variants and
    columns of the table are Holm-corrected together, and so are the TOST p-values.
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
            if not all(column in outcomes[base[s]] for s in seeds):
                continue
            for s in seeds:
                check_same_images([outcomes[by_seed[s]], outcomes[base[s]]], [by_seed[s], base[s]])
            diff = outcome_matrix([outcomes[by_seed[s]][column] for s in seeds])
            diff -= outcome_matrix([outcomes[base[s]][column] for s in seeds])
            if not same_images([outcomes[by_seed[s]] for s in seeds]):
                diff = diff.mean(axis=1, keepdims=True)  # each seed its own images: t over seeds
            e = crossed_mean(diff)
            found.append(Paired(variant, setting, column, e, e.p_value(), e.p_equivalent()))
    adjusted = holm([p.p_value for p in found])
    equivalent = holm([p.p_equivalent for p in found])
    return [
        replace(p, adjusted=a, equivalent=q)
        for p, a, q in zip(found, adjusted, equivalent, strict=True)
    ]


def paired_markdown(
    rows: Sequence[Row], columns: Sequence[str], outcomes: Outcomes, reference: str = REFERENCE
) -> list[str]:
    """The paired-comparison table (lines), with its caption naming the method."""
    found = paired_comparisons(rows, columns, outcomes, reference)
    if not found:
        variants = {row["variant"] for row in rows}
        if reference not in variants:
            why = f"the table has no {reference} run"
        elif variants == {reference}:
            why = f"the table has no variant besides {reference}"
        else:
            why = "no variant has per-image outcomes for the same seeds as it"
        return [f"No paired comparison with {reference}: {why}."]
    tested = [c for c in columns if any(p.column == c for p in found)]
    swept = any(p.setting != "default" for p in found)
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for p in found:
        # a difference can be both established and within the margin: small but real
        mark = "*" * (p.adjusted <= ALPHA) + "=" * (p.equivalent <= ALPHA)
        interval = _interval_cell((p.estimate, True), signed=True)
        cells.setdefault((p.variant, p.setting), {})[p.column] = (
            f"{interval} (p{_p(p.adjusted)}){mark}"
        )
    seeds = sorted({p.seeds for p in found})
    margin = f"{100 * EQUIVALENCE_MARGIN:g}"
    lines = [
        f"Paired comparison with {reference} on the same test images and offsets: the "
        f"difference in points (variant minus {reference}, mean over "
        f"{'/'.join(map(str, seeds))} seeds and the test images) with its 95% interval counting "
        f"seeds and images, and its two-sided p, Holm-corrected over all {len(found)} tests of "
        f"this table; * a difference established at {ALPHA}; = equal within ±{margin} points "
        f"(two one-sided tests, TOST, Holm-corrected likewise); *= both, a difference smaller "
        f"than the margin; no mark: neither established (not established is not equal).",
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
    """Each run's value with its Wilson 95% interval over its distinct test images (lines)."""
    measured = [r for r in rows if r["run"] in outcomes]
    if not measured:
        return []
    tested = [c for c in columns if any(c in outcomes[r["run"]] for r in measured)]
    sizes = sorted({len(outcomes[r["run"]]["index"]) for r in measured})
    lines = [
        "## Each run",
        "",
        f"Per run (one seed): value in % and its Wilson 95% interval over the "
        f"{'/'.join(map(str, sizes))} distinct test images.",
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
            # an image measured in several passes or quadrants counts once, with its share
            per_image = outcome_matrix([values])[0]
            low, high = wilson_interval(float(per_image.sum()), len(per_image))
            cells.append(f"{100 * per_image.mean():.1f} [{100 * low:.1f}, {100 * high:.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def protocol_legend(columns: Sequence[str], rows: Sequence[Row], outcomes: Outcomes) -> list[str]:
    """The legend of the table's protocol columns (none without them), saying whether every
    run has their per-image outcomes."""
    protocols = [c for c in columns if c.startswith("test/")]
    if not protocols:
        return []
    names = list(dict.fromkeys(c.split("/")[1] for c in protocols))
    without = [
        c for c in protocols if not rows or any(c not in outcomes.get(r["run"], {}) for r in rows)
    ]
    if not without or len(without) == len(protocols):
        return [f"{legend(names)} {PROTOCOL_NOTE[not without]}"]
    # e.g. the `if correct` columns: a ratio over each run's own correct images, not an outcome
    # of every test image
    others = ", ".join(f"`{header(c)}`" for c in without)
    note = PROTOCOL_NOTE[False]
    return [f"{legend(names)} {PROTOCOL_NOTE[True]} Except {others}: {note[0].lower()}{note[1:]}"]


def _p(value: float) -> str:
    return f"={value:.2g}" if value >= 0.001 else "<0.001"


def header(column: str) -> str:
    """The short name of a metric column in tables and plot axes."""
    if column.startswith("consistency_"):
        return column.removeprefix("consistency_")
    if column.startswith("acc@"):
        return column.removeprefix("acc@")
    if column.startswith("test/"):  # a protocol's column: test/<protocol>/<metric>_<source>
        return column_label(column)
    names = {
        "acc": "accuracy", "flip_rate": "flip rate", "unseen_drop": "drop",
        "acc_in_range": "in range", "acc_beyond_range": "beyond",
    }  # fmt: skip
    return (names | {"rf_fraction": "RF/canvas"}).get(column, column)


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


def plot_unseen_vs_field(rows: Sequence[dict[str, Any]]) -> Any:
    """Accuracy in the unseen (and the seen) quadrants against the field over the canvas:
    the mean over seeds per variant and network, bars ± one standard deviation."""
    table_rows = aggregate(rows, [RF_COLUMN, "acc@unseen", "acc@top-left"])
    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for variant in dict.fromkeys(r["variant"] for r in table_rows):
        points = sorted(
            (r for r in table_rows if r["variant"] == variant), key=lambda r: r[RF_COLUMN]
        )
        x = [r[RF_COLUMN] for r in points]
        errors = [
            [0.0 if math.isnan(r[f"{c}_std"]) else r[f"{c}_std"] for r in points]
            for c in ("acc@unseen", "acc@top-left")
        ]
        (line,) = ax.plot([], [])
        ax.errorbar(
            x,
            [r["acc@unseen"] for r in points],
            yerr=errors[0],
            marker="o",
            capsize=3,
            color=line.get_color(),
            label=f"{variant}: unseen quadrants",
        )
        ax.errorbar(
            x,
            [r["acc@top-left"] for r in points],
            yerr=errors[1],
            marker="x",
            capsize=3,
            ls="--",
            alpha=0.6,
            color=line.get_color(),
            label=f"{variant}: seen quadrant",
        )
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set(
        xlabel="theoretical receptive field of the last feature map / canvas side",
        ylabel="test accuracy",
        ylim=(0, 1.02),
    )
    seeds = len({r["seed"] for r in rows})
    ax.set_title(
        "trained in the top-left quadrant only"
        + (f" (bars: ± 1 std over {seeds} seeds)" if seeds > 1 else " (one seed)"),
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def write_plots(
    out: Path,
    rows: Sequence[Row],
    scatter: tuple[str, str],
    regions: Sequence[str],
    seen: str,
    note: str = "",
) -> list[Path]:
    """Draw every plot of the experiment from its rows; returns the PNG files. ``note`` is
    written on top of every plot (a partial comparison's "incomplete: k of N runs")."""
    figures = {CURVE_PNG: plot_curves(rows), SCATTER_PNG: plot_scatter(rows, *scatter)}
    if regions:
        figures[REGIONS_PNG] = plot_regions(rows, regions, seen)
    if any(RF_COLUMN in row for row in rows):  # the receptive-field experiment
        figures[RF_PLOT_PNG] = plot_unseen_vs_field(rows)
    paths = []
    for name, fig in figures.items():
        if note:
            fig.suptitle(note, color="firebrick", fontsize=9)
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths.append(out / name)
    return paths
