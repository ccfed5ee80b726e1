"""The benchmark recipe: a quick run as a user starts it with its CSV and Markdown read back
(both thread counts, every section), and the interleaved timing against a hand computation.
The correctness of the fast paths it measures is tested with the layers (test_layers.py)."""

from __future__ import annotations

import csv
import itertools
import math
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from invariance_recipes.benchmarks.cli import parse_args, run
from invariance_recipes.benchmarks.compiled import compile_row
from invariance_recipes.benchmarks.micro_batch import micro_batch_row
from invariance_recipes.benchmarks.rows import COLUMNS, QUICK
from invariance_recipes.benchmarks.timing import Timings, alternate, balanced_order, interleaved
from invariance_recipes.benchmarks.training import VARIANT, VARIANT_OPTIONS
from invariance_recipes.lightning_modules.layers.blur_paths import choose_path
from invariance_recipes.lightning_modules.variants import VARIANTS
from recipe_runs import run_recipe

SECTIONS = {
    "layers", "translate", "validation", "training", "data", "layout", "variants", "imports",
    "comparison",
}  # fmt: skip
PEERS = ("timm", "kornia", "antialiased-cnns")
PADS = ("zero", "reflect")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("benchmarks")
    proc = run_recipe("benchmark.py", "--quick", "--out", str(out), cwd=out, timeout=900)
    return proc, out


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.slow
def test_quick_run_writes_one_positive_ratio_per_comparison(quick_run) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(path.name for path in out.iterdir()) == ["cpu-quick.csv", "cpu-quick.md"]
    header, rows = read_csv(out / "cpu-quick.csv")
    assert tuple(header) == COLUMNS
    assert {row["section"] for row in rows} == SECTIONS
    # Every section at the default thread count and at 1 thread; starting a process once, and
    # the whole comparison runs (an hour or more a thread count) at the first count only.
    counts = {str(torch.get_num_threads()), "1"}
    for section in SECTIONS - {"imports", "comparison"}:
        assert {row["threads"] for row in rows if row["section"] == section} == counts, section
    assert sum(row["section"] == "imports" for row in rows) == 1
    default = str(torch.get_num_threads())
    assert {row["threads"] for row in rows if row["section"] == "comparison"} == {default}
    for row in rows:
        ratio, target = float(row["ratio"]), float(row["target"])
        assert ratio > 0 and float(row["ours_ms"]) > 0 and float(row["baseline_ms"]) > 0
        assert float(row["ratio_q1"]) <= ratio <= float(row["ratio_q3"])
        if math.isinf(target):  # a cost without a goal
            assert row["holds"] == "n/a", row
        elif abs(ratio - target) > 1e-3 * target:  # the CSV rounds to 4 digits
            assert (row["holds"] == "yes") == (ratio <= target), row
    # Every translate mode, each against its floor and target: the Fourier shift against one
    # FFT round trip (at most 1.5x), the integer shifts against a copy (at most 2x).
    floors = {
        row["ours"]: (row["baseline"], float(row["target"]))
        for row in rows
        if row["section"] == "translate" and row["threads"] == "1"
    }
    assert floors == {
        f"translate({mode})": ("rfft2 + irfft2", 1.5) if mode == "fourier" else ("x.clone()", 2.0)
        for mode in ("zero", "reflect", "circular", "fourier")
    }
    # The avg-pool floor needs no peer; a missing peer leaves a note instead of rows.
    assert any(row["baseline"] == "avg_pool2d(2)" for row in rows)
    markdown = (out / "cpu-quick.md").read_text(encoding="utf-8")
    for peer in PEERS:
        compared = any(row["baseline"].startswith(peer) for row in rows)
        assert compared != (f"{peer} is not installed" in markdown), peer


@pytest.mark.slow
def test_quick_run_costs_every_variant_against_the_default(quick_run) -> None:
    _, out = quick_run
    _, rows = read_csv(out / "cpu-quick.csv")
    for threads in {str(torch.get_num_threads()), "1"}:
        costs = [r for r in rows if r["section"] == "variants" and r["threads"] == threads]
        assert [r["ours"] for r in costs] == [*VARIANTS, *VARIANT_OPTIONS]
        assert {r["baseline"] for r in costs} == {VARIANT}
        gflops = {}
        for row in costs:
            rate, seconds, split, gflop, share = re.fullmatch(
                r"([\d,]+) images/s: ([\d.e+]+) s per epoch of ([\d,]+) images; "
                rf"([\d.e+]+) GFLOP a step, ([\d.e+]+)x {VARIANT}'s",
                row["note"],
            ).groups()
            gflops[row["ours"]] = float(gflop), float(share)
            batch = int(row["setting"].split(", ")[1].split("x")[0])
            expected = batch / (float(row["ours_ms"]) / 1e3)  # images per second from the time
            # rounded to whole images per second, from a time the CSV keeps to 4 digits
            assert float(rate.replace(",", "")) == pytest.approx(
                expected, abs=0.5 + 2e-3 * expected
            )
            # 3 significant digits are printed: up to 5e-3 of rounding, on top of the time's
            per_epoch = int(split.replace(",", "")) / expected
            assert float(seconds) == pytest.approx(per_epoch, rel=7e-3)
        # The FLOP count against the small CNN's convolutions counted by hand: forward, the
        # weights' gradients, and the inputs' gradients but the image's (its head's matrix
        # products add 0.2%; 3 significant digits are printed)
        batch, channels, side = map(int, costs[0]["setting"].split(", ")[1].split("x")[:3])
        widths = [channels, 32, 64, 128]
        forward = [
            2 * batch * c_in * c_out * 9 * (side // 2**i) ** 2
            for i, (c_in, c_out) in enumerate(itertools.pairwise(widths))
        ]
        assert gflops["baseline"][0] == pytest.approx(
            (3 * sum(forward) - forward[0]) / 1e9, rel=8e-3
        )
        assert gflops[VARIANT][1] == 1.0
        # LPS's scoring network is the method's arithmetic; the authors' narrower one is less
        assert gflops["lps"][1] > gflops["lps (lps_hidden_divisor=8)"][1] > 1.0
        # The default variant is its own baseline: the same timings in every round.
        (default,) = (r for r in costs if r["ours"] == VARIANT)
        assert float(default["ratio"]) == 1.0 and default["ours_ms"] == default["baseline_ms"]


def _phases(note: str) -> dict[str, float]:
    """The phases a comparison row's note lists, in seconds."""
    _, _, listed = note.partition(": ")
    parts = (part.rsplit(" ", 2) for part in listed.split(", "))
    return {name: float(value) for name, value, unit in parts if unit == "s"}


@pytest.mark.slow
def test_quick_run_splits_a_comparison_run_into_phases_and_projects_its_budget(
    quick_run,
) -> None:
    """The phases add up to the whole run; the projection to the experiment's budget scales
    the steps and the loading between them by the steps and keeps the one-off phases."""
    from invariance_recipes.benchmarks.comparison import EXPERIMENT, PHASES, TARGET
    from invariance_recipes.compare.experiments import get_experiment

    _, out = quick_run
    _, rows = read_csv(out / "cpu-quick.csv")
    budget = get_experiment(EXPERIMENT).steps
    measured, projected = (r for r in rows if r["section"] == "comparison")
    short, long = _phases(measured["note"]), _phases(projected["note"])
    assert list(short) == list(long) == list(PHASES)
    for row, phases in ((measured, short), (projected, long)):
        # each phase printed to 3 digits: up to 5e-3 of rounding apiece
        assert sum(phases.values()) == pytest.approx(float(row["ours_ms"]) / 1e3, rel=6e-3)
        assert phases["steps"] == pytest.approx(float(row["baseline_ms"]) / 1e3, rel=6e-3)
    steps = int(re.search(r"run of (\d+) steps", measured["setting"]).group(1))
    for phase in ("steps", "loading"):
        assert long[phase] == pytest.approx(short[phase] * budget / steps, rel=1.2e-2)
    for phase in ("start", "build", "test", "measure"):
        assert long[phase] == short[phase]
    assert f"projected to {budget} steps" in projected["setting"]
    assert float(projected["target"]) == TARGET and math.isinf(float(measured["target"]))


@pytest.mark.slow
def test_quick_run_markdown_table_matches_the_csv(quick_run) -> None:
    proc, out = quick_run
    _, rows = read_csv(out / "cpu-quick.csv")
    lines = (out / "cpu-quick.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| section |"))
    table = lines[start : start + 2 + len(rows)]
    assert start + 2 + len(rows) == len(lines) or not lines[start + 2 + len(rows)].startswith("|")
    columns = table[0].count("|")
    assert all(line.startswith("|") and line.count("|") == columns for line in table)
    assert set(table[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    for line, row in zip(table[2:], rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:5] == [
            row["section"], row["threads"], row["setting"], row["ours"], row["baseline"]
        ]  # fmt: skip
        assert float(cells[7]) == pytest.approx(float(row["ratio"]), rel=5e-3)
        assert cells[10] == ("**no**" if row["holds"] == "no" else row["holds"])
    machine = next(line for line in lines if line.startswith("Machine: "))
    assert f"torch {torch.__version__}" in machine and "logical cores" in machine
    assert proc.stdout.startswith(f"machine: {machine.removeprefix('Machine: ')}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rounds", "0"], "--rounds 0: pass a positive integer"),
        (["--threads", "2", "-1"], "--threads -1: pass a positive integer"),
        (["--device", "cuda"], "--device cuda: CUDA is not available"),
    ],
)
def test_bad_options_raise_one_line_errors(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    with pytest.raises(ValueError, match=message):
        run([*args, "--quick", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_blur_paths_time_every_path_against_the_one_the_table_picks(tmp_path: Path) -> None:
    assert "blur-paths" not in parse_args([]).only  # only on request: it feeds the table
    rows = run(["--quick", "--only", "blur-paths", "--threads", "1", "--out", str(tmp_path)])
    settings = [(s, k, pad) for s, sizes in QUICK.layer_shapes for k in sizes for pad in PADS]
    assert len({(r.setting, r.ours, r.baseline) for r in rows}) == len(rows)
    for shape, filt, pad in settings:
        label = f"BlurPool2d({filt}, {pad})"
        chosen = f"{label} {choose_path(torch.zeros(shape), filt, pad, threads=1)}"
        mine = [r for r in rows if r.setting.startswith("x".join(map(str, shape)) + " ")]
        others = [r for r in mine if r.baseline == chosen]
        paths = [f"{label} {path}" for path in ("dense", "conv", "conv-channels-last")]
        assert chosen in paths
        assert sorted(r.ours for r in others) == sorted(set(paths) - {chosen})
        assert all(r.threads == 1 and r.ours_ms > 0 for r in others)
        peers = [r for r in mine if r.ours == chosen]  # the chosen path against the peer
        assert len(peers) <= 1 and all(r.ours_ms == others[0].baseline_ms for r in peers)


@pytest.mark.slow
def test_compile_row_times_a_real_compilation_and_when_it_pays_for_itself() -> None:
    assert "compile" not in parse_args([]).only  # only on request: it feeds a choice
    counters.clear()
    row = compile_row(QUICK, torch.device("cpu"), "global-pooling")
    assert counters["stats"]["unique_graphs"] >= 1  # the compiled step really compiled
    assert (row.section, row.ours, row.baseline, row.target) == (
        "compile", "compiled step", "eager step", 1.0,
    )  # fmt: skip
    assert row.ours_ms > 0 and row.baseline_ms > 0
    seconds, payback = re.fullmatch(
        r"compilation ([\d.e+]+) s \(caches off\); (.*)", row.note
    ).groups()
    assert float(seconds) >= 0  # the first step beyond the eager ones (0 if noise hid it)
    if row.ratio >= 1:
        assert payback == "never pays for itself"
    else:  # the compilation over the time a step saves, at the row's paired ratio
        steps = int(
            re.fullmatch(r"pays for itself after ([\d,]+) steps", payback)[1].replace(",", "")
        )
        saved = row.baseline_ms / 1e3 * (1 - row.ratio)
        # the note's seconds have 3 significant digits (off by up to 0.5%), and the step count
        # is the exact quotient rounded up
        quotient = float(seconds) / saved
        assert quotient / 1.005 <= steps <= quotient / 0.995 + 1


def test_micro_batch_rows_time_parts_against_the_whole_batch_where_the_network_splits() -> None:
    """Evaluation for every network; the training step only for one that may split it in
    training (the alias-free net's per-image norm), not for a BatchNorm network."""
    assert "micro-batch" not in parse_args([]).only  # only on request: it feeds a choice
    cpu = torch.device("cpu")
    alias_free = micro_batch_row(QUICK, cpu, "alias-free", 32)
    baseline = micro_batch_row(QUICK, cpu, "baseline", 48)
    images = 4 * QUICK.batch_size
    assert [(r.setting, r.ours, r.baseline, r.note) for r in alias_free] == [
        (f"alias-free small-cnn, {images} images of 3x32x32", "in parts of 16", "all at once",
         "evaluation (inference mode)"),
        (f"alias-free small-cnn, {QUICK.batch_size} images of 3x32x32", "in parts of 16",
         "all at once", "training step (forward and backward)"),
    ]  # fmt: skip
    assert [(r.setting, r.ours) for r in baseline] == [
        (f"baseline small-cnn, {images} images of 3x48x48", "in parts of 14")
    ]
    for row in (*alias_free, *baseline):
        assert row.section == "micro-batch" and row.target == 1.0
        assert row.ours_ms > 0 and row.baseline_ms > 0 and row.ratio > 0


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "table.md"
    file.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--out .*table\.md is a file: pass a folder"):
        run(["--quick", "--out", str(file)])


def test_alternate_times_each_round_in_the_next_balanced_order() -> None:
    calls: list[str] = []

    def measure(name: str) -> float:
        calls.append(name)
        return float(len(calls))

    timings = alternate({name: lambda name=name: measure(name) for name in "abcd"}, rounds=5)
    # Williams' rows for four (0 1 3 2, each shifted by the round), then their mirror images
    assert "".join(calls) == "abdc" + "bcad" + "cdba" + "dacb" + "cdba"
    assert timings.seconds == {
        "a": [1.0, 7.0, 12.0, 14.0, 20.0],
        "b": [2.0, 5.0, 11.0, 16.0, 19.0],
        "c": [4.0, 6.0, 9.0, 15.0, 17.0],
        "d": [3.0, 8.0, 10.0, 13.0, 18.0],
    }


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6, 7, 14])
def test_balanced_order_puts_each_candidate_first_and_behind_each_other_equally_often(
    count: int,
) -> None:
    orders = [balanced_order(count, r) for r in range(2 * count)]
    assert all(sorted(order) == list(range(count)) for order in orders)
    firsts = Counter(order[0] for order in orders)
    assert firsts == {i: 2 for i in range(count)}
    behind = Counter((a, b) for order in orders for a, b in itertools.pairwise(order))
    assert behind == {(a, b): 2 for a in range(count) for b in range(count) if a != b}


def test_ratio_is_the_median_and_quartiles_of_the_paired_per_round_ratios() -> None:
    timings = Timings({"ours": [1.0, 4.0, 3.0, 10.0, 2.0], "base": [2.0, 2.0, 4.0, 2.0, 1.0]})
    paired = np.array([0.5, 2.0, 0.75, 5.0, 2.0])
    expected = (np.median(paired), np.percentile(paired, 25), np.percentile(paired, 75))
    assert timings.ratio("ours", "base") == pytest.approx(expected)
    assert timings.median("ours") == 3.0
    single = Timings({"ours": [3.0], "base": [2.0]})
    assert single.ratio("ours", "base") == (1.5, 1.5, 1.5)


def test_interleaved_times_blocks_of_calls_between_syncs() -> None:
    events: list[str] = []

    def nap() -> None:
        events.append("call")
        time.sleep(0.002)

    timings = interleaved(
        {"nap": nap}, rounds=3, min_block=0.01, sync=lambda: events.append("sync")
    )
    assert len(timings.seconds["nap"]) == 3
    assert all(seconds >= 0.002 for seconds in timings.seconds["nap"])
    # Every round is one block of calls between two syncs, as long as calibrated in warm-up.
    blocks = [b for b in "".join(e[0] for e in events).split("s") if b]
    warmup, calibration, timed = blocks[0], blocks[1:-3], blocks[-3:]
    assert warmup == "c" and calibration and set(timed) == {calibration[-1]}
    with pytest.raises(ValueError, match="rounds=0"):
        alternate({"nap": lambda: 0.0}, rounds=0)
