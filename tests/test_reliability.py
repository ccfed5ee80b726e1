"""Runs end honestly: signals to real processes, diverged runs, failed starts, crafted
checkpoints, concurrent starts and torchrun, all through the real command line."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from invariance_recipes.run.run_folders import create_run_dir
from recipe_runs import QUICK, ROOT, read_test_metrics, recipe_env, run_recipe
from wandb_records import read_records

# Longer epochs than QUICK (about 20 steps each), so a signal lands mid-epoch.
LONG = [
    "--max_epochs", "2", "--data.max_samples", "300", "--data.batch_size", "10",
    "--data.num_workers", "0", "--model.curve_max_shift", "3",
    "--trainer.enable_progress_bar", "false", "--logger", "csv",
]  # fmt: skip


class Started:
    """A recipe started in the background; its output goes to files polled by the test."""

    def __init__(self, args: list[str], cwd: Path, tag: str) -> None:
        self.out, self.err = cwd / f"{tag}.out", cwd / f"{tag}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "recipes/train.py"), *args],
                cwd=cwd,
                env=recipe_env(),
                stdout=out,
                stderr=err,
                text=True,
            )

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(
                    f"never saw {what} (exit {self.proc.returncode}): {self.text()[-2000:]}"
                )
            time.sleep(0.05)

    def text(self) -> str:
        return self.out.read_text() + self.err.read_text()


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _status(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.slow
def test_sigterm_mid_training_keeps_the_epoch_checkpoint_and_exits_143(workdir: Path) -> None:
    run_dir = workdir / "runs/term"
    last, interrupted = run_dir / "checkpoints/last.ckpt", run_dir / "checkpoints/interrupted.ckpt"
    began = time.monotonic()
    run = Started([*LONG, "--run_name", "term"], workdir, "term")
    run.wait_for(last.is_file, "the first epoch's last.ckpt")
    time.sleep(0.5)  # into the second epoch
    epoch_steps = _step(last)
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) == 143, run.text()[-3000:]
    first_attempt = time.monotonic() - began

    assert _step(last) % epoch_steps == 0  # still an epoch boundary
    assert _step(interrupted) > _step(last)
    assert not (run_dir / "test_metrics.json").exists()
    assert _status(run_dir)["status"] == "stopped"
    assert _status(run_dir)["exit_code"] == 143
    stderr = run.err.read_text()
    assert "--resume" in stderr
    assert "Traceback" not in stderr

    # the training time so far travels in the checkpoint; made an hour longer here, so that
    # the finished run's record can only reach it by counting the first attempt
    state = torch.load(interrupted, map_location="cpu", weights_only=False)
    elapsed = state["callbacks"]["Timer"]["time_elapsed"]
    assert 0 < elapsed["train"] < first_attempt
    elapsed["train"] += 3600
    torch.save(state, interrupted)

    began = time.monotonic()
    resumed = run_recipe(
        "train.py", *LONG, "--run_name", "term", "--resume", cwd=workdir, timeout=900
    )
    second_attempt = time.monotonic() - began
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {Path('runs/term/checkpoints/interrupted.ckpt')}" in resumed.stdout
    assert "(mid-epoch" in resumed.stdout and ": exact, the epoch continues" in resumed.stdout
    assert read_test_metrics(run_dir)["test/acc"] >= 0
    status = _status(run_dir)
    assert status["status"] == "finished"
    seconds = status["seconds"]
    assert elapsed["train"] < seconds["train"] < elapsed["train"] + second_attempt
    assert 0 < seconds["test"] < second_attempt


@pytest.mark.slow
def test_max_time_still_ends_training_and_the_run_records_it(workdir: Path) -> None:
    """The run's own timer (which carries the training time across resumes) replaces the one
    Lightning adds for --trainer.max_time, so the option must still stop a long run in time."""
    run_dir = workdir / "runs/timed"
    args = [*QUICK, "--max_epochs", "10000", "--trainer.max_time", "00:00:00:03"]
    began = time.monotonic()
    timed = run_recipe("train.py", *args, "--logger", "none", "--run_name", "timed", cwd=workdir)
    took = time.monotonic() - began
    assert timed.returncode == 0, timed.stderr[-3000:]
    assert "Time limit reached" in timed.stdout + timed.stderr
    assert "Ignoring `Trainer(max_time" not in timed.stdout + timed.stderr
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["epoch"] < 9999
    seconds = _status(run_dir)["seconds"]
    assert 3 <= seconds["train"] < took and 0 < seconds["test"] < took - seconds["train"]


@pytest.mark.slow
def test_second_ctrl_c_stops_now_without_touching_last_ckpt(workdir: Path) -> None:
    run_dir = workdir / "runs/twice"
    last = run_dir / "checkpoints/last.ckpt"
    run = Started([*LONG, "--run_name", "twice"], workdir, "twice")
    run.wait_for(last.is_file, "the first epoch's last.ckpt")
    time.sleep(0.5)
    epoch_steps = _step(last)
    run.proc.send_signal(signal.SIGINT)
    run.wait_for(lambda: "stopping after this epoch" in run.text(), "the first Ctrl-C's notice")
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=60) == 130, run.text()[-3000:]
    assert _step(last) % epoch_steps == 0
    assert _step(run_dir / "checkpoints/interrupted.ckpt") > _step(last)
    assert not (run_dir / "test_metrics.json").exists()


@pytest.mark.slow
def test_sigterm_while_testing_exits_143_and_resume_tests_again(workdir: Path) -> None:
    run_dir = workdir / "runs/testing"
    args = [*QUICK, "--logger", "csv", "--model.curve_max_shift", "8", "--run_name", "testing"]
    run = Started(args, workdir, "testing")
    run.wait_for(lambda: "Restoring states from the checkpoint" in run.text(), "the test start")
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=60) == 143, run.text()[-3000:]
    assert "while testing" in run.err.read_text()
    assert not (run_dir / "test_metrics.json").exists()
    resumed = run_recipe("train.py", *args, "--resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_test_metrics(run_dir)["test/acc"] >= 0


@pytest.mark.slow
def test_diverged_run_fails_and_says_so_everywhere(workdir: Path) -> None:
    args = ["--model.optimizer", "sgd", "--model.lr", "1e6", "--max_epochs", "3"]
    env = recipe_env()
    proc = run_recipe(
        "train.py", *QUICK, *args, "--logger", "wandb", "--run_name", "nan", cwd=workdir, env=env
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "diverged at step" in line and "--model.lr 1000000.0" in line
    assert "Traceback" not in proc.stderr
    run_dir = workdir / "runs/nan"
    assert not (run_dir / "test_metrics.json").exists()
    assert _status(run_dir)["status"] == "failed"
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    exits = [
        r.exit.exit_code for r in read_records(run_file) if r.WhichOneof("record_type") == "exit"
    ]
    assert exits == [1]


@pytest.fixture(scope="module")
def finished_run(workdir: Path) -> Path:
    proc = run_recipe("train.py", *QUICK, "--logger", "csv", "--run_name", "base", cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir / "runs/base"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accelerator", "gpu"], "error: trainer options"),
        (["--data.dataset", "mnist", "--data.data_dir", "no-data"], "files missing"),
        (["--ckpt_path", "corrupt.ckpt"], "the file is damaged"),
    ],
)
def test_failed_start_leaves_no_run_folder(args, message, finished_run: Path) -> None:
    workdir = finished_run.parents[1]
    (workdir / "corrupt.ckpt").write_bytes(b"PK\x03\x04 truncated")
    before = sorted(p.name for p in (workdir / "runs").iterdir())
    proc = run_recipe(
        "train.py", *QUICK, "--logger", "none", "--run_name", "base", *args, cwd=workdir
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "--resume" not in proc.stderr  # no false "saved last.ckpt; continue with --resume"
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == before


@pytest.mark.slow
def test_resume_picks_the_newest_run_with_a_checkpoint(finished_run: Path) -> None:
    workdir = finished_run.parents[1]
    (workdir / "runs/base-v2").mkdir()  # a start that crashed before its first checkpoint
    try:
        proc = run_recipe(
            "train.py",
            *QUICK,
            "--logger",
            "none",
            "--run_name",
            "base",
            "--resume",
            "--max_epochs",
            "2",
            cwd=workdir,
        )
    finally:
        shutil.rmtree(workdir / "runs/base-v2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {Path('runs/base/checkpoints/last.ckpt')}" in proc.stdout
    assert "exact" in proc.stdout


class _RunsCommand:
    """Pickles to "call os.system(command)" when loaded, as a crafted checkpoint would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ckpt_path", "resume", "evaluate"])
def test_crafted_checkpoint_runs_nothing(how: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "runs/evil/checkpoints/last.ckpt"
    evil.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hyper_parameters": _RunsCommand(f"touch {marker}")}, evil)
    if how == "evaluate":
        proc = run_recipe("evaluate.py", "--ckpt", str(evil), "--logger", "none", cwd=tmp_path)
    else:
        extra = ["--ckpt_path", str(evil)] if how == "ckpt_path" else ["--resume"]
        proc = run_recipe(
            "train.py", *QUICK, "--logger", "none", "--run_name", "evil", *extra, cwd=tmp_path
        )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "not loaded" in proc.stderr and "Traceback" not in proc.stderr
    assert "weights_only=False" not in proc.stderr
    assert not marker.exists()


def _create(
    runs_dir: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue
) -> None:
    barrier.wait()
    try:
        out.put(str(create_run_dir(Path(runs_dir), "same")))
    except Exception as err:  # reported to the test, which fails on it
        out.put(f"{type(err).__name__}: {err}")


def test_concurrent_starts_get_distinct_folders(tmp_path: Path) -> None:
    count = 6
    ctx = multiprocessing.get_context("fork")  # real processes, no re-import
    barrier, out = ctx.Barrier(count), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), barrier, out)) for _ in range(count)]
    for proc in procs:
        proc.start()
    got = sorted(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    expected = sorted(
        str(tmp_path / n) for n in ["same", *(f"same-v{i}" for i in range(2, count + 1))]
    )
    assert got == expected


@pytest.mark.slow
def test_torchrun_ranks_share_the_folder_rank_zero_chose(tmp_path: Path) -> None:
    (tmp_path / "runs/tr").mkdir(parents=True)  # rank 0 must pick tr-v2, and every rank with it
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(ROOT / "recipes/train.py"),
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
            "tr",
        ],
        cwd=tmp_path,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tr", "tr-v2"]
    run_dir = tmp_path / "runs/tr-v2"
    assert (run_dir / "checkpoints/last.ckpt").is_file()
    assert (run_dir / "test_metrics.json").is_file()
    assert list((tmp_path / "runs/tr").iterdir()) == []
    assert "sync_dist" not in proc.stderr


@pytest.mark.slow
def test_compare_reports_a_diverged_run_as_failed_not_as_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_recipe(
        "compare.py",
        "--experiment",
        "small-shift",
        "--quick",
        "--seeds",
        "1",
        "--variants",
        "baseline",
        "--logger",
        "csv",
        "--out",
        str(out),
        "--",
        "--data.max_samples",
        "120",
        "--model.optimizer",
        "sgd",
        "--model.lr",
        "1e6",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "failed: training diverged at step" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "results.csv").exists() or "baseline" not in (out / "results.csv").read_text()


@pytest.mark.slow
def test_collapsed_model_fails_in_train_and_evaluate(tmp_path: Path) -> None:
    """At --model.lr 1.0 the model predicts one class: its consistency is near 1 for the wrong
    reason, so the run fails in one line instead of reporting it."""
    proc = run_recipe(
        "train.py",
        *QUICK,
        "--on_collapse",
        "fail",
        "--model.lr",
        "1.0",
        "--logger",
        "csv",
        "--run_name",
        "flat",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not learn" in errors[0], proc.stderr[-3000:]
    assert "meaningless" in errors[0] and "--model.lr" in errors[0]
    assert "Traceback" not in proc.stderr
    run_dir = tmp_path / "runs/flat"
    assert not (run_dir / "test_metrics.json").exists()
    assert _status(run_dir)["status"] == "failed" and _status(run_dir)["exit_code"] == 1

    evaluated = run_recipe(
        "evaluate.py",
        "--ckpt",
        str(run_dir / "checkpoints/last.ckpt"),
        "--logger",
        "none",
        "--max_shifts",
        "1",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 1, evaluated.stderr[-3000:]
    assert "did not learn" in evaluated.stderr and "Traceback" not in evaluated.stderr
    assert not (run_dir / "evaluation/report.json").exists()


@pytest.mark.slow
def test_compare_lists_a_collapsed_run_as_failed(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run_recipe(
        "compare.py",
        "--experiment",
        "small-shift",
        "--quick",
        "--variants",
        "baseline",
        "--logger",
        "csv",
        "--out",
        str(out),
        "--",
        "--data.max_samples",
        "120",
        "--trainer.max_epochs",
        "1",
        "--model.lr",
        "1.0",
        "--on_collapse",  # --quick warns; options after -- win
        "fail",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 run(s) failed" in proc.stderr and "did not learn" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "results.csv").exists() or "baseline" not in (out / "results.csv").read_text()


@pytest.mark.slow
def test_sigterm_while_starting_exits_143_and_leaves_no_folder(tmp_path: Path) -> None:
    """Also: more loader workers than cores are capped with a warning, not started."""
    run_dir = tmp_path / "runs/early"
    args = [*LONG, "--logger", "wandb", "--run_name", "early", "--data.num_workers", "64"]
    run = Started(args, tmp_path, "early")
    run.wait_for(run_dir.is_dir, "the run folder")
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=120) == 143, run.text()[-3000:]
    stderr = run.err.read_text()
    assert "stopped by SIGTERM" in stderr and "start it again" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    assert not run_dir.exists()
    cores = len(os.sched_getaffinity(0))
    assert f"--data.num_workers 64: this machine has {cores} CPU cores; using {cores}" in stderr


@pytest.mark.slow
def test_sigusr1_without_slurm_saves_and_a_damaged_interrupted_ckpt_falls_back(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "runs/usr1"
    ckpts = run_dir / "checkpoints"
    run = Started([*LONG, "--run_name", "usr1"], tmp_path, "usr1")
    run.wait_for((ckpts / "last.ckpt").is_file, "the first epoch's last.ckpt")
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGUSR1)
    assert run.proc.wait(timeout=60) == 128 + signal.SIGUSR1, run.text()[-3000:]
    stderr = run.err.read_text()
    assert "stopped by SIGUSR1" in stderr and "--resume" in stderr, stderr[-3000:]
    assert _step(ckpts / "interrupted.ckpt") > _step(ckpts / "last.ckpt")
    assert _status(run_dir)["exit_code"] == 138

    # a kill while interrupted.ckpt was written: the epoch boundary still resumes, exactly
    damaged = ckpts / "interrupted.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    resumed = run_recipe("train.py", *LONG, "--run_name", "usr1", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "interrupted.ckpt: the file is damaged" in resumed.stdout
    assert "falling back to last.ckpt" in resumed.stdout and ": exact" in resumed.stdout
    assert (ckpts / "interrupted.ckpt.damaged").is_file()
    assert not (ckpts / "interrupted.ckpt").exists()  # no leftover once training is complete
    assert _status(run_dir)["status"] == "finished"


def test_resume_line_names_the_checkpoint_it_takes(tmp_path: Path) -> None:
    from invariance_recipes.run.checkpoints import resume_checkpoint

    ckpts = tmp_path / "run/checkpoints"
    ckpts.mkdir(parents=True)
    torch.save({"hyper_parameters": {}, "state_dict": {}, "global_step": 20}, ckpts / "last.ckpt")
    path, line = resume_checkpoint(tmp_path / "run", None, True)
    assert path == ckpts / "last.ckpt" and line.endswith("(end of an epoch, step 20): exact")
    torch.save(
        {"hyper_parameters": {}, "state_dict": {}, "global_step": 25}, ckpts / "interrupted.ckpt"
    )
    path, line = resume_checkpoint(tmp_path / "run", None, True)
    assert path == ckpts / "interrupted.ckpt" and "(mid-epoch, step 25): exact" in line
    (ckpts / "interrupted.ckpt").write_bytes(b"PK\x03\x04 cut short")
    path, line = resume_checkpoint(tmp_path / "run", None, True)
    assert path == ckpts / "last.ckpt" and "falling back to last.ckpt" in line
    assert (ckpts / "interrupted.ckpt.damaged").is_file()


@pytest.mark.slow
def test_a_runs_folder_that_turns_read_only_fails_in_one_line(tmp_path: Path) -> None:
    """``chattr +i`` denies writes even to root (``chmod`` does not), as a read-only mount."""
    run_dir = tmp_path / "runs/ro"
    (tmp_path / "probe").mkdir()
    if subprocess.run(["chattr", "+i", str(tmp_path / "probe")], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    subprocess.run(["chattr", "-i", str(tmp_path / "probe")], check=True)
    args = [*LONG, "--max_epochs", "3", "--run_name", "ro"]
    run = Started(args, tmp_path, "ro")
    run.wait_for((run_dir / "checkpoints/last.ckpt").is_file, "the first epoch's last.ckpt")
    frozen = [run_dir / "checkpoints", run_dir]
    subprocess.run(["chattr", "+i", *map(str, frozen)], check=True)
    try:
        assert run.proc.wait(timeout=600) == 1, run.text()[-3000:]
    finally:
        subprocess.run(["chattr", "-i", *map(str, frozen)], check=True)
    stderr = run.err.read_text()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Operation not permitted" in errors[0], stderr[-3000:]
    assert "--resume" in errors[0] and "Traceback" not in stderr
    assert (run_dir / "checkpoints/last.ckpt").is_file()  # nothing lost
