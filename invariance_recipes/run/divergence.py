"""A diverged run must fail, not report numbers: a model that predicts one class for every
input scores a perfect shift consistency, which in a comparison table looks like the best
result instead of a broken run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch.nn.utils import get_total_norm

from invariance_recipes.run.errors import Diverged


class DivergenceGuard(L.Callback):
    """Stop with :class:`Diverged` at the first step whose loss, or the parameters after
    it, are not finite (on every rank at once)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        what = ""
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            what = "the training loss"
        elif not bool(torch.isfinite(get_total_norm(list(pl_module.parameters())))):
            what = "the model's parameters"
        bad = bool(what)
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            lr = pl_module.hparams.get("lr")
            raise Diverged(
                f"training diverged at step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}): {what or 'the training loss'} became NaN or "
                f"infinite; lower the learning rate (--model.lr {lr} now, try {lr / 10:g})"
            )
