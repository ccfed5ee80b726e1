"""Checkpoints of a run: which one ``--resume`` continues from, and reading one safely.

``last.ckpt`` is written at every epoch boundary; ``interrupted.ckpt`` only when a signal
stops a run mid-epoch, so the clean epoch-boundary state is never overwritten by a mid-epoch
one. Every load uses ``weights_only=True``: a checkpoint never runs code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.nets import ARCHITECTURE_KEYS, DEFAULTS
from invariance_recipes.run.errors import UsageError
from invariance_recipes.run.run_folders import CHECKPOINTS

LAST = "last.ckpt"
INTERRUPTED = "interrupted.ckpt"


def resume_checkpoint(
    run_dir: Path | None, ckpt_path: str | None, resume: bool
) -> tuple[Path | None, str]:
    """The checkpoint to continue from and a line saying which state that is (an explicit
    ``ckpt_path`` needs no run folder). From either checkpoint of a run the result equals an
    uninterrupted run's: the training loader continues where it stopped, its order and
    augmentation functions of (seed, epoch, sample) (``TranslationDataModule.state_dict``)."""
    if ckpt_path and ckpt_path != "last":
        path = Path(ckpt_path)
        if not path.is_file():
            raise UsageError(f"--ckpt_path: no checkpoint file at {path}")
        return path, f"resuming from {path}"
    if not resume or run_dir is None:
        return None, ""
    folder = run_dir / CHECKPOINTS
    last, interrupted = folder / LAST, folder / INTERRUPTED
    fallback = ""
    if interrupted.is_file() and last.is_file():
        try:
            read_checkpoint(interrupted)
        except UsageError as err:  # a kill while it was written: the epoch boundary is intact
            kept = interrupted.with_name(f"{INTERRUPTED}.damaged")
            interrupted.replace(kept)  # kept for a look, out of --resume's way
            fallback = f"{str(err).split(';')[0]} (kept as {kept.name}); falling back to {LAST}. "
    steps = {p: _global_step(p) for p in (last, interrupted) if p.is_file()}
    if not steps:
        raise UsageError(
            f"--resume: {run_dir} has no {CHECKPOINTS}/{LAST} (the run stopped before its "
            "first checkpoint); start it again without --resume"
        )
    if interrupted in steps and steps[interrupted] > steps.get(last, -1):
        return interrupted, (
            f"resuming from {interrupted} (mid-epoch, step {steps[interrupted]}): exact, the "
            "epoch continues where it stopped"
        )
    return last, f"{fallback}resuming from {last} (end of an epoch, step {steps[last]}): exact"


def _global_step(path: Path) -> int:
    return int(read_checkpoint(path).get("global_step", 0))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a training checkpoint, or fail in one line saying why it is not one."""
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):  # refused an object: never load otherwise
            raise UsageError(
                f"cannot read checkpoint {path}: it holds objects other than tensors and "
                "plain values, so it was not written by recipes/train.py and is not loaded"
                f"{_others(path)}"
            ) from None
        raise UsageError(
            f"cannot read checkpoint {path}: the file is damaged (not a checkpoint archive)"
            f"{_others(path)}"
        ) from None
    except Exception as err:  # truncated, overwritten or not a checkpoint at all
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
        raise UsageError(
            f"cannot read checkpoint {path}: the file is damaged ({reason}){_others(path)}"
        ) from None
    if not isinstance(ckpt, dict) or "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
        raise UsageError(f"{path} is not a checkpoint written by recipes/train.py")
    return ckpt


def _others(path: Path) -> str:
    """Point to the run's other checkpoints when one is unreadable."""
    others = sorted(str(p) for p in path.parent.glob("best-*.ckpt") if p != path)
    return f"; use {' or '.join(others)} instead" if others else ""


def check_checkpoint(path: Path, model: InvarianceClassifier) -> None:
    """Fail early, in one line, on a corrupt checkpoint or one of a different architecture."""
    saved = read_checkpoint(path)["hyper_parameters"]
    # A key added after the checkpoint was written reads as its default.
    saved = {k: getattr(DEFAULTS, k, None) for k in ARCHITECTURE_KEYS} | saved
    diff = {
        k: (saved.get(k), model.hparams[k])
        for k in ARCHITECTURE_KEYS
        if _plain(saved.get(k)) != _plain(model.hparams[k])
    }
    if diff:
        details = ", ".join(
            f"{k}: checkpoint {a!r} vs this run {b!r}" for k, (a, b) in diff.items()
        )
        raise UsageError(
            f"checkpoint {path} was trained with a different model ({details}); pass the "
            "same --variant and model options as the run that wrote it"
        )


def load_checkpoint(path: Path) -> tuple[InvarianceClassifier, dict[str, Any]]:
    """The trained model (eval mode, CPU) and the DataModule options it was trained with."""
    ckpt = read_checkpoint(path)
    model = InvarianceClassifier(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), dict(ckpt.get("datamodule_hyper_parameters", {}))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
