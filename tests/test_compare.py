"""The comparison recipe: a real quick comparison in a subprocess, its files read back, the
aggregation against a hand computation, and reruns that skip finished runs and survive a
failing one."""

from __future__ import annotations

import csv
import glob
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from invariance_recipes.compare.comparison import common_args, compare_command, parse_args, plan
from invariance_recipes.compare.experiments import (
    EXPERIMENTS,
    QUADRANTS,
    get_experiment,
    measure,
)
from invariance_recipes.compare.results import (
    TIMED,
    aggregate,
    header,
    markdown,
    read_rows,
    write_plots,
)
from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules.crop_shift import center_view
from invariance_recipes.lightning_modules.metrics.protocols import headline_key
from invariance_recipes.measure.outcomes import best_checkpoint, load_outcomes
from invariance_recipes.run.checkpoints import load_checkpoint
from invariance_recipes.run.cli import TrainCLI
from recipe_runs import is_share_of, recipe_env, run_recipe
from wandb_records import read_run

LABEL = "small-shift-digits-quick"
# matplotlib's first two default colours: the first two variants' series.
SERIES_COLORS = ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E))


def has_color(pixels: np.ndarray, color: tuple[int, int, int], tolerance: int = 12) -> bool:
    """Whether at least a few pixels of an RGB image are (nearly) ``color``."""
    close = (np.abs(pixels - np.array(color)) <= tolerance).all(axis=-1)
    return int(close.sum()) >= 10


FIRST = ["baseline", "global-pooling"]


def compare_args(out: Path, variants: list[str], logger: str) -> list[str]:
    """A --quick comparison, smaller still through a training option after '--'."""
    return [
        "--experiment", "small-shift", "--dataset", "digits", "--quick", "--seeds", "1",
        "--variants", *variants, "--logger", logger, "--out", str(out), "--", "--on_collapse", "warn", "--data.max_samples", "120",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def comparison(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    """Two variants, one seed, W&B offline."""
    out = tmp_path_factory.mktemp("compare") / "results"
    proc = run_recipe(
        "compare.py",
        *compare_args(out, FIRST, "wandb"),
        cwd=out.parent,
        env=recipe_env(),
        timeout=900,
    )
    return out, proc


@pytest.mark.slow
def test_quick_comparison_writes_csv_markdown_and_plots(comparison) -> None:
    out, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(out / "results.csv")
    assert [(r["variant"], r["seed"], r["setting"]) for r in rows] == [
        ("baseline", 0, "default"),
        ("global-pooling", 0, "default"),
    ]
    for row in rows:
        assert row["run"] == f"{LABEL}-{row['variant']}-seed0"
        seconds = json.loads((out / "runs" / row["run"] / "status.json").read_text())["seconds"]
        assert seconds["train"] > 0 and seconds["test"] > 0
        # its training and test as recorded, and the measurement after them
        assert row["wall_s"] > seconds["train"] + seconds["test"]
        assert row[TIMED] == 1.0
        for key in ("acc", "flip_rate", "consistency_zero@2", "consistency_circular@8"):
            assert is_share_of(row[key], 120), (key, row[key])  # of the 120 test images
        # measured on the checkpoint the training run tested: the shared numbers agree
        assert row["acc"] == pytest.approx(row["test/acc"], abs=1e-6)
        assert row["consistency_zero@4"] == pytest.approx(row["test/consistency_zero"], abs=1e-6)
        curve = [k for k in row if k.startswith("test/acc_at_shift/")]
        assert len(curve) == 17  # the diagonal from -8 to +8
    for i in (1, 2):
        assert f"[{i}/2] {LABEL}-" in proc.stdout
    assert "left" in proc.stdout

    config = yaml.safe_load((out / f"runs/{LABEL}-baseline-seed0/config.yaml").read_text())
    assert config["data"]["max_samples"] == 120  # after '--', it wins over --quick's 300
    assert config["trainer"]["max_steps"] == 6  # --quick's budget
    assert config["experiment"] == LABEL

    md = (out / "results.md").read_text()
    assert "--quick -- --on_collapse warn --data.max_samples 120`" in md
    table = md[md.index("| variant") :].split("\n\n")[0]  # the first table: the means
    lines = table.splitlines()
    # a 6-step smoke run need not train: the run rule leaves such runs out of every table and
    # lists each with its reason
    trained = [row for row in rows if row["trained"] == 1.0]
    assert len(lines) == 2 + len(trained)
    for row in rows:
        assert (row in trained) != (f"- {row['run']}: " in md), row["run"]
    assert lines[0].split(" | ")[:5] == ["| variant", "seeds", "images", "accuracy", "flip rate"]
    for row, line in zip(trained, lines[2:], strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["variant"]
        assert cells[3].split(" [")[0] == f"{100 * row['acc']:.1f}"
        assert cells[5].split(" [")[0] == f"{100 * row['consistency_zero@2']:.1f}"

    # every run's learning curve, the rules and the runs' code in results.md
    for row in rows:
        curve = (out / "runs" / row["run"] / "curve.csv").read_text().splitlines()
        assert curve[0] == "step,epoch,val_acc,train_loss" and len(curve) >= 2
        assert row["plateaued"] in (0.0, 1.0) and row["trained"] in (0.0, 1.0)
        assert row["trained"] == (row["untrained_reason"] == "")
        assert len(row["commit"]) == 40 and row["dirty"] in (0.0, 1.0)
    assert "## Convergence" in md and "Plateau rule:" in md and "Did-not-train rule" in md
    # the budget the runs got, in the setup line and the rules: --quick's, then the options
    # after '--'
    budget = "6 optimizer steps of 50 images for every arm, at most 120 images per split"
    assert f"Step budget: {budget}." in md
    assert f"{budget} (--quick). Command:" in md and "1600 optimizer steps" not in md
    assert "## Tuning" in md and "Not tuned" in md
    assert "- runs' code: " in md

    for name in ("accuracy_vs_offset.png", "accuracy_vs_consistency.png", "learning_curves.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            assert image.width >= 400 and image.height >= 300
            pixels = np.asarray(image.convert("RGB"), dtype=int)
        for color in SERIES_COLORS:  # one line or point series per variant
            assert has_color(pixels, color), (name, color)
    assert not (out / "accuracy_per_region.png").exists()  # only the placement experiment


@pytest.mark.slow
def test_runs_and_summary_share_one_wandb_group(comparison) -> None:
    out, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(out / "results.csv")
    for variant in FIRST:
        (path,) = glob.glob(
            str(out / f"runs/{LABEL}-{variant}-seed0/wandb/offline-run-*/run-*.wandb")
        )
        run = read_run(Path(path))
        assert run.run.run_group == LABEL
        assert run.run.job_type == "train"
        assert variant in run.run.tags
        row = next(r for r in rows if r["variant"] == variant)
        for key in ("acc", "consistency_zero@8", "consistency_circular@2"):
            assert run.summary[f"compare/{key}"] == pytest.approx(row[key])
    (path,) = glob.glob(str(out / "wandb/offline-run-*/run-*.wandb"))
    summary = read_run(Path(path))
    assert summary.run.run_group == LABEL
    assert summary.run.job_type == "summary"
    (logged,) = [row for row in summary.history if "results/_type" in row]
    assert logged["results/_type"] == "table-file"
    for plot in ("accuracy_vs_offset", "accuracy_vs_consistency"):
        assert logged[f"plots/{plot}/_type"] == "image-file"
    table = json.loads((Path(path).parent / "files" / logged["results/path"]).read_text())
    with open(out / "results.csv", newline="") as f:
        header, *rows = csv.reader(f)
    assert table["columns"] == header
    assert [[str(v) for v in row] for row in table["data"]] == rows


def test_aggregation_matches_hand_computation(tmp_path: Path) -> None:
    table = [
        ("a", 0, 0.90, 0.5), ("a", 1, 0.80, 0.7), ("a", 2, 0.85, ""),
        ("b", 0, 0.50, 0.25), ("b", 1, 0.70, 0.75),
        ("c", 0, 0.60, 0.1),
    ]  # fmt: skip
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["experiment", "variant", "setting", "seed", "run", "wall_s", "acc", "x"])
        for variant, seed, acc, x in table:
            writer.writerow(["e", variant, "default", seed, f"{variant}{seed}", 10 + seed, acc, x])
    rows = read_rows(path)
    got = {r["variant"]: r for r in aggregate(rows, ["acc", "x"])}
    assert list(got) == ["a", "b", "c"]
    for variant in "abc":
        for column, index in (("acc", 2), ("x", 3)):
            values = [t[index] for t in table if t[0] == variant and t[index] != ""]
            mean = sum(values) / len(values)
            assert got[variant][column] == pytest.approx(mean)
            if len(values) > 1:
                var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
                assert got[variant][f"{column}_std"] == pytest.approx(math.sqrt(var))
            else:
                assert math.isnan(got[variant][f"{column}_std"])
    assert got["a"]["n"] == 3
    report = markdown("e", "a test", "digits", "python recipes/compare.py", rows, ["acc", "x"])
    # no per-image outcomes: Student's t over the seeds' values, t(0.975, 2 df) = 4.3027 (tables)
    half = 4.302652729911275 * 0.05 / math.sqrt(3)
    assert (
        f"| a | 3 | n/a | 85.0 [{100 * (0.85 - half):.1f}, {100 * (0.85 + half):.1f}] |" in report
    )
    half = 12.706204736174698 * math.sqrt(0.02) / math.sqrt(2)  # two values: t(0.975, 1 df)
    assert f"| 60.0 [{100 * (0.6 - half):.1f}, {100 * (0.6 + half):.1f}] | 11 |" in report
    assert "| c | 1 | n/a | 60.0 | 10.0 | 10 |" in report  # one seed: no interval


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_survives_a_failing_run(comparison) -> None:
    out, first = comparison
    assert first.returncode == 0, first.stderr[-3000:]
    before = read_rows(out / "results.csv")
    ckpts = {p: Path(p).stat().st_mtime_ns for p in glob.glob(str(out / "runs/*/checkpoints/*"))}
    # an interrupted aps run whose checkpoint is corrupt: resuming it fails for real
    broken = out / f"runs/{LABEL}-aps-seed0/checkpoints/last.ckpt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")

    variants = ["aps", "fc-head", *FIRST]
    proc = run_recipe("compare.py", *compare_args(out, variants, "csv"), cwd=out.parent)
    assert proc.returncode == 1
    assert f"[1/4] {LABEL}-aps-seed0 failed: cannot read checkpoint" in proc.stderr
    assert "1 run(s) failed" in proc.stderr
    assert "Traceback" not in proc.stderr
    for i in (3, 4):
        assert f"[{i}/4] {LABEL}-{variants[i - 1]}-seed0: finished before, skipped" in proc.stdout

    rows = read_rows(out / "results.csv")
    assert [r["variant"] for r in rows] == ["baseline", "global-pooling", "fc-head"]
    assert rows[:2] == before
    assert {p: Path(p).stat().st_mtime_ns for p in ckpts} == ckpts  # not retrained
    assert not glob.glob(str(out / "runs/*-v2"))
    md = (out / "results.md").read_text()
    for v in ["baseline", "global-pooling", "fc-head"]:  # in the table, or left out with why
        assert (f"| {v} | 1 |" in md) != (f"- {LABEL}-{v}-seed0: " in md), v
    assert "| aps | 1 |" not in md and f"missing: {LABEL}-aps-seed0" in md  # failed: incomplete


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--experiment", "unseen-position", "--variants", "aug-heavy"],
            "--variants aug-heavy: not part of unseen-position",
        ),
        (["--experiment", "small-shift", "--variants", "nope"], "--variants nope: unknown"),
        (["--experiment", "small-shift", "--", "--run_name", "x"], "--run_name after '--'"),
        (
            ["--experiment", "small-shift", "--quick", "--dataset", "mnist"],
            "holds a comparison made with other options (dataset: 'digits' there vs 'mnist' now",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args, message, comparison, capsys) -> None:
    out, _ = comparison
    assert compare_command(["--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_unseen_position_measures_every_quadrant(comparison, monkeypatch) -> None:
    """Accuracy per quadrant against a plain loop over the test images placed there, from one
    load of the checkpoint for the whole measurement, every column the mean of its outcomes."""
    out, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / f"runs/{LABEL}-baseline-seed0"
    loads, real_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    row, outcomes = measure(get_experiment("unseen-position"), run_dir)
    monkeypatch.undo()
    assert loads == [best_checkpoint(run_dir)]  # one load: the clean pass and all four regions
    for column in (
        "acc",
        "flip_rate",
        "consistency_zero@4",
        "acc@unseen",
        *(f"acc@{q}" for q in QUADRANTS),
    ):
        assert row[column] == pytest.approx(outcomes[column].mean()), column
    model, hparams = load_checkpoint(best_checkpoint(run_dir))
    for quadrant in QUADRANTS:
        data = TranslationDataModule(**{**hparams, "test_placement": quadrant})
        data.setup("test")
        with torch.no_grad():
            hits = [
                (model(center_view(x, data.image_size)).argmax(1) == y).sum().item()
                for x, y in data.test_dataloader()
            ]
        assert row[f"acc@{quadrant}"] == pytest.approx(sum(hits) / len(data.datasets["test"]))
    unseen = [row[f"acc@{q}"] for q in ("top-right", "bottom-left", "bottom-right")]
    assert row["acc@unseen"] == pytest.approx(sum(unseen) / 3)
    assert row["unseen_drop"] == pytest.approx(row["acc@top-left"] - sum(unseen) / 3)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_trains_what_its_preset_says(name: str, tmp_path: Path) -> None:
    """Each setting's training options reach the DataModule, model and trainer."""
    args, extra = parse_args(["--experiment", name, "--logger", "none", "--out", str(tmp_path)])
    experiment = get_experiment(name)
    runs = plan(experiment, name, ["baseline"], 1, common_args(args, experiment, extra, tmp_path))
    assert [r.setting for r in runs] == list(experiment.settings())
    for run in runs:
        cli = TrainCLI(list(run.args))
        data, hp = cli.datamodule, cli.model.hparams
        assert data.hparams.dataset == experiment.dataset
        assert data.canvas_size == experiment.canvas
        assert data.image_size == (experiment.view_size or experiment.canvas)
        assert tuple(hp.protocols) == ()  # measured once after training, with outcomes
        assert data.placements["train"] == experiment.placement
        assert data.hparams.policy == (experiment.policy or "light")
        if experiment.train_shifts:
            assert f"shift{int(data.translation.max_shift)}" == run.setting
        assert cli.trainer.max_steps == experiment.steps  # the same budget for every arm
        assert data.hparams.batch_size == experiment.batch_size
        assert hp.curve_max_shift == experiment.curve_max_shift
        assert cli.run_dir == tmp_path / "runs" / run.name


def test_presets_scale_with_the_object_size() -> None:
    digits, cifar = (
        get_experiment("augmentation-sweep"),
        get_experiment("augmentation-sweep", "cifar10"),
    )
    assert digits.canvas == 48 and cifar.canvas == 96  # 16-px digits vs 32-px CIFAR images
    assert cifar.train_shifts == tuple(2 * s for s in digits.train_shifts)
    assert cifar.max_shifts == tuple(2 * s for s in digits.max_shifts)
    assert cifar.curve_max_shift == 2 * digits.curve_max_shift
    assert get_experiment("unseen-position", "mnist").canvas == 84  # 28-px images: 48 * 28 / 16


def test_region_plot_and_seed_bands_are_drawn(tmp_path: Path) -> None:
    rows = [
        {"variant": v, "setting": "default", "seed": seed, "acc": acc,
         "consistency_zero@4": 0.5 + seed / 10,
         **{f"acc@{q}": acc / (1 + i) for i, q in enumerate(QUADRANTS)},
         **{f"test/acc_at_shift/{d:+d}_{d:+d}": acc - abs(d) / 10 for d in range(-2, 3)}}
        for v, acc in (("baseline", 0.9), ("global-pooling", 0.8))
        for seed in (0, 1)
    ]  # fmt: skip
    pngs = write_plots(tmp_path, rows, ("consistency_zero@4", "acc"), QUADRANTS, "top-left")
    assert [p.name for p in pngs] == [
        "accuracy_vs_offset.png", "accuracy_vs_consistency.png", "accuracy_per_region.png"
    ]  # fmt: skip
    for path in pngs:
        with Image.open(path) as image:
            assert image.width >= 400 and image.height >= 300
            pixels = np.asarray(image.convert("RGB"), dtype=int)
        for color in SERIES_COLORS:  # baseline and global-pooling each drawn
            assert has_color(pixels, color), (path.name, color)


@pytest.mark.slow
def test_outcomes_pair_up_and_reproduce_the_table(comparison) -> None:
    """Per-image outcomes average to the measured shares; the report pairs and cites them."""
    out, proc = comparison
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(out / "results.csv")
    experiment = get_experiment("small-shift")
    fingerprints = set()
    for row in rows:
        outcomes = load_outcomes(out / row["outcomes"])
        assert row["outcomes"] == f"runs/{row['run']}/outcomes.npz"
        assert np.array_equal(outcomes["index"], np.arange(len(outcomes["label"])))
        protocols = experiment.protocol_columns()
        for column in [c for c in experiment.columns() if c not in protocols]:
            assert outcomes[column].dtype == bool
            assert outcomes[column].mean() == pytest.approx(row[column], abs=1e-6), column
        # every protocol keeps the outcomes of its own numbers (a consistency among the correct
        # images is a subset of them): over images and passes, their mean is the number
        headlines = [f"test/{headline_key(name)}" for name in experiment.protocols]
        assert set(headlines) <= set(outcomes)
        for column in [c for c in protocols if c in outcomes]:
            assert len(outcomes[column]) == len(outcomes["label"]), column
            assert outcomes[column].mean() == pytest.approx(row[column], abs=1e-6), column
        fingerprints.add(str(outcomes["images_sha256"]))
    assert len(fingerprints) == 1  # both variants saw the same test images
    md = (out / "results.md").read_text()
    trained = {row["run"] for row in rows if row["trained"] == 1.0}
    if {f"{LABEL}-{v}-seed0" for v in FIRST} <= trained:
        assert "Paired comparison with baseline" in md and "crossed random-effects" in md
        assert next(line for line in md.splitlines() if line.startswith("| global-pooling | "))
        assert "## Each run" in md and f"| {LABEL}-baseline-seed0 | " in md
    for name in {row["run"] for row in rows} - trained:  # a smoke run need not train
        assert f"- {name}: " in md.split("Left out of every table", 1)[1]
    provenance = md[md.index("## Provenance") :]
    # the exact command of the latest invocation that wrote it (another test reruns the
    # comparison with more variants), which must name this experiment and this folder
    (command,) = [line for line in provenance.splitlines() if line.startswith("- command: ")]
    assert command.startswith("- command: `python recipes/compare.py --experiment small-shift")
    assert f"--out {out} " in command and command.endswith(
        "-- --on_collapse warn --data.max_samples 120`"
    )
    for field in ("commit", "packages", "machine", "date", "wall time"):
        assert f"- {field}: " in provenance


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "variants"),
    [("unseen-position", ["baseline", "global-pooling"]), ("augmentation-sweep", ["baseline"])],
)
def test_quick_mode_produces_every_column(name: str, variants: list[str], tmp_path: Path) -> None:
    """The smallest run of the other experiments still fills every column of the table, and
    succeeds though its runs are too short to learn (``--quick`` warns on a collapse)."""
    out = tmp_path / "results"
    argv = [
        "--experiment", name, "--quick", "--variants", *variants, "--logger", "none",
        "--out", str(out), "--", "--data.max_samples", "40", "--trainer.max_epochs", "1",
    ]  # fmt: skip
    assert compare_command(argv) == 0
    experiment = get_experiment(name)
    rows = read_rows(out / "results.csv")
    assert len(rows) == len(variants) * len(experiment.settings())
    for row in rows:
        row |= experiment.derived(row)  # the sweep's range accuracies, read from the curve
        for column in experiment.columns():
            assert isinstance(row[column], float), (row["run"], column)
    table = next(
        line for line in (out / "results.md").read_text().splitlines() if "| variant" in line
    )
    assert table.split(" | ")[-1] == "time (s) |"
    for column in experiment.columns():
        assert f" {header(column)} |" in table
    outcomes = load_outcomes(out / rows[0]["outcomes"])
    derived = {"unseen_drop", "acc_in_range", "acc_beyond_range"}  # differences, curve readings
    proportions = [c for c in experiment.columns() if c not in derived]
    assert set(proportions) <= set(outcomes)
