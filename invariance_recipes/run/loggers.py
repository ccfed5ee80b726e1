"""Loggers for a run: W&B by default, CSV, or none.

W&B never costs a run: ``WANDB_MODE=disabled`` creates no W&B run and sends nothing; without
credentials or a reachable server it logs offline from the start, and when the server fails at start (a rejected key, an outage, a proxy that accepts
the connection and never answers) it falls back to offline within ``WANDB_INIT_TIMEOUT``
seconds, with one warning line and the ``wandb sync`` command to upload later.
"""

from __future__ import annotations

import netrc
import os
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.rank_zero import rank_zero_only

WANDB_ID_FILE = "wandb_id"
# Summaries that make runs of different variants comparable at a glance in the dashboard.
SUMMARIES = {"val/acc": "max", "val/consistency": "last"}  # test/* keep their last value
INIT_TIMEOUT_S = 30.0  # the longest W&B may take to start before the run goes offline
DISABLED_NOTE = "W&B: WANDB_MODE=disabled: no W&B run, nothing is sent (--logger csv logs locally)"


def make_logger(
    kind: str,
    *,
    run_dir: Path,
    name: str,
    project: str,
    group: str | None,
    tags: list[str],
    config: dict[str, Any],
) -> Logger | bool:
    """Build the run's logger; ``kind`` is ``wandb``, ``csv`` or ``none``."""
    if kind == "none":
        return False
    if kind == "csv":
        return CSVLogger(run_dir, name="csv")  # a resumed run adds version_N, keeping the old log
    if wandb_mode() == "disabled":
        rank_zero_info(DISABLED_NOTE)
        return False
    init = {
        "project": project,
        "name": name,
        "dir": str(run_dir),
        "id": run_id(run_dir) if rank_zero_only.rank == 0 else None,
        "resume": "allow",
        "group": group,
        "tags": tags,
        "config": config,
        "job_type": "train",
    }
    # Only rank 0 logs; the other ranks get Lightning's stand-in experiment.
    run = start_wandb(init, run_dir) if rank_zero_only.rank == 0 else None
    return WandbLogger(experiment=run, project=project, name=name, save_dir=str(run_dir))


def start_wandb(init: dict[str, Any], run_dir: Path) -> Any:
    """``wandb.init`` online when possible, else offline; never raises for W&B's sake.
    ``None`` when ``WANDB_MODE=disabled``: no run is created and nothing is sent."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    sync = f"`wandb sync {run_dir}/wandb/offline-run-*`"
    if mode == "offline":
        rank_zero_info(f"W&B: logging offline to {run_dir}/wandb; upload later with {sync}")
        return wandb.init(**init, mode="offline")
    timeout = float(os.environ.get("WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S))
    # W&B's own usage and error reports go to the same server: when it is broken they slow
    # the start and retry for a minute at exit. WANDB_ERROR_REPORTING=true turns them on.
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    try:
        return wandb.init(
            **init, mode="online", settings=wandb.Settings(init_timeout=timeout, silent=True)
        )
    except Exception as err:  # any W&B failure: the run goes on offline
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        rank_zero_warn(
            f"W&B: cannot log online ({type(err).__name__}: {reason}); logging offline to "
            f"{run_dir}/wandb instead; upload later with {sync}"
        )
        wandb.teardown()  # the failed attempt still holds the run id
        return wandb.init(**init, mode="offline")


def finish_wandb(logger: Any, exit_code: int, preempted: bool = False) -> None:
    """End the run's W&B run with the process's exit code, so a failed or stopped run shows
    as such in the dashboard (``preempted``: a scheduler's SIGTERM, the run will resume)."""
    if not isinstance(logger, WandbLogger) or rank_zero_only.rank != 0:
        return
    run = logger.experiment
    if preempted:
        run.mark_preempting()
    run.finish(exit_code=exit_code)


def define_summaries(logger: WandbLogger) -> None:
    """Tell W&B which summary each metric keeps (best validation accuracy, final others)."""
    for key, summary in SUMMARIES.items():
        logger.experiment.define_metric(key, summary=summary)


def wandb_mode() -> str:
    """``online`` when W&B has credentials and its server accepts a connection, else
    ``offline``. An explicit ``WANDB_MODE`` wins (``disabled``: no W&B at all)."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("offline", "dryrun"):
        return "offline"
    if mode in ("disabled", "online"):
        return mode
    import wandb

    url = urlparse(os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url)
    host = url.hostname or ""
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has(host)):
        return "offline"
    default_port = 443 if url.scheme == "https" else 80
    try:
        with socket.create_connection((host, url.port or default_port), timeout=3):
            return "online"
    except OSError:
        return "offline"


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def run_id(run_dir: Path) -> str:
    """A W&B run id kept in the run folder, so a resumed run continues the same W&B run.

    A run a W&B sweep agent started (``WANDB_RUN_ID``, with ``WANDB_SWEEP_ID``) keeps the
    agent's id, so the run reports to its sweep; the folder remembers it for a resume.
    """
    path = run_dir / WANDB_ID_FILE
    given = os.environ.get("WANDB_RUN_ID")
    if given:
        path.write_text(given)
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:8])
    return path.read_text().strip()
