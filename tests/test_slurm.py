"""recipes/slurm/train.sbatch on a real one-node SLURM cluster (started by .ci/slurm-up): a
2-task DDP job matches a single-process evaluation, and a job preempted with USR1 requeues
itself and finishes in the same run folder with the metrics of the uninterrupted job."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch

from recipe_runs import QUICK, ROOT, read_test_metrics, recipe_env
from scale_runs import assert_matches_single_process, only_run_folder

TEMPLATE = ROOT / "recipes" / "slurm" / "train.sbatch"
# Three epochs so that the second job is still training when it is preempted.
T = TypeVar("T")

TRAIN = [
    *QUICK,
    "--max_epochs",
    "3",
    "--data.max_samples",
    "400",
    "--accelerator",
    "cpu",
    "--strategy",
    "ddp",
    "--logger",
    "csv",
]


@pytest.fixture(scope="module")
def slurm() -> None:
    """A running cluster; skips (saying why) only where SLURM is not installed."""
    if shutil.which("sbatch") is None:
        pytest.skip(
            "SLURM is not installed here: run .ci/slurm-up as root (it apt-get installs "
            "slurm-wlm and munge and starts a one-node cluster)"
        )
    up = subprocess.run(
        [str(ROOT / ".ci" / "slurm-up")], capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, f"the SLURM cluster did not start: {up.stdout}{up.stderr}"


def job_env(first: Path | None = None) -> dict[str, str]:
    """The submitting shell's environment, with this Python first on PATH for `python` (and
    ``first`` before it)."""
    folders = [*([str(first)] if first else []), str(Path(sys.executable).parent)]
    return recipe_env(PATH=os.pathsep.join([*folders, os.environ.get("PATH", "")]))


def slow_scontrol(folder: Path) -> Path:
    """A folder whose ``scontrol`` is the real one, then a 3-second pause before it returns:
    a requeue's SIGTERM then always reaches the job before ``scontrol requeue`` returns, as it
    does on a loaded machine."""
    folder.mkdir()
    wrapper = folder / "scontrol"
    real = shutil.which("scontrol")
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@"\nstatus=$?\nsleep 3\nexit $status\n')
    wrapper.chmod(0o755)
    return folder


def sbatch(
    tmp_path: Path, name: str, *options: str, path_first: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Submit the template as README "Scaling out" shows, on CPU with two tasks."""
    return subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--job-name",
            f"invariance-{name}",
            "--gres=none",
            "--ntasks-per-node",
            "2",
            "--cpus-per-task",
            "1",
            "--output",
            str(tmp_path / "%j.out"),
            *options,
            str(TEMPLATE),
            *TRAIN,
            "--runs_dir",
            str(tmp_path / "runs"),
            "--run_name",
            name,
        ],
        cwd=ROOT,
        env=job_env(path_first),
        capture_output=True,
        text=True,
        timeout=900 if "--wait" in options else 60,
    )


def job_state(job: str) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T | None:
    """``read()`` every second until ``done`` holds; ``None`` when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(1)
    return None


def wait_for(job: str, done: set[str], timeout: float) -> dict[str, str]:
    state = poll(lambda: job_state(job), lambda s: s.get("JobState") in done, timeout)
    if state is None:
        subprocess.run(["scancel", job], timeout=30)
        raise AssertionError(f"job {job} did not finish in {timeout:.0f}s: {job_state(job)}")
    return state


def node_states() -> list[str]:
    return subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True
    ).stdout.split()


def wait_for_idle_node(timeout: float) -> None:
    idle = poll(node_states, lambda states: bool(states) and set(states) == {"idle"}, timeout)
    if idle is None:
        raise AssertionError(f"the node did not become idle in {timeout:.0f}s: {node_states()}")


@pytest.mark.slow
def test_sbatch_two_tasks_then_a_preempted_job_requeues_into_the_same_run(
    slurm: None, tmp_path: Path
) -> None:
    whole = sbatch(tmp_path, "whole", "--wait")
    job = whole.stdout.strip().split(";")[0]
    log = (tmp_path / f"{job}.out").read_text() if job else ""
    assert whole.returncode == 0, f"{whole.stderr}\n{log[-4000:]}"
    assert_matches_single_process(only_run_folder(tmp_path / "runs", "whole"))
    expected = read_test_metrics(tmp_path / "runs" / "whole")

    # the requeue's SIGTERM reaches the stopped run while it writes its record and says
    # what happened: it must still say that it requeued the job (it said "stopped while
    # starting; nothing to resume" when the signal came first)
    submitted = sbatch(tmp_path, "preempted", path_first=slow_scontrol(tmp_path / "bin"))
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    last = tmp_path / "runs" / "preempted" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline:
        assert job_state(job).get("JobState") in {"PENDING", "RUNNING", "CONFIGURING"}
        time.sleep(0.2)
    assert last.exists(), (tmp_path / f"{job}.out").read_text()[-4000:]
    # what SLURM sends 90 s before the time limit (--signal=USR1@90), sent now
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)

    # requeued: SLURM holds it back for two minutes before it may start again; start it now,
    # once the node has let go of the stopped attempt (its tasks may take seconds to end)
    wait_for(job, {"PENDING"}, timeout=120)
    wait_for_idle_node(timeout=120)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    state = wait_for(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=600)
    log = (tmp_path / f"{job}.out").read_text()
    why = {key: state.get(key) for key in ("JobState", "Reason", "ExitCode", "Restarts")}
    assert state["JobState"] == "COMPLETED", f"{why}\n{log[-4000:]}"
    assert int(state["Restarts"]) == 1, log[-4000:]  # it was requeued once
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert folders == ["preempted", "whole"], folders  # the requeued job kept its folder
    run_dir = tmp_path / "runs" / "preempted"
    got = read_test_metrics(run_dir)
    assert got.keys() == expected.keys()
    # the test metrics come from the best epoch, which may precede the preemption: the final
    # weights show that training after the requeue went on exactly as without it
    final = {
        name: torch.load(tmp_path / "runs" / name / "checkpoints/last.ckpt", weights_only=True)
        for name in ("whole", "preempted")
    }
    epochs = {name: (c["epoch"], c["global_step"]) for name, c in final.items()}
    # both must be the state after the last epoch: last.ckpt saved every epoch (not only when
    # val/acc improves) and never overwritten by a mid-epoch state when the job is requeued
    assert epochs["preempted"] == epochs["whole"], epochs
    # USR1 lands mid-epoch or at an epoch boundary; the requeued job says which state it took,
    # and from either it ends with the uninterrupted run's metrics and weights, bit for bit
    assert "(mid-epoch" in log or "(end of an epoch" in log, log[-4000:]
    # the stop saved, then rank 0 requeued the job (Lightning's own handler never ran)
    assert f"requeued SLURM job {job}: it runs again with --resume" in log, log[-4000:]
    assert "Handling auto-requeue signal" not in log
    assert "while starting" not in log, log[-4000:]
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))
    for key in expected:
        assert got[key] == expected[key], key
    for key, value in final["whole"]["state_dict"].items():
        assert torch.equal(final["preempted"]["state_dict"][key], value), key


@pytest.mark.slow
def test_a_requeue_that_slurm_refuses_is_one_line(slurm: None, monkeypatch) -> None:
    """The real scontrol, asked to requeue a job that does not exist: the stopped run says it
    could not and to resubmit, instead of raising."""
    from invariance_recipes.run.requeue import requeue_job

    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "999999")
    message = requeue_job()
    assert message.startswith("could not requeue SLURM job 999999 (")
    assert message.endswith("); resubmit it") and "\n" not in message


def test_the_template_asks_for_the_signal_the_requeue_and_one_log() -> None:
    """What the requeue needs from SLURM, stated in the template: the signal before the time
    limit, permission to requeue, and a log that a requeued job appends to (the first part
    says why it was requeued)."""
    directives = {
        line.split()[1] for line in TEMPLATE.read_text().splitlines() if line.startswith("#SBATCH")
    }
    assert {"--signal=USR1@90", "--requeue", "--open-mode=append"} <= directives
