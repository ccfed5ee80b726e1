"""Loggers for a run: W&B by default (offline by itself when it cannot reach the server),
CSV, or none."""

from __future__ import annotations

import netrc
import os
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

WANDB_ID_FILE = "wandb_id"
# Summaries that make runs of different variants comparable at a glance in the dashboard.
SUMMARIES = {"val/acc": "max", "val/consistency": "last"}  # test/* keep their last value


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
    offline = wandb_mode() == "offline"
    logger = WandbLogger(
        project=project,
        name=name,
        save_dir=str(run_dir),
        id=run_id(run_dir),
        offline=offline,
        group=group,
        tags=tags,
        config=config,
        job_type="train",
    )
    if offline and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        rank_zero_info(
            f"W&B: logging offline to {run_dir}/wandb; upload later with "
            f"`wandb sync {run_dir}/wandb/offline-run-*`"
        )
    return logger


def define_summaries(logger: WandbLogger) -> None:
    """Tell W&B which summary each metric keeps (best validation accuracy, final others)."""
    for key, summary in SUMMARIES.items():
        logger.experiment.define_metric(key, summary=summary)


def wandb_mode() -> str:
    """``online`` when W&B has credentials and its server answers, else ``offline``.

    An explicit ``WANDB_MODE`` wins. Without a login or a network a run must not hang
    or fail: it writes locally, and ``wandb sync`` uploads it later.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return "offline" if mode in ("offline", "dryrun") else mode
    import wandb

    url = urlparse(os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url)
    host = url.hostname or ""
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has(host)):
        return "offline"
    try:
        with socket.create_connection((host, url.port or 443), timeout=3):
            return "online"
    except OSError:
        return "offline"


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def run_id(run_dir: Path) -> str:
    """A W&B run id kept in the run folder, so a resumed run continues the same W&B run."""
    path = run_dir / WANDB_ID_FILE
    if not path.exists():
        path.write_text(uuid.uuid4().hex[:8])
    return path.read_text().strip()
