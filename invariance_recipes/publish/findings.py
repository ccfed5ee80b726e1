"""The findings table: one row per published claim, what the paper claims, what we measured
with its 95% interval, and whether the claim holds here.

It reads the comparisons in ``docs/results/`` (``results.csv`` and the per-image outcomes its
rows name) and writes ``docs/results/findings/results.md``, whose table the README copies like
any other results block::

    python recipes/findings.py

A claim is one entry of ``FINDINGS``: the sentence, the paper, the paper's claim in words
(numbers only where its setting is comparable to ours), and its measurements. Each measurement
compares two arms on the same test images and seeds, or reads one arm:

- where the runs have per-image outcomes of the column, the interval counts seeds and images
  (``statistics.crossed_mean`` over the ``seeds x images`` matrix of paired differences);
- where a number exists only per run (a protocol's headline, a reading of the curve), it is
  Student's t over the seeds' values, wider with few seeds.

A measurement tests one of four kinds of claim: *greater* (holds when the 95% interval lies above
0, fails when below); *no worse* ("no drop", "matches or beats": holds when the difference is
above minus the equivalence margin by a one-sided test, fails when the interval lies below it);
*equal* (TOST within the margin); *exact* (every distinct test image, in every seed); else *not
established*, which is not *equal*. An accuracy shown beside a consistency claim is context and
does not decide it. Runs that did not train (``compare.run_rule``) are left out and listed. A
claim whose arms fall short of the evidence standard (``evidence_standard``: seeds, a plateau
record, tuning) is not established, with its numbers shown and the shortfall named. A claim
whose comparison or arm has no run that trained yet is *not measured*, and the others are
measured; with none measurable the command stops with one line naming the comparison to run.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invariance_recipes.compare.provenance import markdown_block, provenance
from invariance_recipes.compare.results import (
    README_BLOCK,
    RESULTS_CSV,
    RESULTS_MD,
    Row,
    check_same_images,
    curve_accuracy,
    read_rows,
    same_images,
)
from invariance_recipes.compare.run_rule import split_trained
from invariance_recipes.compare.statistics import (
    ALPHA,
    EQUIVALENCE_MARGIN,
    Estimate,
    crossed_mean,
    outcome_matrix,
    wilson_interval,
)
from invariance_recipes.compare.tuning import read_tuning
from invariance_recipes.measure.outcomes import outcomes_of_rows
from invariance_recipes.publish.evidence_standard import (
    PUBLISHED_SEEDS,
    arm_shortfalls,
    describe_shortfalls,
)

FINDINGS_DIR = "findings"  # docs/results/findings/results.md
COMMIT = re.compile(r"^- commit: (\S+)(.*)$", re.MULTILINE)
Value = str | Callable[[Row], float]  # a column name, or a number read off a run's row


class NotMeasured(LookupError):
    """A claim's comparison, or an arm it reads, has no run that trained (yet): the claim's row
    says so, and the other claims are measured."""


class Results:
    """The rows and per-image outcomes of the comparisons in one results folder; the runs that
    did not train are left out (``left_out``) by the run rule."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._rows: dict[str, list[Row]] = {}
        self._outcomes: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        self.left_out: dict[str, list[tuple[Row, str]]] = {}

    def rows(self, experiment: str) -> list[Row]:
        """The runs of an experiment that trained."""
        if experiment not in self._rows:
            path = self.root / experiment / RESULTS_CSV
            if not path.is_file():
                raise NotMeasured(
                    f"{path} is missing: run python recipes/compare.py --experiment {experiment} "
                    f"--seeds {PUBLISHED_SEEDS} --out {path.parent}"
                )
            rows = read_rows(path)
            self._outcomes[experiment] = outcomes_of_rows(path.parent, rows)
            self._rows[experiment], self.left_out[experiment] = split_trained(
                rows, self._outcomes[experiment]
            )
        return self._rows[experiment]

    def by_seed(self, experiment: str, variant: str, setting: str = "default") -> dict[int, Row]:
        """The runs of one arm that trained, by seed."""
        found = {
            r["seed"]: r
            for r in self.rows(experiment)
            if r["variant"] == variant and r["setting"] == setting
        }
        if not found:
            raise NotMeasured(f"{experiment} has no trained run of {_name((variant, setting))}")
        return found

    def per_image(self, experiment: str, rows: Sequence[Row], column: str) -> np.ndarray | None:
        """The ``seeds x images`` outcomes of a column, or None unless every run has them on
        the same images."""
        self.rows(experiment)
        per_run = [self._outcomes[experiment].get(r["run"], {}) for r in rows]
        if not all(column in outcomes for outcomes in per_run) or not same_images(per_run):
            return None
        return outcome_matrix([outcomes[column] for outcomes in per_run])

    def check_paired(self, experiment: str, mine: Sequence[Row], theirs: Sequence[Row]) -> None:
        """Raise ``ValueError`` unless each seed's two runs were tested on the same images."""
        for a, b in zip(mine, theirs, strict=True):
            pair = [self._outcomes[experiment].get(r["run"], {}) for r in (a, b)]
            if all("images_sha256" in o for o in pair):
                check_same_images(pair, [a["run"], b["run"]])

    def below_standard(self, arms: Iterable[tuple[str, str, str]]) -> str:
        """Why the (experiment, variant, setting) arms fall short of the evidence standard, per
        experiment ("" when they meet it)."""
        lacking: dict[str, list[dict[str, int]]] = {}
        tunings: dict[str, dict | None] = {}
        for experiment, variant, setting in sorted(set(arms)):
            rows = list(self.by_seed(experiment, variant, setting).values())
            if experiment not in tunings:
                tunings[experiment] = read_tuning(self.root / experiment)
            lacking.setdefault(experiment, []).append(
                arm_shortfalls(rows, tunings[experiment], variant, setting)
            )
        return "; ".join(filter(None, (describe_shortfalls(e, a) for e, a in lacking.items())))

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
        low, high: the 95% interval of the tested quantity, in shares (not points).
        verdict: ``holds``, ``fails``, ``not established``, or ``context`` for a number shown
            beside the claim that does not decide it.
        method: how the interval was computed.
        arms: the (experiment, variant, setting) arms it read, which the evidence standard
            (``evidence_standard``) checks.
    """

    measured: str
    low: float
    high: float
    verdict: str
    method: str
    arms: tuple[tuple[str, str, str], ...] = ()


def verdict(low: float, high: float) -> str:
    """*holds* if the interval lies above zero, *fails* if below, else *not established*."""
    return "holds" if low > 0 else "fails" if high < 0 else "not established"


def verdict_no_worse(e: Estimate, margin: float = EQUIVALENCE_MARGIN) -> str:
    """Non-inferiority: *holds* when the one-sided test puts the difference above ``-margin``,
    *fails* when the 95% interval lies entirely below ``-margin``."""
    if e.p_no_worse(margin) <= ALPHA:
        return "holds"
    return "fails" if e.interval()[1] < -margin else "not established"


def verdict_equal(e: Estimate, margin: float = EQUIVALENCE_MARGIN) -> str:
    """TOST: *holds* when the difference is within ``±margin``, *fails* when the 95% interval
    lies entirely outside it."""
    if e.p_equivalent(margin) <= ALPHA:
        return "holds"
    low, high = e.interval()
    return "fails" if low > margin or high < -margin else "not established"


VERDICTS: dict[str, Callable[[Estimate], str]] = {
    "greater": lambda e: verdict(*e.interval()),
    "no worse": verdict_no_worse,
    "equal": verdict_equal,
    "context": lambda e: "context",
}


def overall(verdicts: Sequence[str]) -> str:
    """A claim holds when every deciding measurement does and fails when any one fails."""
    deciding = [v for v in verdicts if v != "context"]
    if "fails" in deciding:
        return "fails"
    return "holds" if deciding and all(v == "holds" for v in deciding) else "not established"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _signed(value: float) -> str:
    return f"{100 * value:+.1f}"


def _name(arm: tuple[str, str]) -> str:
    return " ".join(x for x in arm if x != "default")


def _method(e: Estimate, images: bool) -> str:
    if images:
        return f"{e.seeds} seeds x {e.images} images"
    return f"t over {e.seeds} seeds"


def arm_values(
    results: Results, experiment: str, rows: Sequence[Row], value: Value
) -> tuple[np.ndarray, bool]:
    """An arm's ``seeds x images`` outcomes of a column when every run has them (True), else
    its per-run numbers as one column (False)."""
    if not isinstance(value, str):
        return np.array([[value(r)] for r in rows]), False
    found = results.per_image(experiment, rows, value)
    if found is not None:
        return found, True
    if missing := [r["run"] for r in rows if r.get(value, "") == ""]:
        raise ValueError(
            f"{experiment}: run(s) {', '.join(missing)} have no {value}: rerun the comparison "
            "with the experiment's current columns"
        )
    return np.array([[float(r[value])] for r in rows]), False


def difference(
    results: Results,
    experiment: str,
    arm: tuple[str, str],
    reference: tuple[str, str],
    value: Value,
    what: str,
    claim: str = "greater",
) -> Evidence:
    """Arm minus reference, paired by seed (and by image where per-image outcomes exist).

    ``arm`` and ``reference`` are (variant, setting); ``value`` a column name (per-image
    outcomes used when both arms have them) or a function of a run's row; ``claim`` one of
    ``VERDICTS``."""
    mine, theirs = results.by_seed(experiment, *arm), results.by_seed(experiment, *reference)
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        raise ValueError(f"{experiment}: {_name(arm)} and {_name(reference)} share no seed")
    results.check_paired(experiment, [mine[s] for s in seeds], [theirs[s] for s in seeds])
    a, a_images = arm_values(results, experiment, [mine[s] for s in seeds], value)
    b, b_images = arm_values(results, experiment, [theirs[s] for s in seeds], value)
    if a_images != b_images:  # one arm lacks per-image outcomes: compare per-run means
        a, b = a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True)
    e = crossed_mean(a - b)
    low, high = e.interval()
    margin = f", margin ±{100 * EQUIVALENCE_MARGIN:g}" if claim in ("no worse", "equal") else ""
    measured = (
        f"{what}: {_name(arm)} {_pct(a.mean())} vs {_name(reference)} {_pct(b.mean())}, "
        f"difference {_signed(e.mean)} [{_signed(low)}, {_signed(high)}]"
    )
    method = _method(e, a_images and b_images) + (
        f", {claim}{margin}" if claim != "context" else ""
    )
    arms = ((experiment, *arm), (experiment, *reference))
    return Evidence(measured, low, high, VERDICTS[claim](e), method, arms)


def arm_mean(
    results: Results,
    experiment: str,
    variant: str,
    value: Value,
    what: str,
    setting: str = "default",
    claim: str = "greater",
) -> Evidence:
    """One arm's mean over seeds (and images where per-image outcomes exist)."""
    rows = list(results.by_seed(experiment, variant, setting).values())
    values, images = arm_values(results, experiment, rows, value)
    e = crossed_mean(values)
    low, high = e.interval()
    arm = _name((variant, setting))
    measured = f"{what}: {arm} {_pct(e.mean)} [{_pct(low)}, {_pct(high)}]"
    return Evidence(
        measured,
        low,
        high,
        VERDICTS[claim](e),
        _method(e, images),
        ((experiment, variant, setting),),
    )


def exactness(results: Results, experiment: str, variant: str, column: str, what: str) -> Evidence:
    """The distinct test images with the outcome in every seed; exact means every one. The
    Wilson interval counts distinct images, never seeds x images."""
    rows = list(results.by_seed(experiment, variant).values())
    matrix = results.per_image(experiment, rows, column)
    if matrix is None:
        raise FileNotFoundError(
            f"{experiment}: {variant} has no per-image outcomes of {column} in "
            f"{results.root / experiment}"
        )
    every_seed = np.all(matrix == 1, axis=0)  # every pass of the image, in every seed
    k, n = int(np.count_nonzero(every_seed)), len(every_seed)
    low, high = wilson_interval(k, n)
    measured = (
        f"{what}: {variant} {k} of {n} test images in all {len(rows)} seeds ({_pct(k / n)}) "
        f"[{_pct(low)}, {_pct(high)}]"
    )
    return Evidence(
        measured,
        low - 1,
        high - 1,
        "holds" if k == n else "fails",
        "Wilson over distinct images",
        ((experiment, variant, "default"),),
    )


@dataclass(frozen=True)
class Finding:
    """One published claim and how this project measures it.

    Args:
        paper_reports: the paper's claim in words, accuracy and invariance; numbers only where
            the paper's setting is comparable to ours.
    """

    claim: str
    paper: str
    paper_reports: str
    measure: Callable[[Results], list[Evidence]]


def _accuracy(results: Results, experiment: str, arm: str, reference: str) -> Evidence:
    """Accuracy beside a consistency claim: context, it does not decide the claim."""
    return difference(
        results,
        experiment,
        (arm, "default"),
        (reference, "default"),
        "acc",
        "clean accuracy",
        claim="context",
    )


def _anti_aliasing(results: Results) -> list[Evidence]:
    return [
        difference(
            results, "small-shift", ("blurpool", "default"), ("baseline", "default"),
            "test/zhang2019/consistency_crop", "zhang2019 consistency",
        ),
        difference(
            results, "small-shift", ("blurpool", "default"), ("baseline", "default"), "acc",
            "clean accuracy",
        ),
    ]  # fmt: skip


def _aps_exact(results: Results) -> list[Evidence]:
    return [
        exactness(
            results, "small-shift", "aps-circular", "consistency_circular@8",
            "circular consistency @8",
        ),
        _accuracy(results, "small-shift", "aps-circular", "baseline"),
    ]  # fmt: skip


def _lps_vs_aps(results: Results) -> list[Evidence]:
    return [
        exactness(
            results, "small-shift", "lps-circular", "consistency_circular@8",
            "circular consistency @8",
        ),
        difference(
            results, "small-shift", ("lps-circular", "default"), ("aps-circular", "default"),
            "acc", "clean accuracy", claim="no worse",
        ),
    ]  # fmt: skip


def _fractional(results: Results) -> list[Evidence]:
    # AFC's own score (sub_shift_robust_score): correct unshifted and at every fractional shift
    column = "test/afc-fractional/worst_acc_fourier"
    return [
        *(
            difference(
                results, "small-shift", ("alias-free", "default"), (other, "default"), column,
                "afc-fractional",
            )
            for other in ("blurpool", "aps-circular")
        ),
        *(_accuracy(results, "small-shift", "alias-free", other)
          for other in ("blurpool", "aps-circular")),
    ]  # fmt: skip


def _pooling(results: Results) -> list[Evidence]:
    gain = difference(
        results,
        "unseen-position",
        ("global-pooling", "default"),
        ("baseline", "default"),
        "acc@unseen",
        "accuracy in unseen quadrants",
    )
    drops = [
        arm_mean(
            results, "unseen-position", variant, "unseen_drop",
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
    gain = difference(
        results,
        "receptive-field",
        ("baseline", widest),
        ("baseline", smallest),
        lambda r: r["acc@unseen"],
        "flatten head, accuracy in unseen quadrants",
    )
    kept = arm_mean(
        results,
        "receptive-field",
        "baseline",
        lambda r: r["acc@unseen"] - r["acc@top-left"],
        f"flatten head, unseen minus seen quadrant ({widest})",
        widest,
    )
    return [gain, kept]


def _augmentation(results: Results) -> list[Evidence]:
    """The gain from training with shifts up to 4 px, within |o| <= 4 and beyond (4, 16]."""

    def gain_within_minus_beyond(row: Row) -> float:
        return curve_accuracy(row, 1, 4) - curve_accuracy(row, 5, 16)

    return [
        difference(
            results, "augmentation-sweep", (variant, "shift4"), (variant, "shift0"),
            gain_within_minus_beyond, "accuracy within 1-4 px minus beyond 4 px",
        )
        for variant in ("baseline", "global-pooling")
    ]  # fmt: skip


#: The registry: a new claim is one entry.
FINDINGS: tuple[Finding, ...] = (
    Finding(
        "anti-aliasing raises consistency, and accuracy with it",
        "Zhang, ICML 2019",
        "Blurring before each subsampling raises both ImageNet top-1 accuracy and shift "
        "consistency, for ResNet, VGG, DenseNet and MobileNet (ImageNet-scale networks and "
        "images: not comparable to our setting, so no numbers here)",
        _anti_aliasing,
    ),
    Finding(
        "APS is 100% consistent under circular shifts",
        "Chaman & Dokmanic, CVPR 2021",
        "Exactly 100% consistency under circular shifts, by construction (circular padding, "
        "global pooling), at accuracy no lower than the baseline's",
        _aps_exact,
    ),
    Finding(
        "LPS matches or beats APS",
        "Rojas-Gomez et al., NeurIPS 2022",
        "A learned polyphase choice keeps APS's exact circular consistency and reaches higher "
        "accuracy than APS",
        _lps_vs_aps,
    ),
    Finding(
        "AFC stays correct under fractional shifts where BlurPool and APS do not",
        "Michaeli, Michaeli & Soudry, CVPR 2023",
        "Alias-free networks stay correct under every sub-pixel (fractional) shift more often "
        "than anti-aliased and polyphase networks (their score: correct at the unshifted input "
        "and at every shift), at a small cost in accuracy (ImageNet "
        "ConvNeXt and ResNet: not comparable, so no numbers here)",
        _fractional,
    ),
    Finding(
        "global pooling recognises objects in unseen positions, flatten and MLP heads do not",
        "the cat-in-the-corner argument",
        "An argument, no measurement",
        _pooling,
    ),
    Finding(
        "a receptive field covering the image lets a flatten head recognise unseen positions",
        "the cat-in-the-corner argument",
        "An argument, no measurement",
        _covering_field,
    ),
    Finding(
        "augmentation helps within its range more than beyond it",
        "Azulay & Weiss, JMLR 2019",
        "Qualitative: networks trained with shifts generalise to shifts like those seen in "
        "training, not beyond them",
        _augmentation,
    ),
)


def findings_markdown(results: Results, provenance_block: str = "") -> str:
    """The findings report: the table the README copies, the method, the runs left out, and the
    sources."""
    margin = f"{100 * EQUIVALENCE_MARGIN:g}"
    lines = [
        "# findings",
        "",
        "Each published claim, measured here on the embedded data; command: "
        "`python recipes/findings.py`. The paper's claim is in words where its setting is not "
        "comparable to ours. Our numbers are in %, means over seeds (and over the test images, "
        "which every seed shares), each with its 95% interval: counting both seeds and images "
        "(a crossed random-effects model, `seeds x images`) where the runs have per-image "
        "outcomes, Student's t over the seeds' values where a number exists only per run. A "
        "greater claim holds when the interval lies above 0 and fails when below; a no-worse "
        f"claim (no drop, matches or beats) holds when a one-sided test at {ALPHA} puts the "
        f"difference above -{margin} points (the equivalence margin, fixed before the runs) and "
        f"fails when the interval lies below -{margin}; an equal claim is a TOST within "
        f"±{margin} points; an exact claim holds only if every distinct test image agrees in "
        "every seed (Wilson interval over distinct images). Otherwise: not established, which "
        "is not equal. Accuracy stands beside every consistency claim as context; a claim with "
        "several deciding measurements holds when all of them do and fails when one fails. Whatever "
        "its intervals say, a claim is not established when an arm it reads falls below the "
        f"standard: at least {PUBLISHED_SEEDS} seeds that trained, runs that record whether "
        "their validation accuracy plateaued, and a learning rate tuned on validation.",
        "",
        README_BLOCK[0],
        "| claim | paper | the paper reports | we measure (95% interval) | here |",
        "|---|---|---|---|---|",
    ]
    missing: list[NotMeasured] = []
    for finding in FINDINGS:
        try:
            evidence = finding.measure(results)
        except NotMeasured as reason:
            missing.append(reason)
            lines.append(
                f"| {finding.claim} | {finding.paper} | {finding.paper_reports} | nothing yet | "
                f"not measured: {reason} |"
            )
            continue
        measured = "; ".join(f"{e.measured} ({e.method}: {e.verdict})" for e in evidence)
        verdicts = overall([e.verdict for e in evidence])
        if short := results.below_standard(arm for e in evidence for arm in e.arms):
            verdicts = f"not established: below the standard ({short})"
        lines.append(
            f"| {finding.claim} | {finding.paper} | {finding.paper_reports} | {measured} | "
            f"{verdicts} |"
        )
    if len(missing) == len(FINDINGS):
        raise missing[0]
    left_out = [(e, row, why) for e in results.loaded() for row, why in results.left_out[e]]
    lines += ["", *left_out_lines(left_out), README_BLOCK[1], ""]
    sources = ", ".join(f"{e} at {results.commit(e)}" for e in results.loaded())
    lines += [f"Sources: `docs/results/` {sources}.", ""]
    return "\n".join(lines) + ("\n" + provenance_block if provenance_block else "")


def left_out_lines(left_out: Sequence[tuple[str, Row, str]]) -> list[str]:
    """The runs no claim rests on, each with why."""
    if not left_out:
        return ["Runs left out by the run rule (did not train): none."]
    return [
        f"Runs left out by the run rule (did not train; no claim rests on them): {len(left_out)}.",
        "",
        *(f"- {experiment} {row['run']}: {why}" for experiment, row, why in left_out),
    ]


def findings_command(argv: list[str]) -> int:
    """``findings.py``: write the findings report from the results folders."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        results = Results(args.results)
        body = findings_markdown(results)
    except (NotMeasured, FileNotFoundError, ValueError) as err:
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
