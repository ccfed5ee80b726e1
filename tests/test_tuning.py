"""Tuning on validation only, and the runs' code: the grid and the choice by hand, a real
``--tune`` whose choice the comparison's runs then train with, and a merge that refuses runs
from mixed or uncommitted code unless told otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from invariance_recipes.compare.adoption import (
    ADOPTED_JSON,
    adopt,
    options_of,
    without_bookkeeping,
)
from invariance_recipes.compare.comparison import (
    STARTING_DIR,
    common_args,
    compare_command,
    parse_args,
    plan,
    train_or_reuse,
)
from invariance_recipes.compare.experiments import EXPERIMENTS, get_experiment
from invariance_recipes.compare.provenance import (
    STARTED_JSON,
    code_markdown,
    mixed_code,
    record_start,
)
from invariance_recipes.compare.results import write_rows
from invariance_recipes.compare.sharding import Shard, write_manifest
from invariance_recipes.compare.tuning import (
    TUNING_JSON,
    choose,
    grid_points,
    trials,
    tuned_args,
    tuning_document,
    tuning_markdown,
)
from invariance_recipes.lightning_modules.callbacks import CURVE_CSV, TESTED, read_curve
from invariance_recipes.measure.outcomes import OUTCOMES_NPZ, load_outcomes
from recipe_runs import read_test_metrics


def test_every_experiment_tunes_the_same_learning_rates_and_no_batch_size() -> None:
    for experiment in EXPERIMENTS.values():
        assert set(experiment.tuning_grid) == {"lr"}
        assert {1e-3, 3e-3, 1e-2} <= set(experiment.tuning_grid["lr"])
    # the grid is every combination, in order
    assert grid_points({"lr": (1, 2), "weight_decay": (0, 5)}) == [
        {"lr": 1, "weight_decay": 0}, {"lr": 1, "weight_decay": 5},
        {"lr": 2, "weight_decay": 0}, {"lr": 2, "weight_decay": 5},
    ]  # fmt: skip


def test_the_choice_is_the_best_validation_accuracy_and_reaches_the_runs() -> None:
    grid = {"lr": (0.001, 0.003, 0.01)}
    found = trials("x", grid, [("baseline", "default"), ("baseline", "shift4")])
    assert [t.name for t in found[:3]] == [
        "x-tune-baseline-lr0.001",
        "x-tune-baseline-lr0.003",
        "x-tune-baseline-lr0.01",
    ]
    assert found[3].arm == "baseline/shift4" and found[3].name == "x-tune-baseline-shift4-lr0.001"

    def records_of(scores: dict[float, float], rising: float) -> list[dict]:
        return [
            {"values": {"lr": lr}, "best_val_acc": acc, "plateaued": lr != rising}
            for lr, acc in scores.items()
        ]

    # a tie goes to the plateaued curve, then to the first in grid order
    assert choose(records_of({0.001: 0.80, 0.003: 0.91, 0.01: 0.91}, 0.003)) == {"lr": 0.01}
    assert choose(records_of({0.001: 0.91, 0.003: 0.91, 0.01: 0.80}, 0.01)) == {"lr": 0.001}
    assert choose(records_of({0.001: 0.91, 0.003: 0.91, 0.01: 0.91}, 0.001)) == {"lr": 0.003}
    records = records_of({0.001: 0.80, 0.003: 0.91, 0.01: 0.90}, 0.003)
    assert choose(records) == {"lr": 0.003}  # the best wins even when it has not plateaued
    assert choose([{"values": {"lr": 0.1}, "best_val_acc": None}]) is None
    document = json.loads(json.dumps(tuning_document(grid, 600, {"baseline": records}, 3)))
    assert document["complete"] and document["finished"] == 3
    assert tuned_args(document, "baseline", "default") == ["--model.lr", "0.003"]
    assert tuned_args(document, "blurpool", "default") == []  # not tuned: defaults
    assert tuned_args(None, "baseline", "default") == []
    table = "\n".join(tuning_markdown(document, [("baseline", "default"), ("aps", "default")]))
    assert (
        "| baseline | 80.0 | **91.0** | 90.0 | lr 0.003 (not plateaued in 600 steps: raise the "
        "budget) |" in table
    )
    assert "| aps | n/a | n/a | n/a | not tuned |" in table
    assert "600 steps" in table

    args, _ = parse_args(["--experiment", "small-shift", "--logger", "none"])
    experiment = get_experiment("small-shift")
    common = common_args(args, experiment, ["--model.lr", "0.5"], Path("out"))
    runs = plan(experiment, "x", ["baseline", "blurpool"], 1, common, document)
    base, blur = runs
    assert base.args[:2] == ("--model.lr", "0.003")
    assert "--model.lr" not in blur.args[:2]
    # an option after '--' still wins: it comes later
    assert base.args.index("0.5") > base.args.index("0.003")


def test_runs_code_is_recorded_once_and_mixed_code_is_named(tmp_path: Path) -> None:
    first = {"commit": "a" * 40, "dirty": False}
    assert record_start(tmp_path, first) == first
    # a resume at another commit keeps the commit the run started from
    assert record_start(tmp_path, {"commit": "b" * 40, "dirty": True}) == first
    assert json.loads((tmp_path / STARTED_JSON).read_text()) == first

    clean = [{"run": f"r{i}", "commit": "a" * 40, "dirty": 0.0} for i in range(3)]
    assert mixed_code(clean) is None
    assert code_markdown(clean, False) == f"all 3 runs started from commit {'a' * 40}, clean"
    mixed = [*clean, {"run": "r3", "commit": "b" * 40, "dirty": 1.0}]
    assert mixed_code(mixed) == (
        "runs from 2 commits (aaaaaaaaaaaa, bbbbbbbbbbbb); 1 run(s) from a dirty tree or "
        "unknown code (r3, ...)"
    )
    assert code_markdown(mixed, True).startswith("NOT ONE CLEAN COMMIT (merged with --allow-")


def test_merge_refuses_runs_from_mixed_code_unless_allowed(tmp_path: Path, capsys) -> None:
    """A finished shard whose runs started from two commits, one dirty."""
    out = tmp_path / "out"
    argv = [
        "--experiment",
        "unseen-position",
        "--quick",
        "--variants",
        "baseline",
        "--seeds",
        "2",
        "--logger",
        "none",
        "--out",
        str(out),
    ]
    args, _ = parse_args(argv)
    experiment = get_experiment(args.experiment, args.dataset)
    runs = plan(experiment, "unseen-position-quick", ["baseline"], 2, [])
    options = {
        "experiment": args.experiment,
        "dataset": args.dataset,
        "backbone": args.backbone,
        "quick": True,
        "training_options": [],
        "protocols": None,
    }
    rows = [
        {"experiment": experiment.name, "variant": "baseline", "setting": "default",
         "seed": seed, "run": run.name, "wall_s": 1.0, "commit": commit, "dirty": dirty,
         "consistency_zero@4": 0.5, "acc": 0.9, "acc@unseen": 0.3, "unseen_drop": 0.6,
         **{f"acc@{q}": 0.5 for q in experiment.regions}}
        for (seed, run), commit, dirty in zip(enumerate(runs), ("a" * 40, "b" * 40), (0.0, 1.0), strict=True)
    ]  # fmt: skip
    shard = Shard(0, 1)
    (out / "shards").mkdir(parents=True)
    write_rows(shard.csv(out), rows)
    write_manifest(out, shard, options, [run.name for run in runs])
    assert compare_command([*argv, "--merge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --merge: the runs do not come from one clean commit (runs from")
    assert "--allow-mixed-code" in err and err.count("\n") == 1
    assert compare_command([*argv, "--merge", "--allow-mixed-code"]) == 0
    md = (out / "results.md").read_text()
    assert "- runs' code: NOT ONE CLEAN COMMIT (merged with --allow-mixed-code): runs from 2" in md


@pytest.mark.slow
def test_tune_selects_on_validation_and_the_comparison_trains_with_the_choice(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "results"
    argv = [
        "--experiment",
        "small-shift",
        "--dataset",
        "digits",
        "--quick",
        "--variants",
        "baseline",
        "--logger",
        "none",
        "--out",
        str(out),
        "--",
        "--data.max_samples",
        "60",
    ]
    assert compare_command([*argv[:-3], "--tune", *argv[-3:]]) == 0
    tuning = json.loads((out / TUNING_JSON).read_text())
    assert tuning["grid"] == {"lr": [0.001, 0.003, 0.01]} and tuning["seed"] == 0
    assert tuning["complete"] and tuning["trials"] == 3
    (arm,) = tuning["arms"].values()
    best = {}
    for record in arm["trials"]:
        run_dir = out / "tuning" / "runs" / record["run"]
        curve = read_curve(run_dir / CURVE_CSV)
        assert record["best_val_acc"] == max(r["val_acc"] for r in curve)  # validation only
        assert not (run_dir / TESTED).exists()  # the tuning runs never test
        best[record["values"]["lr"]] = record["best_val_acc"]
    assert arm["choice"] == {"lr": max(best, key=lambda lr: (best[lr], -lr))}
    assert [r["values"]["lr"] for r in arm["trials"]] == [0.001, 0.003, 0.01]

    kept = tmp_path / "kept"  # the same tuning with its checkpoints, for the adoption below
    shutil.copytree(out, kept)

    # published, the tuning keeps its records but not its weights; continued from a clone, it
    # reuses every finished trial instead of training it again
    runs = out / "tuning" / "runs"
    folders = sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
    for run_dir in runs.iterdir():
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    before = (out / TUNING_JSON).read_text()
    assert compare_command([*argv[:-3], "--tune", *argv[-3:]]) == 0
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == folders
    assert (out / TUNING_JSON).read_text() == before

    assert compare_command(argv) == 0
    run_dir = out / "runs" / "small-shift-digits-quick-baseline-seed0"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["lr"] == arm["choice"]["lr"]
    md = (out / "results.md").read_text()
    assert f"| lr {arm['choice']['lr']:g} |" in md
    # tuning after runs exist would mix untuned runs with tuned ones
    assert compare_command([*argv[:-3], "--tune", *argv[-3:]]) == 2

    # With the trial's checkpoints at hand, the seed-0 run adopts the chosen trial's training
    # instead of training it again, and ends exactly as the run trained above.
    at = argv.index("--out") + 1
    assert compare_command([*argv[:at], str(kept), *argv[at + 1 :]]) == 0
    adopted = kept / "runs" / run_dir.name
    trial = (
        kept
        / "tuning"
        / "runs"
        / next(r["run"] for r in arm["trials"] if r["values"] == arm["choice"])
    )
    assert f"trained already as {trial} (same options and seed)" in capsys.readouterr().out
    assert json.loads((adopted / ADOPTED_JSON).read_text()) == {"from": str(trial)}
    assert (adopted / CURVE_CSV).read_text() == (trial / CURVE_CSV).read_text()
    assert (adopted / STARTED_JSON).read_text() == (trial / STARTED_JSON).read_text()
    assert yaml.safe_load((adopted / "config.yaml").read_text())["run_name"] == run_dir.name
    tested = json.loads((adopted / TESTED).read_text())["checkpoint"]
    assert (adopted / tested).is_file() and not tested.startswith("/")  # its own copy
    assert not (trial / TESTED).exists()  # the trial stays an untested tuning run
    for checkpoint in (adopted / "checkpoints").glob("*.ckpt"):  # none points at the trial's
        states = torch.load(checkpoint, weights_only=True)["callbacks"].values()
        folders = {state["dirpath"] for state in states if "dirpath" in state}
        assert folders == {str((adopted / "checkpoints").resolve())}, checkpoint.name
    assert read_test_metrics(adopted) == read_test_metrics(run_dir)
    ours, theirs = (load_outcomes(d / OUTCOMES_NPZ) for d in (adopted, run_dir))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert np.array_equal(ours[key], theirs[key]), key

    # Another comparison with --reuse-runs adopts the tuning runs from there, and its seed-0
    # run then adopts its own chosen trial: nothing is trained, the numbers are the same.
    third = tmp_path / "third"
    reuse = ["--reuse-runs", str(kept)]
    tune_third = [*argv[:at], str(third), *argv[at + 1 : -3], "--tune", *reuse, *argv[-3:]]
    assert compare_command(tune_third) == 0
    assert capsys.readouterr().out.count("(same options and seed); testing it") == 3
    assert json.loads((third / TUNING_JSON).read_text())["arms"] == tuning["arms"]
    # the chosen trial may adopt kept's tested seed-0 run: nothing of that run's test comes along
    trials_there = third / "tuning" / "runs"
    assert not [*trials_there.glob(f"*/{OUTCOMES_NPZ}"), *trials_there.glob("*/shift_*")]
    assert compare_command([*argv[:at], str(third), *argv[at + 1 :]]) == 0
    assert "(same options and seed); testing it" in capsys.readouterr().out
    assert read_test_metrics(third / "runs" / run_dir.name) == read_test_metrics(run_dir)


@pytest.mark.slow
def test_tunings_of_different_variants_add_up_to_one_file(tmp_path: Path) -> None:
    """Two processes tuning different --variants into one folder (the slow arms first, say)
    leave one tuning.json with both arms, complete when both are, in the registry's order."""
    out = tmp_path / "results"
    argv = ["--experiment", "small-shift", "--dataset", "digits", "--quick", "--logger", "none"]
    argv += ["--out", str(out), "--tune"]
    small = ["--", "--data.max_samples", "60"]
    assert compare_command([*argv, "--variants", "global-pooling", *small]) == 0
    first = json.loads((out / TUNING_JSON).read_text())
    assert list(first["arms"]) == ["global-pooling"] and first["complete"]
    assert compare_command([*argv, "--variants", "baseline", *small]) == 0
    both = json.loads((out / TUNING_JSON).read_text())
    assert list(both["arms"]) == ["baseline", "global-pooling"]
    assert both["complete"] and both["trials"] == both["finished"] == 6
    assert both["arms"]["global-pooling"] == first["arms"]["global-pooling"]


def test_an_unfinished_tuning_stops_the_comparison(tmp_path: Path, capsys) -> None:
    """One shard of --tune has finished, the other not: no run may train with half the choices."""
    out = tmp_path / "out"
    argv = [
        "--experiment",
        "small-shift",
        "--dataset",
        "digits",
        "--quick",
        "--logger",
        "none",
        "--out",
        str(out),
    ]
    out.mkdir()
    partial = tuning_document({"lr": (0.001, 0.003)}, 6, {"baseline": []}, 2)
    (out / TUNING_JSON).write_text(json.dumps(partial))
    assert compare_command(argv) == 2
    err = capsys.readouterr().err
    assert "0 of 2 tuning runs have finished; finish --tune (every shard)" in err
    assert not (out / "runs").exists()


@pytest.mark.slow
def test_the_tuned_arms_may_be_compared_while_other_arms_still_tune(tmp_path: Path, capsys) -> None:
    """Arms are tuned independently: an arm's comparison runs start once its own grid is done
    (with its choice), an arm still tuning is refused by name, and tuning another arm is not
    blocked by the runs of a tuned one, while tuning an arm that has runs is."""
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--experiment", "small-shift", "--dataset", "digits", "--quick", "--logger", "none"]
    argv += ["--out", str(out)]
    small = ["--", "--data.max_samples", "60", "--on_collapse", "warn"]  # 6 steps learn little

    def record(lr: float, acc: float) -> dict:
        return {"values": {"lr": lr}, "run": f"r{lr}", "best_val_acc": acc, "plateaued": True}

    tuned = [record(0.001, 0.5), record(0.003, 0.7)]  # global-pooling done, baseline not
    document = tuning_document({"lr": (0.001, 0.003)}, 6, {"global-pooling": tuned}, 4)
    (out / TUNING_JSON).write_text(json.dumps(document))

    assert compare_command([*argv, "--variants", "global-pooling", "baseline", *small]) == 2
    err = capsys.readouterr().err
    assert "finish --tune (every shard) for baseline before their comparison runs" in err
    assert not (out / "runs").exists()

    assert compare_command([*argv, "--variants", "global-pooling", *small]) == 0
    run_dir = out / "runs" / "small-shift-digits-quick-global-pooling-seed0"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["lr"] == 0.003

    assert compare_command([*argv, "--tune", "--variants", "global-pooling", *small]) == 2
    assert "1 comparison run(s) of global-pooling, trained before" in capsys.readouterr().err
    tune_baseline = [*argv, "--tune", "--variants", "baseline"]
    assert compare_command([*tune_baseline, "--shard", "1/2", *small]) == 0  # one trial of two
    assert len(json.loads((out / TUNING_JSON).read_text())["arms"]["baseline"]["trials"]) == 1


@pytest.mark.slow
def test_a_resumed_run_keeps_the_commit_it_started_from(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    args = (
        "--data.dataset",
        "digits",
        "--data.max_samples",
        "40",
        "--data.batch_size",
        "20",
        "--trainer.max_steps",
        "2",
        "--logger",
        "none",
        "--model.protocols",
        "[]",
        "--runs_dir",
        str(runs_dir),
        "--run_name",
        "r",
        "--on_collapse",
        "warn",  # two steps need not learn: this test is about the recorded commit
    )
    run_dir, _ = train_or_reuse(args, "r", runs_dir)
    started = json.loads((run_dir / STARTED_JSON).read_text())
    assert started == json.loads((runs_dir / STARTING_DIR / "r.json").read_text())
    # as if it had crashed after its first epoch, started at another commit
    (run_dir / STARTED_JSON).unlink()
    (run_dir / "test_metrics.json").unlink()
    first = {"commit": "c" * 40, "dirty": False}
    (runs_dir / STARTING_DIR / "r.json").write_text(json.dumps(first))
    resumed, _ = train_or_reuse((*args, "--trainer.max_steps", "4"), "r", runs_dir)
    assert resumed == run_dir  # resumed, not started again
    assert json.loads((run_dir / STARTED_JSON).read_text()) == first


def test_git_keeps_the_records_of_published_runs_and_not_their_weights() -> None:
    """What a fresh clone gets of docs/results: each run's outcomes and curve, each tuning
    run's options, curve, code and end-of-training mark (so ``--tune`` reuses it), and no
    checkpoint."""
    root = Path(__file__).resolve().parents[1]
    run, trial = "docs/results/e/runs/r/", "docs/results/e/tuning/runs/t/"
    kept = [
        run + "outcomes.npz",
        run + "curve.csv",
        trial + "config.yaml",
        trial + "curve.csv",
        trial + "started.json",
        trial + "test_metrics.json",
        "docs/results/e/tuning.json",
    ]
    dropped = [run + "checkpoints/last.ckpt", run + "test_metrics.json"]
    dropped += [trial + "checkpoints/last.ckpt", trial + "csv/version_0/metrics.csv"]
    found = subprocess.run(
        ["git", "check-ignore", "--no-index", *kept, *dropped],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.stdout.split() == dropped


@pytest.mark.parametrize(
    "changed", [["--model.lr", "0.01"], ["--trainer.max_steps", "7"], ["--variant", "blurpool"]]
)
def test_a_run_adopts_no_trial_that_trained_other_options(tmp_path: Path, changed) -> None:
    """The trial's saved options, bookkeeping aside, must equal the run's: a comparison
    continued with another option (after ``--``) trains its seed-0 run itself."""
    common = ["--variant", "baseline", "--model.lr", "0.003", "--trainer.max_steps", "6"]
    trial_dir = tmp_path / "tuning" / "trial"
    (trial_dir / "checkpoints").mkdir(parents=True)
    (trial_dir / "checkpoints" / "last.ckpt").write_bytes(b"never read")
    (trial_dir / "test_metrics.json").write_text("{}")  # training finished
    trained = [*common, "--trainer.limit_test_batches", "0", "--run_name", "trial"]
    (trial_dir / "config.yaml").write_text(yaml.safe_dump(options_of(trained)))
    runs_dir = tmp_path / "runs"
    run = [*common, "--runs_dir", str(runs_dir), "--run_name", "seed0"]
    assert without_bookkeeping(options_of(run)) == without_bookkeeping(options_of(trained))
    assert adopt([*run, *changed], "seed0", [trial_dir], runs_dir) is None
    assert not runs_dir.exists()


def test_reuse_runs_names_a_missing_folder(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "elsewhere"
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--experiment", "receptive-field", "--reuse-runs", str(missing)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith(f"error: --reuse-runs {missing}: no such folder; pass a comparison's --out")
