"""W&B beyond logging: the tested checkpoint as a versioned model artifact (``--log_model``),
and an artifact reference wherever a checkpoint file is expected (``evaluate --ckpt``).

``--log_model best`` logs the checkpoint the test used; ``all`` also logs every other
checkpoint of the run folder first, so the tested one is the newest version. Each version
carries the file's name as an alias; the tested one also ``tested``, ``best`` and ``latest``,
so ``wandb:ENTITY/PROJECT/model-RUNID:tested`` names it. An offline run records the artifact
and ``wandb sync`` uploads it with the run.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: ``--log_model`` values; "false" logs nothing (the default: checkpoints can be large)
LOG_MODEL = ("false", "best", "all")
#: what marks an artifact reference where a checkpoint path is expected
REFERENCE_PREFIX = "wandb:"
#: aliases of the version that holds the tested checkpoint
TESTED_ALIASES = ("tested", "best", "latest")
CHECKPOINT_NAME = "model.ckpt"  # the file's name inside each artifact version
#: seconds to wait for a TCP connection to the W&B server before calling it unreachable
CONNECT_TIMEOUT_S = 10.0


def artifact_name(run_id: str) -> str:
    """The run's model artifact, named as Lightning's ``WandbLogger(log_model=...)`` names it."""
    return f"model-{run_id}"


def file_alias(path: Path) -> str:
    """An alias from a checkpoint's file name (``best-epoch=3.ckpt`` -> ``best-epoch-3``)."""
    return re.sub(r"[^\w.-]+", "-", path.stem)


def checkpoints_to_log(mode: str, tested: Path) -> list[Path]:
    """The files ``--log_model mode`` logs, the tested one last (so it is the newest version)."""
    if mode == "false":
        return []
    if mode == "best":
        return [tested]
    others = sorted(p for p in tested.parent.glob("*.ckpt") if p.resolve() != tested.resolve())
    return [*others, tested]


def log_checkpoints(
    run: Any, mode: str, tested: Path, metadata: dict[str, Any]
) -> list[tuple[Path, list[str]]]:
    """Log the checkpoints ``--log_model mode`` selects to `run` (a ``wandb`` run) as versions
    of :func:`artifact_name`; returns each file with its aliases."""
    import wandb

    logged = []
    for path in checkpoints_to_log(mode, tested):
        aliases = [file_alias(path)]
        if path == tested:
            aliases += [a for a in TESTED_ALIASES if a not in aliases]
        artifact = wandb.Artifact(
            artifact_name(run.id),
            type="model",
            metadata={**metadata, "file": path.name, "tested": path == tested},
        )
        artifact.add_file(str(path), name=CHECKPOINT_NAME)
        run.log_artifact(artifact, aliases=aliases)
        logged.append((path, aliases))
    return logged


def is_reference(value: str | Path) -> bool:
    return str(value).startswith(REFERENCE_PREFIX)


def parse_reference(value: str) -> str:
    """``wandb:[ENTITY/]PROJECT/NAME:ALIAS`` -> the reference W&B's API takes; a one-line
    ``ValueError`` naming the form otherwise."""
    reference = value.removeprefix(REFERENCE_PREFIX)
    if not re.fullmatch(r"([\w.-]+/){1,2}[\w.-]+:[\w.-]+", reference):
        raise ValueError(
            f"--ckpt {value!r} is not an artifact reference: use "
            f"{REFERENCE_PREFIX}ENTITY/PROJECT/model-RUNID:tested (or a .ckpt file)"
        )
    return reference


def download_checkpoint(value: str, root: Path) -> Path:
    """The checkpoint file of artifact reference `value`, downloaded into `root`."""
    reference = parse_reference(value)
    import wandb
    from wandb.sdk import wandb_setup

    base_url = wandb_setup.singleton().settings.base_url
    try:
        _connect(base_url)
    except OSError as err:
        raise ValueError(
            f"--ckpt {value!r}: cannot download the artifact (cannot reach {base_url}: "
            f"{err.strerror or err}); check your network and WANDB_BASE_URL"
        ) from None
    try:
        artifact = wandb.Api().artifact(reference, type="model")
        folder = Path(artifact.download(root=str(root / reference.replace("/", "_"))))
    except Exception as err:  # any W&B failure is one line naming the reference
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(
            f"--ckpt {value!r}: cannot download the artifact ({reason}); check the reference, "
            "your W&B login (wandb login) and WANDB_BASE_URL"
        ) from None
    return folder / CHECKPOINT_NAME


def _connect(url: str) -> None:
    """Open and close one TCP connection to `url`'s host: W&B's own client retries an
    unreachable server for minutes (and its service holds the process at exit), so an
    address that refuses or never answers fails here, within ``CONNECT_TIMEOUT_S``."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
        pass
