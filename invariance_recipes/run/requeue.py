"""Requeue a SLURM job that a time-limit signal stopped, once its state is saved.

Lightning's own SLURM handler saves a checkpoint inside the signal handler: under DDP that save
is a collective, so when the signal reaches the ranks at different points (one in a gradient
all-reduce, one in the save's barrier) the job hangs until its time limit. Here the signal only
asks to stop (``GracefulStop``); every rank stops at the same batch, the state is saved there,
and then rank 0 asks SLURM to requeue the job, which runs its script again with ``--resume``.
"""

from __future__ import annotations

import os
import subprocess

from lightning.fabric.plugins.environments import SLURMEnvironment


def under_slurm_batch_job() -> bool:
    """Whether this process is a task of a SLURM batch job (not an interactive allocation),
    the case where a time-limit signal should requeue the job."""
    return SLURMEnvironment.detect()


def slurm_job_id() -> str:
    """The id ``scontrol requeue`` takes: ``ARRAYJOB_TASK`` for an array task."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def requeue_job() -> str:
    """Requeue this SLURM job; returns one line saying what happened (never raises)."""
    job = slurm_job_id()
    try:
        done = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"could not requeue SLURM job {job} ({type(err).__name__}: {err}); resubmit it"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"could not requeue SLURM job {job} ({reason}); resubmit it"
    return f"requeued SLURM job {job}: it runs again with --resume and continues this run"
