"""The one LightningModule shared by every variant.

The network is built from plain options through :func:`invariance_recipes.lightning_modules.nets.build_net`,
so a checkpoint's hyperparameters rebuild the exact model, and two variants differ only
in the options their preset sets. Metrics are separate objects per split and are logged
as metric objects under names every variant shares, so runs line up in one dashboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics.classification import MulticlassAccuracy

from invariance_recipes.lightning_modules.metrics import (
    ProtocolReport,
    ShiftConsistency,
    ShiftReport,
)
from invariance_recipes.lightning_modules.metrics.protocols import FAST_PROTOCOLS
from invariance_recipes.lightning_modules.metrics.report import REPORTED_MODES
from invariance_recipes.lightning_modules.nets import DEFAULTS, NetOptions, build_net
from invariance_recipes.lightning_modules.nets.downsample import DOWNSAMPLERS
from invariance_recipes.lightning_modules.rng_state import collect_rng_states, restore_rng_states
from invariance_recipes.lightning_modules.shifts import (
    CONSISTENCY_MAX_SHIFT,
    offset_sweep,
    sample_offset_pair,
    translate,
)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "step", "none")


class InvarianceClassifier(L.LightningModule):
    """Image classifier whose network, optimizer and shift evaluation are plain options.

    Args:
        num_classes, in_channels, image_size: taken from the DataModule (linked by the CLI).
        backbone, downsample, head, padding_mode, widths, blocks_per_stage, mlp_hidden,
            dropout, filt_size, lps_hidden_divisor: network options, see :func:`invariance_recipes.lightning_modules.nets.build_net`.
        optimizer: ``adamw`` or ``sgd`` (with Nesterov momentum).
        lr, weight_decay, momentum: optimizer settings.
        scheduler: ``cosine``, ``onecycle``, ``step`` or ``none``; stepped every batch.
        warmup_epochs: linear warm-up before the schedule (``onecycle`` has its own).
        consistency_max_shift: max offset (pixels, per axis) of the shift-consistency pairs.
        consistency_mode: shift mode of ``val/consistency`` (``zero`` moves the object on
            its background; the test reports ``zero`` and ``circular``).
        consistency_every_n_epochs: measure ``val/consistency`` every N epochs (and on the
            last epoch); it costs two extra forward passes per validation batch.
        curve_max_shift: the test's accuracy-vs-offset curve sweeps the diagonal from
            ``-curve_max_shift`` to ``+curve_max_shift``.
        fill_value: value of an empty pixel per channel (from the DataModule), used for
            the pixels a ``zero``-mode shift vacates.
        shift_seed: seed of the per-sample offsets, which depend only on the sample and
            this seed, so the numbers do not change with batch size or device count.
        protocols: named protocols (``invariance_recipes.lightning_modules.metrics.PROTOCOLS``) the test also
            reports, each under ``test/<protocol>/<metric>``; crop protocols need a canvas
            larger than ``image_size`` (``--data.view_size``).
        channels_last: keep the network's weights and its inputs in channels-last memory;
            ``None``: the downsampling method's measured choice (``Downsampler.channels_last``,
            from ``python recipes/benchmark.py --only layout``), resolved here and saved in
            the checkpoint. The choice changes the float rounding of every step.
        compile: compile the network with ``torch.compile`` (TorchInductor; on CPU it needs
            a C++ compiler): the first step of each input shape and mode waits for the
            compilation, later steps run fused kernels. ``None``: the downsampling
            method's measured choice (``Downsampler.compile``, from ``python
            recipes/benchmark.py --only compile``), saved in the checkpoint. The weights and
            their names are the same either way; the float rounding is not.
        micro_batch: images per forward pass: a larger batch runs in parts of this size and
            their logits are concatenated, so each layer's maps stay in the CPU's caches
            (evaluating 512 images in parts of 16-64 was about twice as fast per image).
            Only where the parts compute the same function as the whole batch: always in
            evaluation, in training only when no layer couples the images of a batch
            (BatchNorm on batch statistics). ``0``: never split. ``None``: the method's
            measured budget of first-stage values, ``Downsampler.micro_batch_values //
            (widths[0] * image_size**2)`` images, saved in the checkpoint. The float
            rounding may change with it.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 32,
        backbone: str = DEFAULTS.backbone,
        downsample: str = DEFAULTS.downsample,
        head: str = DEFAULTS.head,
        padding_mode: str = DEFAULTS.padding_mode,
        widths: Sequence[int] = DEFAULTS.widths,
        blocks_per_stage: int = DEFAULTS.blocks_per_stage,
        mlp_hidden: Sequence[int] = DEFAULTS.mlp_hidden,
        dropout: float = DEFAULTS.dropout,
        filt_size: int = DEFAULTS.filt_size,
        lps_hidden_divisor: int = DEFAULTS.lps_hidden_divisor,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        momentum: float = 0.9,
        scheduler: str = "cosine",
        warmup_epochs: float = 1.0,
        consistency_max_shift: int = CONSISTENCY_MAX_SHIFT,
        consistency_mode: str = "zero",
        consistency_every_n_epochs: int = 1,
        curve_max_shift: int = 8,
        fill_value: Sequence[float] | float = 0.0,
        shift_seed: int = 0,
        protocols: Sequence[str] = FAST_PROTOCOLS,
        channels_last: bool | None = None,
        compile: bool | None = None,
        micro_batch: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r} (--model.optimizer): choose one of "
                f"{', '.join(OPTIMIZERS)}"
            )
        if scheduler not in SCHEDULERS:
            raise ValueError(
                f"unknown scheduler {scheduler!r} (--model.scheduler): choose one of "
                f"{', '.join(SCHEDULERS)}"
            )
        if consistency_every_n_epochs < 1:
            raise ValueError(
                f"consistency_every_n_epochs must be >= 1, got {consistency_every_n_epochs} "
                "(--model.consistency_every_n_epochs)"
            )
        if micro_batch is not None and (isinstance(micro_batch, bool) or micro_batch < 0):
            raise ValueError(
                f"micro_batch must be a number of images >= 0 (0: never split), got "
                f"{micro_batch!r} (--model.micro_batch)"
            )
        self.save_hyperparameters()
        # the flat CLI signature above is built into one NetOptions, once
        self.net_options = NetOptions(**{f.name: self.hparams[f.name] for f in fields(NetOptions)})
        self.net = build_net(
            self.net_options,
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
        )
        if channels_last is None:
            self.hparams["channels_last"] = DOWNSAMPLERS[downsample].channels_last
        if self.hparams["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        if micro_batch is None:
            values = DOWNSAMPLERS[downsample].micro_batch_values
            self.hparams["micro_batch"] = max(1, values // (widths[0] * image_size**2))
        if compile is None:
            self.hparams["compile"] = DOWNSAMPLERS[downsample].compile
        if self.hparams["compile"]:
            self.net.compile()  # in place: the state dict keeps the network's own names
        fill = float(fill_value) if isinstance(fill_value, (int, float)) else list(fill_value)
        self.register_buffer("fill", torch.tensor(fill, dtype=torch.float32), persistent=False)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_consistency = ShiftConsistency(consistency_max_shift, consistency_mode)
        self.test_report = ShiftReport(
            max_shift=consistency_max_shift,
            modes=REPORTED_MODES,
            sweep=offset_sweep(curve_max_shift, "diagonal"),
            fill=fill,
            seed=shift_seed,
        )
        # Test batches are whole canvases; the network sees their centre image_size window.
        self.protocol_report = ProtocolReport(tuple(protocols), view_size=image_size, fill=fill)
        self._pending_rng_state: dict[str, Any] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        size = self.hparams.micro_batch
        if not size or len(x) <= size or self.couples_images():
            return self.net(x)
        return torch.cat([self.net(part) for part in x.split(size)])

    def couples_images(self) -> bool:
        """Whether a BatchNorm normalizes with the statistics of the batch it is given: the
        output for one image then depends on the others (looked up on every call, since a
        strategy may swap the modules, e.g. for SyncBatchNorm)."""
        return any(
            isinstance(m, _BatchNorm) and (m.training or m.running_mean is None)
            for m in self.net.modules()
        )

    # --- steps ---------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        if self._measure_consistency():
            hp = self.hparams
            offsets = sample_offset_pair(x, hp.consistency_max_shift, hp.shift_seed)
            pair = translate(x.repeat(2, 1, 1, 1), offsets, hp.consistency_mode, self.fill)
            self.val_consistency(*self(pair).chunk(2))
            self.log("val/consistency", self.val_consistency, on_epoch=True, prog_bar=True)

    def _measure_consistency(self) -> bool:
        every = self.hparams.consistency_every_n_epochs
        trainer, epoch = self.trainer, self.current_epoch
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= epoch + 1
        # a step budget: the last validation is the one after which no whole epoch fits
        last_steps = 0 < trainer.max_steps < trainer.global_step + trainer.num_training_batches
        return (epoch + 1) % every == 0 or last_epoch or last_steps or trainer.sanity_checking

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        canvas, y = batch
        x = self.protocol_report.view(canvas)
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.test_report.update(self, x, y, logits=logits)
        for name, metric in self.test_report.metrics.items():
            self.log(f"test/{name}", metric, on_epoch=True)
        self.protocol_report.update(self, canvas, y, logits=logits)
        for key, metric in self.protocol_report.scalar_metrics().items():
            self.log(f"test/{key}", metric, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        """Log every curve point; the reports compute and reset their own curves.

        The values are already reduced over processes by the metrics, so they are equal on
        all of them: the max of equal values syncs without the rounding a mean could add.
        """
        synced = {"sync_dist": True, "reduce_fx": "max"}
        offsets, values = self.test_report.take_curve()
        for (dy, dx), value in zip(offsets.tolist(), values, strict=True):
            self.log(f"test/acc_at_shift/{dy:+d}_{dx:+d}", value, **synced)
        for key, (offsets, values) in self.protocol_report.take_curves().items():
            self.log(
                f"test/{key.replace('acc_vs_offset', 'mean_acc')}", values.float().mean(), **synced
            )
            for (dy, dx), value in zip(offsets.tolist(), values, strict=True):
                self.log(f"test/{key}/{dy:+d}_{dx:+d}", value, **synced)

    # --- optimization --------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.parameters()
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, nesterov=True, weight_decay=hp.weight_decay
            )
        else:
            optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        # from the loader, not max_epochs: a budget in steps (--trainer.max_steps) has none,
        # and then Lightning has not sized the loader yet
        if not math.isfinite(self.trainer.num_training_batches):
            self.trainer.fit_loop.setup_data()
        batches = self.trainer.num_training_batches
        steps_per_epoch = (
            batches / self.trainer.accumulate_grad_batches if math.isfinite(batches) else total
        )
        warmup = min(total - 1, round(hp.warmup_epochs * steps_per_epoch))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": _schedule(optimizer, hp, total, warmup),
                "interval": "step",
            },
        }

    # --- exact resumption ----------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the RNG states, so a resumed run draws the same augmentation and dropout."""
        checkpoint["rng_states"] = collect_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied when training restarts, after the sanity check has consumed randomness.
        self._pending_rng_state = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        """Restore a resumed run's RNG states before its first step. Not at the epoch's start:
        Lightning skips ``on_train_epoch_start`` when it restarts mid-epoch, so the states
        would wait for the next epoch and the draws in between (Gumbel noise, dropout) would
        differ from the uninterrupted run's. Nothing draws between here and the first step:
        the loaders have their own generators and the augmentation is keyed."""
        if self._pending_rng_state is not None:
            restore_rng_states(self._pending_rng_state)
            self._pending_rng_state = None


def _schedule(
    optimizer: torch.optim.Optimizer, hp: Any, total: int, warmup: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step learning-rate schedule with a linear warm-up."""
    sched = torch.optim.lr_scheduler
    if hp.scheduler == "onecycle":
        return sched.OneCycleLR(
            optimizer, max_lr=hp.lr, total_steps=total, pct_start=max(warmup, 1) / total
        )
    rest = total - warmup
    if hp.scheduler == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=max(1, rest))
    else:  # step: divide by 10 at 1/2 and 3/4 of the remaining steps
        main = sched.MultiStepLR(
            optimizer, milestones=[math.ceil(rest / 2), math.ceil(3 * rest / 4)], gamma=0.1
        )
    if warmup == 0:
        return main
    ramp = sched.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup)
    return sched.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
