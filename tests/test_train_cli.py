"""The training recipe end to end, through its real command line in subprocesses."""

from __future__ import annotations

import glob
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from invariance_recipes.lightning_modules.variants import VARIANTS
from recipe_runs import (
    QUICK,
    QUICK_IMAGES,
    ROOT,
    is_share_of,
    read_test_metrics,
    recipe_env,
    run_recipe,
    run_recipes,
)
from wandb_records import read_run

# every test here starts recipe processes: the full suite runs them, not the inner loop
pytestmark = pytest.mark.slow

SHARES = ("test/acc", "test/consistency_zero", "test/consistency_circular", "test/flip_rate")
SCALARS = (*SHARES, "test/mac")


@pytest.fixture(scope="module")
def variant_runs(workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every variant, one quick epoch each; blurpool logs to W&B, which must go offline
    by itself (no credentials in a fresh HOME, no WANDB_MODE)."""
    runs = {}
    for name in VARIANTS:
        if name == "blurpool":
            env = recipe_env(WANDB_MODE="", HOME=str(workdir), NETRC=str(workdir / "none"))
            args = ["--logger", "wandb", "--experiment", "cli-test"]
        else:
            env, args = recipe_env(), ["--logger", "csv"]
        runs[name] = ("train.py", ["--variant", name, *QUICK, *args], env)
    return run_recipes(runs, cwd=workdir)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_end_to_end(variant: str, variant_runs, workdir: Path) -> None:
    proc = variant_runs[variant]
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = workdir / "runs" / f"{variant}-seed0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert glob.glob(str(run_dir / "checkpoints" / "best-epoch=*.ckpt"))
    assert (run_dir / "config.yaml").is_file()
    metrics = read_test_metrics(run_dir)
    for key in SHARES:
        assert is_share_of(metrics[key], QUICK_IMAGES), (key, metrics[key])
    assert 0.0 <= metrics["test/mac"] <= 1.0  # a mean change of probabilities
    assert any(k.startswith("test/acc_at_shift/") for k in metrics)
    for key in ("test/acc", "test/consistency_zero"):  # the final table
        assert key in proc.stdout
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    preset = VARIANTS[variant]
    for key, value in preset.model.items():
        assert ckpt["hyper_parameters"][key] == value
    given = dict(zip(QUICK[::2], QUICK[1::2], strict=True))  # the command line wins over presets
    for key, value in preset.data.items():
        expected = type(value)(given[f"--data.{key}"]) if f"--data.{key}" in given else value
        assert ckpt["datamodule_hyper_parameters"][key] == expected
    assert (run_dir / "shift_curve.png").stat().st_size > 1000
    assert (run_dir / "shift_examples.png").stat().st_size > 1000


def test_wandb_offline_run_reads_back(variant_runs, workdir: Path) -> None:
    proc = variant_runs["blurpool"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wandb sync" in proc.stdout + proc.stderr
    for noise in ("litlogger", "anonymous setting", "LeafSpec"):
        assert noise not in proc.stdout + proc.stderr
    files = glob.glob(str(workdir / "runs/blurpool-seed0/wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    run = read_run(Path(files[0]))
    assert run.run.display_name == "blurpool-seed0"
    assert run.run.run_group == "cli-test"
    assert {"blurpool", "digits", "small-cnn"} <= set(run.run.tags)
    assert run.config["variant"] == "blurpool"
    assert run.config["model"]["downsample"] == "blur"
    assert run.config["data"]["dataset"] == "digits"
    logged = {k for row in run.history for k in row}
    assert {"val/acc", "val/consistency", "train/loss_epoch", *SCALARS} <= logged
    (media,) = [row for row in run.history if "test/shift_examples/_type" in row]
    assert media["test/shift_examples/_type"] == "image-file"
    assert media["test/acc_vs_shift_table/_type"] == "table-file"
    assert media["test/acc_vs_shift_table/nrows"] == 7  # the diagonal sweep -3 .. 3
    metrics = read_test_metrics(workdir / "runs/blurpool-seed0")
    for key in ("test/acc", "test/consistency_zero"):  # W&B holds what the run printed
        assert run.summary[key] == pytest.approx(metrics[key])
    best_val = max(row["val/acc"] for row in run.history if "val/acc" in row)
    assert run.summary["val/acc"]["max"] == pytest.approx(best_val)  # define_metric summary


def test_ddp_two_processes_match_single_process_evaluation(workdir: Path) -> None:
    proc = run_recipe(
        "train.py",
        *QUICK,
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--logger",
        "csv",
        "--run_name",
        "ddp",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = workdir / "runs" / "ddp"
    ddp = read_test_metrics(run_dir)
    (best,) = glob.glob(str(run_dir / "checkpoints" / "best-epoch=*.ckpt"))
    proc = run_recipe(
        "evaluate.py",
        "--ckpt",
        best,
        "--on_collapse",
        "warn",
        "--max_shifts",
        "4",
        "--logger",
        "none",
        "--modes",
        "zero",
        "circular",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    single = json.loads((run_dir / "evaluation" / "report.json").read_text())
    assert ddp["test/acc"] == pytest.approx(single["acc"], abs=1e-6)
    assert ddp["test/flip_rate"] == pytest.approx(single["flip_rate"], abs=1e-6)
    assert ddp["test/mac"] == pytest.approx(single["mac"], abs=1e-5)
    for mode in ("zero", "circular"):
        assert ddp[f"test/consistency_{mode}"] == pytest.approx(
            single["consistency"]["4"][mode], abs=1e-6
        )


def _stopped_once_training(workdir: Path, args: list[str], sig: signal.Signals) -> int:
    """Start ``train.py args``, send ``sig`` as soon as training starts; its exit code."""
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "recipes/train.py"), *args],
        cwd=workdir,
        env=recipe_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert run.stdout is not None
    for line in run.stdout:
        if "press Ctrl-C" in line:
            run.send_signal(sig)
            break
    run.stdout.read()
    return run.wait(timeout=120)


def test_resume_after_ctrl_c_matches_uninterrupted_run(workdir: Path) -> None:
    args = [*QUICK, "--max_epochs", "3", "--logger", "csv"]
    full = run_recipe("train.py", *args, "--run_name", "full", cwd=workdir)
    assert full.returncode == 0, full.stderr[-3000:]

    assert _stopped_once_training(workdir, [*args, "--run_name", "cut"], signal.SIGINT) == 130
    last = torch.load(workdir / "runs/cut/checkpoints/last.ckpt", weights_only=False)
    assert last["epoch"] < 2  # it stopped early, at an epoch boundary
    assert not (workdir / "runs/cut/test_metrics.json").exists()

    resumed = run_recipe("train.py", *args, "--run_name", "cut", "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = (
        read_test_metrics(workdir / "runs/full"),
        read_test_metrics(workdir / "runs/cut"),
    )
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_mid_epoch_sigterm_with_workers_resumes_bit_for_bit(workdir: Path) -> None:
    """Stopped by SIGTERM in the middle of an epoch with two loader workers, the resumed run
    ends with the weights and metrics of the uninterrupted run without workers (the ``full``
    run of the test above): neither the stop nor the workers change one draw."""
    args = [*QUICK, "--max_epochs", "3", "--logger", "csv"]
    workers = [*args, "--data.num_workers", "2", "--run_name", "cut-workers"]
    # SIGTERM stops after the batch it is on
    assert _stopped_once_training(workdir, workers, signal.SIGTERM) == 143
    checkpoints = workdir / "runs/cut-workers/checkpoints"
    assert (checkpoints / "interrupted.ckpt").is_file()
    resumed = run_recipe("train.py", *workers, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ": exact" in resumed.stdout
    full = workdir / "runs/full"
    assert read_test_metrics(workdir / "runs/cut-workers") == read_test_metrics(full)
    final = [
        torch.load(folder / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        for folder in (full, checkpoints.parent)
    ]
    assert final[0].keys() == final[1].keys()
    for key, value in final[0].items():
        assert torch.equal(final[1][key], value), key


def test_mid_epoch_resume_is_exact_where_training_draws_from_torchs_rng(workdir: Path) -> None:
    """LPS draws Gumbel noise from torch's global RNG in every training step (as dropout
    does). Lightning skips ``on_train_epoch_start`` when it restarts mid-epoch, so a run
    stopped by SIGTERM mid-epoch must restore its RNG states elsewhere to end with the
    uninterrupted run's weights (it ended with other weights when it restored them there)."""
    variant = "lps-circular"
    args = [*QUICK, "--max_epochs", "3", "--logger", "none", "--variant", variant]
    full = run_recipe("train.py", *args, "--run_name", f"{variant}-full", cwd=workdir)
    assert full.returncode == 0, full.stderr[-3000:]
    cut = [*args, "--run_name", f"{variant}-cut"]
    assert _stopped_once_training(workdir, cut, signal.SIGTERM) == 143
    resumed = run_recipe("train.py", *cut, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(mid-epoch, step 1): exact" in resumed.stdout
    final = [
        torch.load(workdir / f"runs/{variant}-{name}/checkpoints/last.ckpt", weights_only=True)
        for name in ("full", "cut")
    ]
    assert final[0]["global_step"] == final[1]["global_step"] == 6
    weights = [f["state_dict"] for f in final]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():
        assert torch.equal(weights[1][key], value), key


BAD_INPUT = [
    (["--variant", "nope"], "--variant: invalid choice: 'nope'"),
    (["--config", "nope.yaml"], "key \"variant\": 'nope' not among choices"),
    (["--model.nonsense", "1"], "nonsense"),
    (["--resume", "--run_name", "never-ran"], "no run named 'never-ran'"),
    (["--ckpt_path", "missing.ckpt"], "no checkpoint file at missing.ckpt"),
    (["--ckpt_path", "corrupt.ckpt"], "cannot read checkpoint corrupt.ckpt: the file is damaged"),
    (["--variant", "baseline", "--ckpt_path", "aps.ckpt"], "downsample: checkpoint 'aps' vs this run 'max'"),
    (["--accelerator", "gpu", "--devices", "4"], "error: trainer options"),
    (["--accelerator", "cpu", "--devices", "512"], "--devices 512: this machine has"),
    (["--data.max_shift", "-3"], "max_shift"),
    (["--config", "broken.yaml"], "--config broken.yaml: not valid YAML at line 2"),
    (["--config", "string.yaml"], "--config string.yaml: holds a str, not options"),
    (["--max_epoch", "2"], "did you mean --max_epochs?"),
    (["--model.lr", "-1"], "--model.lr -1.0: use a positive learning rate"),
    (["--runs_dir", "corrupt.ckpt"], "--runs_dir corrupt.ckpt: cannot create a run folder"),
    (["--devices", "0"], "fix --accelerator, --devices or --strategy"),
]  # fmt: skip


@pytest.fixture(scope="module")
def bad_input_runs(variant_runs, workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every bad command, each in a folder of its own (holding the files the commands name),
    two at a time: they fail at start-up, so most of their time is the interpreter's."""
    runs = {}
    for i, (args, _) in enumerate(BAD_INPUT):
        folder = workdir / "bad-input" / str(i)
        folder.mkdir(parents=True)
        (folder / "corrupt.ckpt").write_bytes(b"this is not a checkpoint")
        (folder / "nope.yaml").write_text("variant: nope\n")
        (folder / "broken.yaml").write_text("variant: [unclosed\n  - x: y\n")
        (folder / "string.yaml").write_text("just a string\n")
        (folder / "aps.ckpt").symlink_to(workdir / "runs/aps-seed0/checkpoints/last.ckpt")
        runs[str(i)] = ("train.py", [*QUICK, "--logger", "none", *args], recipe_env())
    return run_recipes(runs, cwd={name: workdir / "bad-input" / name for name in runs})


@pytest.mark.parametrize(("case", "message"), [(i, m) for i, (_, m) in enumerate(BAD_INPUT)])
def test_bad_input_is_one_clear_line(case: int, message: str, bad_input_runs, workdir) -> None:
    proc = bad_input_runs[str(case)]
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and message in line, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    runs = workdir / "bad-input" / str(case) / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run folder left


def test_help_lists_variants_and_print_config_resolves_the_preset(workdir: Path) -> None:
    help_text = run_recipe("train.py", "--help", cwd=workdir).stdout
    for name in VARIANTS:
        assert name in help_text
    config = run_recipe(
        "train.py", "--variant", "blurpool", "--head", "gap", "--print_config", cwd=workdir
    ).stdout
    assert "downsample: blur" in config
    assert "head: gap" in config


def test_callbacks_given_on_the_command_line_join_the_runs_own(tmp_path: Path) -> None:
    """``--trainer.callbacks+=`` reaches the trainer beside the run's own callbacks (Lightning's
    CLI drops it when a run passes callbacks in code): an EarlyStopping that no epoch can
    satisfy (val/acc must rise by 1.0) stops a 5-epoch run after its second epoch."""
    from invariance_recipes.lightning_modules.callbacks import CURVE_CSV, read_curve
    from invariance_recipes.run.training import TrainCLI

    cli = TrainCLI(
        [
            "--data.dataset", "digits", "--data.max_samples", "40", "--data.batch_size", "10",
            "--trainer.max_epochs", "5", "--logger", "none", "--model.protocols", "[]",
            "--runs_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/acc",
            "--trainer.callbacks.mode=max", "--trainer.callbacks.min_delta=1.0",
            "--trainer.callbacks.patience=1",
        ]
    )  # fmt: skip
    names = [type(callback).__name__ for callback in cli.trainer.callbacks]
    assert "EarlyStopping" in names and "LearningCurve" in names
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert [row["epoch"] for row in read_curve(cli.run_dir / CURVE_CSV)] == [0, 1]


def test_a_budget_inside_the_first_epoch_tests_the_last_weights(tmp_path: Path, capsys) -> None:
    """No epoch ends before ``--trainer.max_steps``, so no validation picks a best checkpoint:
    the run tests ``last.ckpt`` and says so, instead of Lightning's "no path" traceback."""
    import json

    from invariance_recipes.lightning_modules.callbacks import TESTED
    from invariance_recipes.run.training import train

    run_dir, metrics = train(
        [
            "--data.dataset", "digits", "--data.max_samples", "40", "--data.batch_size", "10",
            "--trainer.max_steps", "2", "--logger", "none", "--model.protocols", "[]",
            "--runs_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
            "--on_collapse", "warn",
        ]
    )  # fmt: skip
    assert "no validation chose a checkpoint: testing the last weights" in capsys.readouterr().out
    assert json.loads((run_dir / TESTED).read_text())["checkpoint"] == "checkpoints/last.ckpt"
    assert 0 <= metrics["test/acc"] <= 1
