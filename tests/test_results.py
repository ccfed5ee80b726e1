"""The results tables: intervals counting seeds and images, per-run Wilson intervals, the paired
comparison with the baseline and its Holm and TOST marks, the run rule, computed by hand on
outcomes built for the test; and the provenance block."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest
from scipy.stats import t as student_t

from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.compare.provenance import commit, markdown_block, provenance
from invariance_recipes.compare.results import (
    TIMED,
    curve_accuracy,
    header,
    intervals_markdown,
    markdown,
    paired_comparisons,
    plot_curves,
    read_rows,
    time_legend,
    write_rows,
)
from invariance_recipes.compare.run_rule import parse_flag
from invariance_recipes.compare.statistics import wilson_interval

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
                {
                    "variant": variant,
                    "setting": "default",
                    "seed": seed,
                    "run": name,
                    "acc": values["acc"].mean(),
                    "consistency_zero@4": values["consistency_zero@4"].mean(),
                    "wall_s": 10.0,
                }
            )
            outcomes[name] = values
    return rows, outcomes


def test_paired_comparisons_count_shared_images_once_and_holm(runs) -> None:
    rows, outcomes = runs
    found = {
        (p.variant, p.column): p
        for p in paired_comparisons(rows, ["acc", "consistency_zero@4"], outcomes)
    }
    acc = found["better", "acc"]
    # per image: -1 on images 0-1, +1 on 180-189, the same in both seeds: +8 of 200
    d = np.zeros(N)
    d[:2], d[180:190] = -1, 1
    assert acc.difference == pytest.approx(0.04) and acc.seeds == 2
    # the two seeds repeat the same 200 images, so they carry the information of one: the
    # standard error is that of 200 paired differences, not of 400 (the old McNemar's error)
    se = math.sqrt(np.var(d, ddof=1) / N)
    assert acc.estimate.se == pytest.approx(se)
    assert acc.estimate.df == pytest.approx(N - 1)
    assert acc.p_value == pytest.approx(2 * student_t.sf(0.04 / se, N - 1))
    zero = found["better", "consistency_zero@4"]
    assert zero.difference == pytest.approx(0.2)
    tied = found["tied", "acc"]
    assert (tied.difference, tied.p_value, tied.p_equivalent) == (0.0, 1.0, 0.0)
    # Holm over the 4 tests: sorted p (zero, acc, tied, tied) times 4, 3, 2, 1, monotone
    assert zero.adjusted == pytest.approx(min(1.0, 4 * zero.p_value))
    assert acc.adjusted == pytest.approx(min(1.0, max(4 * zero.p_value, 3 * acc.p_value)))
    assert tied.adjusted == 1.0
    assert tied.equivalent == 0.0  # identical outcomes: equal within the margin


def test_a_small_established_difference_is_marked_both_different_and_equal() -> None:
    """One point of accuracy on 5,000 shared images, the same in both seeds: established
    (t about 7) and inside the ±2-point margin (TOST), so the cell carries both marks."""
    images = 5000
    right = np.zeros(images, bool)
    right[:4500] = True
    more = right.copy()
    more[4500:4550] = True  # 50 more images right: +1 point
    rows, outcomes = [], {}
    for seed in (0, 1):
        for variant, acc in (("baseline", right), ("slightly-better", more)):
            name = f"{variant}-seed{seed}"
            rows.append({"variant": variant, "setting": "default", "seed": seed, "run": name,
                         "acc": acc.mean(), "wall_s": 1.0})  # fmt: skip
            outcomes[name] = {"index": np.arange(images), "acc": acc, "images_sha256": SHA}
    (found,) = paired_comparisons(rows, ["acc"], outcomes)
    se = math.sqrt(0.01 * 0.99 / images * images / (images - 1))
    assert found.estimate.se == pytest.approx(se)
    assert found.adjusted < 1e-9 and found.equivalent < 1e-9
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc"], outcomes)
    line = next(line for line in md.splitlines() if line.startswith("| slightly-better | +"))
    assert line.endswith("| +1.0 [+0.7, +1.3] (p<0.001)*= |")
    assert "*= both, a difference smaller than the margin" in md


def test_markdown_has_interval_table_paired_table_intervals_and_provenance(runs) -> None:
    rows, outcomes = runs
    origin = markdown_block(provenance("python recipes/compare.py --experiment x", 12.0, 60.0))
    md = markdown(
        "x", "a test", "setup", "cmd", rows, ["acc", "consistency_zero@4"], outcomes, origin
    )
    assert "crossed random-effects" in md and "Holm" in md and "TOST" in md
    # the mean table: baseline 180 of 200 right in both seeds; its interval counts 200 images
    base = next(line for line in md.splitlines() if line.startswith("| baseline | 2 |"))
    x = np.r_[np.ones(180), np.zeros(20)]
    half = student_t.ppf(0.975, N - 1) * math.sqrt(np.var(x, ddof=1) / N)
    assert f"| 2 | 200 | 90.0 [{100 * (0.9 - half):.1f}, {100 * (0.9 + half):.1f}] |" in base
    line = next(line for line in md.splitlines() if line.startswith("| better | +"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # +4 points on 200 shared images is not established after Holm (p = 0.062), where
    # McNemar over both seeds' 400 "images" called it established
    assert cells[1].startswith("+4.0 [+0.6, +7.4] (p=0.062)") and not cells[1].endswith("*")
    assert cells[2].startswith("+20.0 [") and cells[2].endswith("(p<0.001)*")
    tied = next(line for line in md.splitlines() if line.startswith("| tied | +0.0"))
    assert "*" not in tied and tied.count(")=") == 2
    # the interval of baseline seed 0 on accuracy: 180 of 200, by hand from scipy
    ci = binomtest(180, N).proportion_ci(0.95, method="wilson")
    run = next(line for line in md.splitlines() if line.startswith("| baseline-seed0 |"))
    assert f"90.0 [{100 * ci.low:.1f}, {100 * ci.high:.1f}]" in run
    assert md.index("<!-- readme -->") < md.index("| better | +") < md.index("<!-- /readme -->")
    assert "## Provenance" in md
    assert "Left out" not in md


def test_runs_that_did_not_train_are_left_out_and_listed(runs, tmp_path: Path) -> None:
    rows, outcomes = runs
    # a collapsed run: one class for every image
    collapsed = dict(outcomes["better-seed1"])
    collapsed["prediction"] = np.zeros(N, int)
    collapsed["label"] = np.arange(N) % 10
    outcomes = {**outcomes, "better-seed1": collapsed}
    rows = [dict(r) for r in rows]
    next(r for r in rows if r["run"] == "tied-seed0")["plateaued"] = "false"
    write_rows(tmp_path / "results.csv", rows)  # the flag survives the real CSV format
    rows = read_rows(tmp_path / "results.csv")
    assert next(r for r in rows if r["run"] == "tied-seed0")["plateaued"] == 0.0
    assert next(r for r in rows if r["run"] == "tied-seed1")["plateaued"] == ""
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc"], outcomes)
    left = md.split("Left out of every table", 1)[1].split("<!-- /readme -->")[0]
    assert "- better-seed1: the model predicts class 0 for 100% of the 200 images" in left
    assert "- tied-seed0: validation accuracy had not plateaued" in left
    assert "| better | 1 | 200 |" in md and "| tied | 1 | 200 |" in md
    assert "| better-seed1 |" not in md.split("## Each run")[1]
    with pytest.raises(ValueError, match="flag value 'maybe'"):
        parse_flag("maybe")


def test_runs_on_different_images_are_not_paired(runs) -> None:
    rows, outcomes = runs
    outcomes["better-seed1"] = {**outcomes["better-seed1"], "images_sha256": np.array("other")}
    with pytest.raises(ValueError, match="different images"):
        paired_comparisons(rows, ["acc"], outcomes)


def test_without_outcomes_the_report_says_so(runs) -> None:
    rows, _ = runs
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc"])
    assert "No paired comparison with baseline: no variant has per-image outcomes" in md
    assert "Each run" not in md
    # only the reference arm, or none of it: said so, not blamed on missing outcomes
    alone = [row for row in rows if row["variant"] == "baseline"]
    assert "the table has no variant besides baseline." in markdown(
        "x", "t", "s", "c", alone, ["acc"]
    )
    others = [row for row in rows if row["variant"] != "baseline"]
    assert "the table has no baseline run." in markdown("x", "t", "s", "c", others, ["acc"])


def test_provenance_records_commit_versions_machine_and_command() -> None:
    fields = provenance("python recipes/compare.py --experiment small-shift", 3.4, 120.0)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
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


def test_seeds_tested_on_their_own_images_fall_back_to_t_over_seeds(runs) -> None:
    rows, outcomes = runs
    # each seed drew its own test images (pairs within a seed still match): the seeds' means
    # are then independent, and the interval is Student's t over them
    for seed in (0, 1):
        for variant in ("baseline", "better", "tied"):
            name = f"{variant}-seed{seed}"
            outcomes[name] = {**outcomes[name], "images_sha256": np.array(f"split{seed}")}
    outcomes["better-seed1"] = {**outcomes["better-seed1"], "acc": _flags(186)}  # +3 in seed 1
    (acc,) = [p for p in paired_comparisons(rows, ["acc"], outcomes) if p.variant == "better"]
    diffs = [0.04, 0.03]  # seed 0: 188 - 180 of 200; seed 1: 186 - 180
    assert (acc.estimate.images, acc.estimate.df) == (1, 1)
    assert acc.difference == pytest.approx(0.035)
    assert acc.estimate.se == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(2))


def test_each_run_interval_counts_an_image_once_over_its_passes_and_quadrants() -> None:
    """Four images, each in three quadrants (or passes): the per-run interval is over the 4
    distinct images with their shares (1, 2/3, 1/3, 0: 50%), not over 12 outcomes."""
    per_quadrant = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)
    outcomes = {"r": {"index": np.arange(4), "acc@unseen": per_quadrant}}
    lines = intervals_markdown([{"run": "r"}], ["acc@unseen"], outcomes)
    low, high = wilson_interval(2.0, 4)  # the shares sum to 2 of 4 images
    assert f"| r | 50.0 [{100 * low:.1f}, {100 * high:.1f}] |" in lines
    assert any("over the 4 distinct test images" in line for line in lines)


def test_protocol_columns_say_whether_they_have_per_image_outcomes(runs) -> None:
    rows, outcomes = runs
    column = "test/zhang2019/consistency_crop"
    for row in rows:  # the crop protocol agrees on the same images as zero@4
        row[column] = row["consistency_zero@4"]
        outcomes[row["run"]] = {
            **outcomes[row["run"]],
            column: outcomes[row["run"]]["consistency_zero@4"],
        }
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc", column], outcomes)
    assert "measured per image on each run's tested checkpoint" in md
    assert "no paired test" not in md
    # a ratio over each run's correct images has no outcome per test image: said by name
    among_correct = "test/zhang2019/consistency_among_correct_crop"
    for row in rows:
        row[among_correct] = row["consistency_zero@4"]
    mixed = markdown("x", "a test", "setup", "cmd", rows, ["acc", column, among_correct], outcomes)
    assert (
        "with the same intervals and paired tests as the other columns. Except "
        f"`{header(among_correct)}`: they have no per-image outcomes, so Student's t over the "
        "seeds' values and no paired test."
    ) in mixed
    paired = next(line for line in md.splitlines() if line.startswith("| better | +"))
    assert paired.strip("|").split("|")[2].strip().startswith("+20.0 [")  # paired like zero@4
    # runs measured before protocol outcomes were recorded: their test's means only
    for found in outcomes.values():
        del found[column]
    md = markdown("x", "a test", "setup", "cmd", rows, ["acc", column], outcomes)
    assert "have no per-image outcomes, so Student's t over the seeds' values and no paired" in md


def test_time_legend_says_which_runs_count_only_their_last_invocation(tmp_path: Path) -> None:
    timed = {"run": "a", "wall_s": 10.0, TIMED: 1.0}
    assert "started before" not in time_legend([timed, timed | {"run": "b"}])
    # a row written before runs recorded their training time has no such column at all
    write_rows(tmp_path / "results.csv", [timed, {"run": "old", "wall_s": 5.0}])
    rows = read_rows(tmp_path / "results.csv")
    assert time_legend(rows).endswith(
        "(1 of 2 runs started before runs recorded their training time and count only the "
        "invocation that finished them: less than their whole time where a stop interrupted "
        "them)."
    )
