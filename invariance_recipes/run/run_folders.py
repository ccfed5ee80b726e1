"""Run folders: ``runs/NAME``, ``runs/NAME-v2``, ... one per start of a run name.

A new run never overwrites an older one, concurrent starts get distinct folders, and every
process of a distributed run writes into the folder global rank 0 chose. A start that fails
before training removes the folder it created, so ``--resume`` never lands on an empty one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from invariance_recipes.common.atomic_write import atomic_write_json
from invariance_recipes.run.errors import UsageError

RUN_DIR_ENV = "INVARIANCE_RUN_DIR"  # hands the run folder to DDP worker processes
CHECKPOINTS = "checkpoints"
STATUS = "status.json"  # how the run ended: finished, failed or stopped
#: The status key of a finished run's seconds per stage: ``train`` over every attempt (a
#: resumed run included) and ``test``.
SECONDS = "seconds"
HANDOFF_TIMEOUT = timedelta(seconds=120)  # how long other ranks wait for rank 0's choice


def versions(runs_dir: Path, name: str) -> list[tuple[int, Path]]:
    """The folders of run ``name``, oldest first, with their version number."""
    pattern = re.compile(rf"^{re.escape(name)}(-v(\d+))?$")
    found = runs_dir.iterdir() if runs_dir.is_dir() else []
    return sorted((int(m.group(2) or 1), p) for p in found if (m := pattern.match(p.name)))


def has_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / CHECKPOINTS
    return folder.is_dir() and any(folder.glob("*.ckpt"))


def resolve_run_dir(runs_dir: Path, name: str, resume: bool) -> Path:
    """The run folder: a fresh ``NAME``, ``NAME-v2``, ... or, to resume, the newest one that
    holds a checkpoint. Only the global rank 0 chooses; the other ranks receive its choice."""
    store = _launcher_store()
    handoff = _slurm_handoff(runs_dir, name) if store is None else None
    if store is not None and _global_rank() > 0:
        run_dir = Path(store.get(_handoff_key(name)).decode())
    elif handoff is not None and int(os.environ["SLURM_PROCID"]) > 0:
        run_dir = _wait_for_handoff(handoff)
    elif int(os.environ.get("LOCAL_RANK", "0")) > 0 and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])  # a worker Lightning's DDP launcher started
    else:
        run_dir = _resume_dir(runs_dir, name) if resume else create_run_dir(runs_dir, name)
        if store is not None:
            store.set(_handoff_key(name), str(run_dir))
        if handoff is not None:  # written whole, then renamed: a reader never sees half
            partial = handoff.with_suffix(".partial")
            partial.write_text(str(run_dir))
            partial.replace(handoff)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _resume_dir(runs_dir: Path, name: str) -> Path:
    found = versions(runs_dir, name)
    if not found:
        raise UsageError(
            f"--resume: no run named {name!r} under {runs_dir}/ to continue; "
            "start it without --resume, or pass --run_name/--runs_dir of the stopped run"
        )
    with_checkpoint = [p for _, p in found if has_checkpoint(p)]
    if not with_checkpoint:
        raise UsageError(
            f"--resume: no folder of run {name!r} under {runs_dir}/ holds a checkpoint (it "
            "stopped before its first epoch ended); start it again without --resume"
        )
    return with_checkpoint[-1]


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """Create the next free ``NAME-vN``; a folder another process just took is skipped."""
    found = versions(runs_dir, name)
    number = found[-1][0] + 1 if found else 1
    while True:
        run_dir = runs_dir / (name if number == 1 else f"{name}-v{number}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:  # another start took this one a moment ago
            number += 1
        except OSError as err:
            raise UsageError(
                f"--runs_dir {runs_dir}: cannot create a run folder there ({err.strerror}); "
                "pass a writable folder"
            ) from None


def remove_unstarted(run_dir: Path) -> None:
    """Remove the folder of a start that failed before training (it holds no work)."""
    if run_dir.is_dir() and not has_checkpoint(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def write_status(
    run_dir: Path,
    status: str,
    reason: str = "",
    exit_code: int = 0,
    seconds: Mapping[str, float] | None = None,
) -> None:
    """Record how the run ended (``finished``, ``failed`` or ``stopped``) in the run folder,
    with the seconds it spent in each stage when it finished (:data:`SECONDS`)."""
    record: dict[str, Any] = {"status": status, "reason": reason, "exit_code": exit_code}
    if seconds is not None:
        record[SECONDS] = dict(seconds)
    atomic_write_json(run_dir / STATUS, record)


def read_status(run_dir: Path) -> dict[str, Any]:
    """The recorded end of a run; ``{}`` while it runs or when it never recorded one."""
    path = run_dir / STATUS
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_seconds(run_dir: Path) -> float | None:
    """Training (every attempt) and test seconds of a finished run; ``None`` when its status
    does not record them (runs trained before it did)."""
    seconds = read_status(run_dir).get(SECONDS)
    return float(sum(seconds.values())) if seconds else None


def _global_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _handoff_key(name: str) -> str:
    return f"invariance_recipes/run_dir/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{name}"


def _slurm_handoff(runs_dir: Path, name: str) -> Path | None:
    """Where task 0 of a multi-task ``srun`` step leaves its choice for the other tasks.

    srun starts every task on its own (no launcher store), so they meet in the runs folder,
    in a file named after the job and its restart count: a requeued job reads its own.
    """
    if "SLURM_PROCID" not in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) < 2:
        return None
    job, restart = os.environ.get("SLURM_JOB_ID", "0"), os.environ.get("SLURM_RESTART_COUNT", "0")
    return runs_dir / f".{name}.slurm-{job}-{restart}.run_dir"


def _wait_for_handoff(handoff: Path) -> Path:
    deadline = time.monotonic() + HANDOFF_TIMEOUT.total_seconds()
    while not handoff.is_file():
        if time.monotonic() > deadline:
            raise UsageError(
                f"SLURM task {os.environ['SLURM_PROCID']}: task 0 chose no run folder within "
                f"{HANDOFF_TIMEOUT.seconds} s (see its error); every task must share --runs_dir"
            )
        time.sleep(0.2)
    return Path(handoff.read_text())


def _launcher_store() -> Any:
    """The key-value store torchrun's agent serves to its workers (``None`` elsewhere).

    Each torchrun worker runs this script on its own, so they cannot inherit rank 0's
    choice; the agent's store is fresh for every launch, so no stale choice is read.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return None
    from torch.distributed import TCPStore

    return TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=HANDOFF_TIMEOUT,
    )
