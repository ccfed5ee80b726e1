"""The findings table: one row per published claim, what we measured, its 95% interval, and
whether the claim holds here.

It reads the comparisons in ``docs/results/`` (``results.csv`` and the per-image outcomes its
rows name) and writes ``docs/results/findings/results.md``, whose table the README copies like
any other results block::

    python recipes/findings.py

A claim is one entry of ``FINDINGS``: the sentence, the paper, the number the paper reports, and
a measurement. Each measurement compares two arms on the same test images and seeds:

- where both arms have per-image outcomes, the interval is a paired bootstrap of the
  seed-averaged difference (``statistics.paired_bootstrap``);
- where a number exists only per run (a protocol's headline, a reading of the curve), the
  interval is Student's t over the seeds' paired differences, wider with few seeds.

The verdict reads the interval: *holds* when it lies entirely on the claimed side of zero,
*fails* when it lies entirely on the other side, *not established* otherwise. An exactness claim
(100%) holds only when every image of every seed agrees.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev

import numpy as np
from scipy.stats import t as student_t

from invariance_recipes.compare.outcomes import outcomes_of_rows
from invariance_recipes.compare.provenance import markdown_block, provenance
from invariance_recipes.compare.results import (
    README_BLOCK,
    RESULTS_CSV,
    RESULTS_MD,
    Row,
    curve_accuracy,
    read_rows,
)
from invariance_recipes.compare.statistics import CONFIDENCE, paired_bootstrap, wilson_interval

FINDINGS_DIR = "findings"  # docs/results/findings/results.md
COMMIT = re.compile(r"^- commit: (\S+)(.*)$", re.MULTILINE)


class Results:
    """The rows and per-image outcomes of the comparisons in one results folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._rows: dict[str, list[Row]] = {}
        self._outcomes: dict[str, dict[str, dict[str, np.ndarray]]] = {}

    def rows(self, experiment: str) -> list[Row]:
        if experiment not in self._rows:
            path = self.root / experiment / RESULTS_CSV
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: run python recipes/compare.py --experiment {experiment} "
                    f"--seeds 3 --out {path.parent}"
                )
            self._rows[experiment] = read_rows(path)
            self._outcomes[experiment] = outcomes_of_rows(path.parent, self._rows[experiment])
        return self._rows[experiment]

    def by_seed(self, experiment: str, variant: str, setting: str = "default") -> dict[int, Row]:
        """The runs of one arm, by seed."""
        found = {
            r["seed"]: r
            for r in self.rows(experiment)
            if r["variant"] == variant and r["setting"] == setting
        }
        if not found:
            raise ValueError(f"{experiment} has no run of {variant} ({setting})")
        return found

    def outcome(self, experiment: str, row: Row, column: str) -> np.ndarray:
        """One run's per-image outcomes of a column."""
        self.rows(experiment)
        per_run = self._outcomes[experiment].get(row["run"], {})
        if column not in per_run:
            raise FileNotFoundError(
                f"{row['run']} has no per-image outcomes of {column} in {self.root / experiment}"
            )
        return per_run[column]

    def loaded(self) -> list[str]:
        """The experiments read so far."""
        return sorted(self._rows)

    def commit(self, experiment: str) -> str:
        """The commit (and dirty flag) the comparison's results.md records."""
        text = (self.root / experiment / RESULTS_MD).read_text()
        match = COMMIT.search(text)
        return f"{match[1][:7]}{match[2]}" if match else "unknown"


@dataclass(frozen=True)
class Evidence:
    """What we measured for a claim.

    Args:
        measured: our numbers in words, in percent.
        low, high: the 95% interval of the tested quantity, in points.
        verdict: ``holds``, ``fails`` or ``not established``.
        method: how the interval was computed.
    """

    measured: str
    low: float
    high: float
    verdict: str
    method: str


def verdict(low: float, high: float) -> str:
    """*holds* if the interval lies above zero, *fails* if below, else *not established*."""
    return "holds" if low > 0 else "fails" if high < 0 else "not established"


def overall(verdicts: Sequence[str]) -> str:
    """A claim holds when every measurement does and fails when any one fails."""
    if "fails" in verdicts:
        return "fails"
    return "holds" if all(v == "holds" for v in verdicts) else "not established"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _signed(value: float) -> str:
    return f"{100 * value:+.1f}"


def seed_interval(differences: Sequence[float]) -> tuple[float, float]:
    """Student's t interval of the mean of per-seed differences."""
    if len(differences) < 2:
        return -math.inf, math.inf
    half = student_t.ppf(0.5 + CONFIDENCE / 2, len(differences) - 1) * stdev(differences)
    half /= math.sqrt(len(differences))
    return fmean(differences) - half, fmean(differences) + half


def per_run_difference(
    results: Results,
    experiment: str,
    arm: tuple[str, str],
    reference: tuple[str, str],
    value: Callable[[Row], float],
    what: str,
) -> Evidence:
    """Arm minus reference of a per-run number, paired by seed, t interval over seeds.

    ``arm`` and ``reference`` are (variant, setting); a setting other than ``default`` is
    named in the text."""
    mine, theirs = results.by_seed(experiment, *arm), results.by_seed(experiment, *reference)
    seeds = sorted(set(mine) & set(theirs))
    a, b = [value(mine[s]) for s in seeds], [value(theirs[s]) for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    low, high = seed_interval(diffs)
    name_a, name_b = (" ".join(x for x in pair if x != "default") for pair in (arm, reference))
    measured = (
        f"{what}: {name_a} {_pct(fmean(a))} vs {name_b} {_pct(fmean(b))}, "
        f"difference {_signed(fmean(diffs))} [{_signed(low)}, {_signed(high)}]"
    )
    return Evidence(measured, low, high, verdict(low, high), f"t over {len(seeds)} seeds")


def outcome_difference(
    results: Results, experiment: str, arm: str, reference: str, column: str, what: str
) -> Evidence:
    """Arm minus reference on the same test images, paired bootstrap over images and seeds."""
    mine, theirs = results.by_seed(experiment, arm), results.by_seed(experiment, reference)
    seeds = sorted(set(mine) & set(theirs))
    pairs = [
        (
            results.outcome(experiment, mine[s], column),
            results.outcome(experiment, theirs[s], column),
        )
        for s in seeds
    ]
    boot = paired_bootstrap(pairs)
    a, b = fmean(p[0].mean() for p in pairs), fmean(p[1].mean() for p in pairs)
    measured = (
        f"{what}: {arm} {_pct(a)} vs {reference} {_pct(b)}, difference {_signed(boot.difference)} "
        f"[{_signed(boot.low)}, {_signed(boot.high)}]"
    )
    return Evidence(
        measured, boot.low, boot.high, verdict(boot.low, boot.high),
        f"paired bootstrap over images, {len(seeds)} seeds",
    )  # fmt: skip


def exactness(results: Results, experiment: str, variant: str, column: str, what: str) -> Evidence:
    """The share of images (all seeds pooled) with the outcome; exact means every one."""
    pooled = np.concatenate(
        [
            results.outcome(experiment, r, column)
            for r in results.by_seed(experiment, variant).values()
        ]
    )
    k, n = int(np.count_nonzero(pooled)), len(pooled)
    low, high = wilson_interval(k, n)
    measured = f"{what}: {variant} {k} of {n} images ({_pct(k / n)}) [{_pct(low)}, {_pct(high)}]"
    return Evidence(
        measured, low - 1, high - 1, "holds" if k == n else "fails", "Wilson, seeds pooled"
    )


@dataclass(frozen=True)
class Finding:
    """One published claim and how this project measures it."""

    claim: str
    paper: str
    paper_reports: str
    measure: Callable[[Results], list[Evidence]]


def _lps_vs_aps(results: Results) -> list[Evidence]:
    return [
        exactness(
            results, "small-shift", "lps-circular", "consistency_circular@8",
            "circular consistency @8",
        ),
        outcome_difference(
            results, "small-shift", "lps-circular", "aps-circular", "acc", "accuracy"
        ),
    ]  # fmt: skip


def _fractional(results: Results) -> list[Evidence]:
    column = "test/afc-fractional/worst_consistency_fourier"
    return [
        per_run_difference(
            results, "small-shift", ("alias-free", "default"), (other, "default"),
            lambda r: r[column], "afc-fractional",
        )
        for other in ("blurpool", "aps-circular")
    ]  # fmt: skip


def _augmentation(results: Results) -> list[Evidence]:
    """The gain from training with shifts up to 4 px, within |o| <= 4 and beyond (4, 16]."""

    def gain_within_minus_beyond(row: Row) -> float:
        return curve_accuracy(row, 1, 4) - curve_accuracy(row, 5, 16)

    return [
        per_run_difference(
            results, "augmentation-sweep", (variant, "shift4"), (variant, "shift0"),
            gain_within_minus_beyond, "accuracy within 1-4 px minus beyond 4 px",
        )
        for variant in ("baseline", "global-pooling")
    ]  # fmt: skip


def _anti_aliasing(results: Results) -> list[Evidence]:
    return [
        per_run_difference(
            results, "small-shift", ("blurpool", "default"), ("baseline", "default"),
            lambda r: r["test/zhang2019/consistency_crop"], "zhang2019",
        )
    ]  # fmt: skip


def _aps_exact(results: Results) -> list[Evidence]:
    return [
        exactness(
            results, "small-shift", "aps-circular", "consistency_circular@8",
            "circular consistency @8",
        )
    ]  # fmt: skip


def seed_mean(
    results: Results,
    experiment: str,
    variant: str,
    value: Callable[[Row], float],
    what: str,
    setting: str = "default",
) -> Evidence:
    """A per-run number of one arm, its mean over seeds with Student's t interval."""
    values = [value(row) for row in results.by_seed(experiment, variant, setting).values()]
    centred = [v - fmean(values) for v in values]
    half = seed_interval(centred)[1]  # the t half-width of the mean
    low, high = fmean(values) - half, fmean(values) + half
    arm = variant if setting == "default" else f"{variant} {setting}"
    measured = f"{what}: {arm} {_pct(fmean(values))} [{_pct(low)}, {_pct(high)}]"
    return Evidence(measured, low, high, verdict(low, high), f"t over {len(values)} seeds")


def _pooling(results: Results) -> list[Evidence]:
    gain = outcome_difference(
        results, "unseen-position", "global-pooling", "baseline", "acc@unseen",
        "accuracy in unseen quadrants",
    )  # fmt: skip
    drops = [
        seed_mean(
            results, "unseen-position", variant, lambda r: r["unseen_drop"],
            "drop from the seen to the unseen quadrants",
        )
        for variant in ("baseline", "fc-head")
    ]  # fmt: skip
    return [gain, *drops]


def _covering_field(results: Results) -> list[Evidence]:
    networks = sorted(
        {r["setting"] for r in results.rows("receptive-field")},
        key=lambda name: next(iter(results.by_seed("receptive-field", "baseline", name).values()))[
            "rf_px"
        ],
    )
    smallest, widest = networks[0], networks[-1]
    gain = per_run_difference(
        results, "receptive-field", ("baseline", widest), ("baseline", smallest),
        lambda r: r["acc@unseen"], "flatten head, accuracy in unseen quadrants",
    )  # fmt: skip
    kept = seed_mean(
        results, "receptive-field", "baseline", lambda r: r["acc@unseen"] - r["acc@top-left"],
        f"flatten head, unseen minus seen quadrant ({widest})", widest,
    )  # fmt: skip
    return [gain, kept]


#: The registry: a new claim is one entry.
FINDINGS: tuple[Finding, ...] = (
    Finding(
        "anti-aliasing raises consistency",
        "Zhang, ICML 2019",
        "ResNet-50, ImageNet: consistency 89.20 -> 91.32",
        _anti_aliasing,
    ),
    Finding(
        "APS is 100% consistent under circular shifts",
        "Chaman & Dokmanic, CVPR 2021",
        "100% (exact, circular padding and global pooling)",
        _aps_exact,
    ),
    Finding(
        "LPS matches or beats APS",
        "Rojas-Gomez et al., NeurIPS 2022",
        "100% circular consistency, like APS, with a learned phase",
        _lps_vs_aps,
    ),
    Finding(
        "AFC stays consistent under fractional shifts where BlurPool and APS are not",
        "Michaeli, Michaeli & Soudry, CVPR 2023",
        "ConvNeXt-T feature error of a 1-px roll 0.2781 -> 1.34e-5",
        _fractional,
    ),
    Finding(
        "global pooling recognises objects in unseen positions, flatten and MLP heads do not",
        "the cat-in-the-corner argument",
        "none (an argument)",
        _pooling,
    ),
    Finding(
        "a receptive field covering the image lets a flatten head recognise unseen positions",
        "the cat-in-the-corner argument",
        "none (an argument)",
        _covering_field,
    ),
    Finding(
        "augmentation helps within its range more than beyond it",
        "Azulay & Weiss, JMLR 2019",
        "none (qualitative)",
        _augmentation,
    ),
)


def findings_markdown(results: Results, provenance_block: str = "") -> str:
    """The findings report: the table the README copies, the method, and the sources."""
    lines = [
        "# findings",
        "",
        "Each published claim, measured here on the embedded data; command: "
        "`python recipes/findings.py`. Our numbers are in %, means over seeds, each difference "
        "with its 95% interval in points; the verdict reads the interval: holds (entirely on "
        "the claimed side of 0), fails (entirely on the other side), not established (it "
        "contains 0). An exactness claim holds only if every image of every seed agrees; a claim "
        "with several measurements holds when all of them do and fails when one fails.",
        "",
        README_BLOCK[0],
        "| claim | paper | the paper reports | we measure (95% interval) | here |",
        "|---|---|---|---|---|",
    ]
    for finding in FINDINGS:
        evidence = finding.measure(results)
        measured = "; ".join(f"{e.measured} ({e.method}: {e.verdict})" for e in evidence)
        verdicts = overall([e.verdict for e in evidence])
        lines.append(
            f"| {finding.claim} | {finding.paper} | {finding.paper_reports} | {measured} | "
            f"{verdicts} |"
        )
    sources = ", ".join(f"{e} at {results.commit(e)}" for e in results.loaded())
    lines += [README_BLOCK[1], "", f"Sources: `docs/results/` {sources}.", ""]
    return "\n".join(lines) + ("\n" + provenance_block if provenance_block else "")


def findings_command(argv: list[str]) -> int:
    """``findings.py``: write the findings report from the results folders."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        results = Results(args.results)
        body = findings_markdown(results)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "recipes/findings.py", *argv])
    block = markdown_block(provenance(command, time.monotonic() - start, 0.0))
    out = args.results / FINDINGS_DIR / RESULTS_MD
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body + "\n" + block)
    print(body)
    print(f"findings in {out}")
    return 0
