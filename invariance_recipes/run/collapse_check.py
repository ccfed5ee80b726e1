"""Test a run's predictions for a collapse (:mod:`.collapse`) while it is tested, so a model
that did not learn fails instead of reporting a perfect-looking shift consistency."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from invariance_recipes.run.collapse import collapse_reason


class CollapseCheck(L.Callback):
    """Count the predicted classes of the clean test images (summed over processes); after
    testing, ``reason`` says why the predictions are a collapse, or is None."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._counts: torch.Tensor | None = None
        self._correct = 0

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reason, self._counts, self._correct = None, None, 0

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        canvas, labels = batch
        view = getattr(pl_module, "protocol_report", None)
        x = view.view(canvas) if view is not None else canvas  # what test_step scores
        predicted = pl_module(x).argmax(dim=1)
        counts = torch.bincount(predicted, minlength=pl_module.hparams.num_classes).cpu()
        self._counts = counts if self._counts is None else self._counts + counts
        self._correct += int((predicted == labels).sum())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = pl_module.hparams.num_classes
        counts = self._counts if self._counts is not None else torch.zeros(num_classes)
        # the class counts and the number correct, summed over processes in one reduction
        summed = torch.cat([counts.double(), torch.tensor([float(self._correct)])])
        if trainer.world_size > 1:
            summed = trainer.strategy.reduce(summed.to(pl_module.device), reduce_op="sum")
        totals = [round(v) for v in summed[:-1].tolist()]
        images = sum(totals)
        accuracy = float(summed[-1]) / images if images else 0.0
        self.reason = collapse_reason(totals, accuracy, num_classes)
