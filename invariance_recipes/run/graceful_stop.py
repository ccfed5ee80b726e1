"""Stopping loses no work and never passes as success.

- The first Ctrl-C (SIGINT) during training finishes the current epoch, whose ``last.ckpt``
  is saved as usual, and stops: ``--resume`` then continues exactly.
- SIGTERM (what schedulers send before preempting) and a second Ctrl-C stop at the end of
  the current batch; during training the state is saved to ``interrupted.ckpt``, never over
  the epoch-boundary ``last.ckpt``.
- During testing any of them stops at the end of the batch; training is complete then.
- SIGUSR1 (what SLURM sends before a time limit) stops like SIGTERM, with exit code 138; in
  a SLURM batch job the stopped run then requeues the job (``invariance_recipes.run.requeue``).
  This handler is installed before Lightning's, which then leaves SIGUSR1 alone: its own saves
  inside the signal handler and can hang a DDP job.

The signal handler only records the signal; the stop happens at a batch boundary (on every
rank at the same batch), where the model and optimizer states are consistent.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from invariance_recipes.run.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class GracefulStop(L.Callback):
    """Turn SIGINT and SIGTERM into stops at epoch or batch boundaries; see the module doc."""

    def __init__(self, interrupted_ckpt: str | Path) -> None:
        self.interrupted_ckpt = Path(interrupted_ckpt)
        self.stop_after_epoch = False  # the first Ctrl-C during training
        self.stop_now: int | None = None  # the signal that asks to stop at the next batch end
        self.saved: Path | None = None  # interrupted.ckpt, once written
        self._in_loop = False  # inside fit or test, where batch ends come
        self._fitting = False
        self._trained = False  # at least one optimizer step taken in this process
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle the signals from now on (the main thread only can)."""
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def ignore_sigterm(self) -> None:
        """Ignore SIGTERM from now on, also after :meth:`uninstall` (the caller's handler comes
        back when the process has said what happened): for a stopped run whose state is saved
        and whose SLURM job is requeued, since SLURM signals the job's processes while they
        still write their record. Handled, the signal cut that short and left "stopped while
        starting; nothing to resume" in the job's log instead of the requeue."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._previous.pop(signal.SIGTERM, None)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self._fitting and not self.stop_after_epoch:
            self.stop_after_epoch = True
            rank_zero_info("\nCtrl-C: stopping after this epoch (press again to stop now) ...")
            return
        self.stop_now = signum
        if not self._in_loop:  # setting up, or between fit and test: nothing to save
            raise Interrupted(signum)
        rank_zero_info(f"\n{signal.Signals(signum).name}: stopping after this batch ...")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_loop = self._fitting = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            print(
                "training: press Ctrl-C once to stop after this epoch, twice to stop now",
                flush=True,
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_loop = self._fitting = False

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_loop = True

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._in_loop = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._trained = True
        self._stop_if_asked(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_asked(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._stop_if_asked(trainer)

    def _stop_if_asked(self, trainer: L.Trainer) -> None:
        asked = self.stop_now is not None
        if trainer.world_size > 1:  # a signal may reach only some ranks: all stop together
            asked = trainer.strategy.reduce_boolean_decision(asked, all=False)
        if asked:
            raise Interrupted(self.stop_now or signal.SIGTERM)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stop = self.stop_after_epoch
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """Save the mid-epoch state of a stopped training; errors save nothing (the last
        epoch-boundary checkpoint stays the one to resume from)."""
        self._in_loop = False
        stopped = isinstance(exception, (Interrupted, SIGTERMException))
        if stopped and trainer.state.fn == TrainerFn.FITTING and self._trained:
            trainer.save_checkpoint(self.interrupted_ckpt, weights_only=False)  # a full state
            self.saved = self.interrupted_ckpt
