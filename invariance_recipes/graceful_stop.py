"""Stopping loses no work: the first Ctrl-C finishes the current epoch (whose checkpoint is
saved as usual) and stops, so ``--resume`` continues exactly as if nothing happened. A
second Ctrl-C, or any crash, stops at once and still writes ``last.ckpt``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class GracefulStop(L.Callback):
    """Turn the first SIGINT into "stop after this epoch"; checkpoint on any exception."""

    def __init__(self, last_ckpt: str | Path) -> None:
        self.last_ckpt = Path(last_ckpt)
        self.requested = False
        self._previous: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        if trainer.is_global_zero:
            print("training: press Ctrl-C once to stop after this epoch", flush=True)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second press: stop now
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        rank_zero_info("\nCtrl-C: stopping after this epoch (press again to stop now) ...")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.requested:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore()
        if trainer.training:
            trainer.save_checkpoint(self.last_ckpt)
            rank_zero_info(f"saved {self.last_ckpt}; continue with the same command plus --resume")

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
