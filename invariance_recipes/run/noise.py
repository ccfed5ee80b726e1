"""Quiet the start-up messages a user of these recipes cannot act on; real warnings stay.

- Lightning advertises its own cloud logger on every run that uses another one; no option
  turns it off, so that one message is dropped from Lightning's log.
- Lightning checks ``isinstance(spec, LeafSpec)``, which torch deprecates; the warning is
  about Lightning's code, not ours.
- On a mid-epoch resume Lightning warns that the loader is "not resumable", as it only looks
  for a ``state_dict`` on the loader itself; ours resumes through the DataModule's
  (``TranslationDataModule.state_dict``), exactly, which a test checks.
(wandb's "anonymous setting" warning is avoided at its source: the recipes start W&B runs
themselves, without Lightning's ``anonymous`` argument.)
"""

from __future__ import annotations

import logging
import warnings

_LIGHTNING_LOGS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropLoggerAdvert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "try installing [litlogger]" not in record.getMessage()


def silence_known_noise() -> None:
    """Install the filters once per process (idempotent)."""
    for name in _LIGHTNING_LOGS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLoggerAdvert) for f in log.filters):
            log.addFilter(_DropLoggerAdvert())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings(
        "ignore", message=r"You're resuming from a checkpoint that ended before"
    )
