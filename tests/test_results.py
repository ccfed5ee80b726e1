"""The results tables: per-run Wilson intervals, the paired comparison with the baseline and its
Holm marks, computed by hand on outcomes built for the test; and the provenance block."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.compare.provenance import commit, markdown_block, provenance
from invariance_recipes.compare.results import (
    curve_accuracy,
    markdown,
    paired_comparisons,
    plot_curves,
)

N = 200
SHA = np.array("same-images")


def _outcomes(acc: np.ndarray, zero: np.ndarray, sha: np.ndarray = SHA) -> dict[str, np.ndarray]:
    return {
        "index": np.arange(len(acc)),
        "acc": acc,
        "consistency_zero@4": zero,
        "images_sha256": sha,
    }


def _flags(count: int, first: int = 0) -> np.ndarray:
    flags = np.zeros(N, bool)
    flags[first : first + count] = True
    return flags


@pytest.fixture
def runs() -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """Two seeds of baseline, better (clearly more consistent) and tied (same outcomes)."""
    rows, outcomes = [], {}
    for seed in (0, 1):
        base = _outcomes(_flags(180), _flags(150))
        # better: right on 10 images baseline misses, wrong on 2 it gets (acc +4 points);
        # consistent on 40 more images (zero@4 +20 points)
        better = _outcomes(_flags(180 + 10) & ~_flags(2), _flags(190))
        for variant, values in (("baseline", base), ("better", better), ("tied", base)):
            name = f"{variant}-seed{seed}"
            rows.append(
                {"variant": variant, "setting": "default", "seed": seed, "run": name,
                 "acc": values["acc"].mean(), "consistency_zero@4": values["consistency_zero@4"].mean(),
                 "wall_s": 10.0}
            )  # fmt: skip
            outcomes[name] = values
    return rows, outcomes


def test_paired_comparisons_match_a_hand_computed_mcnemar_and_holm(runs) -> None:
    rows, outcomes = runs
    found = {
        (p.variant, p.column): p
        for p in paired_comparisons(rows, ["acc", "consistency_zero@4"], outcomes)
    }
    acc = found["better", "acc"]
    assert (acc.only_variant, acc.only_reference) == (20, 4)  # 10 and 2 per seed, 2 seeds
    assert acc.difference == pytest.approx(0.04)
    assert acc.p_value == pytest.approx(binomtest(4, 24, 0.5).pvalue)
    zero = found["better", "consistency_zero@4"]
    assert (zero.only_variant, zero.only_reference) == (80, 0)
    tied = found["tied", "acc"]
    assert (tied.only_variant, tied.only_reference, tied.p_value) == (0, 0, 1.0)
    # Holm over the 4 tests: sorted p (zero, acc, tied, tied) times 4, 3, 2, 1, monotone
    assert zero.adjusted == pytest.approx(4 * zero.p_value)
    assert acc.adjusted == pytest.approx(max(4 * zero.p_value, 3 * acc.p_value))
    assert tied.adjusted == 1.0


def test_markdown_has_mean_table_paired_table_intervals_and_provenance(runs) -> None:
    rows, outcomes = runs
    origin = markdown_block(provenance("python recipes/compare.py --experiment x", 12.0, 60.0))
    md = markdown(
        "x", "a test", "setup", "cmd", rows, ["acc", "consistency_zero@4"], outcomes, origin
    )
    assert "McNemar's exact test" in md and "Holm" in md
    line = next(line for line in md.splitlines() if line.startswith("| better | +"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1].startswith("+4.0 (20/4, p=") and cells[1].endswith(")*")
    assert cells[2].startswith("+20.0 (80/0, p<0.001)*")
    tied = next(line for line in md.splitlines() if line.startswith("| tied | +0.0"))
    assert "*" not in tied
    # the interval of baseline seed 0 on accuracy: 180 of 200, by hand from scipy
    ci = binomtest(180, N).proportion_ci(0.95, method="wilson")
    run = next(line for line in md.splitlines() if line.startswith("| baseline-seed0 |"))
    assert f"90.0 [{100 * ci.low:.1f}, {100 * ci.high:.1f}]" in run
    assert md.index("<!-- readme -->") < md.index("| better | +") < md.index("<!-- /readme -->")
    assert "## Provenance" in md


def test_runs_on_different_images_are_not_paired(runs) -> None:
    rows, outcomes = runs
    outcomes["better-seed1"] = {**outcomes["better-seed1"], "images_sha256": np.array("other")}
    with pytest.raises(ValueError, match="different images"):
        paired_comparisons(rows, ["acc"], outcomes)


def test_without_outcomes_the_report_says_so(runs) -> None:
    rows, _ = runs
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc"])
    assert "per-image outcomes of both are missing" in md
    assert "Each run" not in md


def test_provenance_records_commit_versions_machine_and_command() -> None:
    fields = provenance("python recipes/compare.py --experiment small-shift", 3.4, 120.0)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()  # fmt: skip
    assert fields["commit"].startswith(head)
    assert re.search(r"\((clean|dirty: uncommitted changes)\)$", fields["commit"])
    import albumentations
    import lightning
    import torch
    import torchmetrics

    for module in (torch, lightning, torchmetrics, albumentations):
        assert f"{module.__name__} {module.__version__}" in fields["packages"]
    assert "logical cores" in fields["machine"] and "torch threads" in fields["machine"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", fields["date"])
    assert fields["wall time"] == "3 s this invocation; 120 s summed over all runs"
    assert fields["command"] == "`python recipes/compare.py --experiment small-shift`"


def test_range_accuracies_are_read_from_the_curve_by_the_larger_axis() -> None:
    # a curve along the diagonal, accuracy falling by 0.1 per pixel of offset, from 1.0 at 0
    row = {"setting": "shift4", "variant": "baseline"}
    row |= {f"test/acc_at_shift/{o:+d}_{o:+d}": 1 - 0.1 * abs(o) for o in range(-5, 6)}
    assert curve_accuracy(row, 0, 0) == pytest.approx(1.0)
    # offsets -2..2: (0.8 + 0.9 + 1.0 + 0.9 + 0.8) / 5
    assert curve_accuracy(row, 0, 2) == pytest.approx(0.88)
    sweep = replace(get_experiment("augmentation-sweep"), curve_max_shift=5)
    derived = sweep.derived(row)
    # trained with S = 4: offsets -4..4 are (1 + 2 (0.9 + 0.8 + 0.7 + 0.6)) / 9
    assert derived["acc_in_range"] == pytest.approx(7 / 9)
    # beyond: offsets -5 and 5, both 0.5
    assert derived["acc_beyond_range"] == pytest.approx(0.5)
    assert sweep.derived(row | {"setting": "default"}) == {}
    assert math.isnan(curve_accuracy(row, 6, 9))


def test_the_dirty_flag_ignores_the_results_being_written_but_not_the_code(
    tmp_path: Path,
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    assert commit(tmp_path).endswith("(clean)")
    (tmp_path / "docs" / "results" / "small-shift").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "small-shift" / "results.md").write_text("# table\n")
    assert commit(tmp_path).endswith("(clean)")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert commit(tmp_path).endswith("(dirty: uncommitted changes)")


def test_eleven_variants_get_eleven_colours() -> None:
    rows = [
        {"variant": f"v{i}", "setting": "default", "seed": 0,
         **{f"test/acc_at_shift/{d:+d}_{d:+d}": 0.5 for d in (-1, 0, 1)}}
        for i in range(11)
    ]  # fmt: skip
    fig = plot_curves(rows)
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert len(colours) == 11
