"""The validation, training and data sections: whole Lightning runs of the blurpool variant,
timed per batch by :class:`BatchTimer`, against the same work without the measured part, and
the training step in channels-last against contiguous memory.

- validation: ``trainer.validate`` with ``val/consistency`` against the same without it (two
  extra forward passes: floor 3).
- training: ``trainer.fit`` against a plain PyTorch loop on the same network, data, batch size
  and optimizer (Lightning's overhead); the plain step of the small CNN and of ResNet-18 with
  the model and batches in channels-last memory against contiguous.
- data: the DataModule's ``heavy`` train loader against that training step (is augmentation
  the bottleneck?).
- variants: every variant's training step against the default variant's (what each strategy
  costs), with the floating-point operations of each step counted, the floor of its time.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync
from invariance_recipes.benchmarks.timing import alternate
from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.nets.build import build_net
from invariance_recipes.lightning_modules.shifts import CONSISTENCY_MAX_SHIFT
from invariance_recipes.lightning_modules.variants import VARIANTS, get_variant

VARIANT = "blurpool"  # the model of the validation and training rows
# Variants timed with a model option changed too: row name -> (variant, model options).
VARIANT_OPTIONS = {
    f"{name} (lps_hidden_divisor=8)": (name, {"lps_hidden_divisor": 8})
    for name in ("lps", "lps-circular")
}
# Backbone -> the input of its channels-last timing: the small CNN at the one-quadrant
# comparisons' RGB 48-px canvas, ResNet-18 at the CIFAR shape.
LAYOUT_INPUTS = {"small-cnn": (3, 48), "resnet18": (3, 32)}


class BatchTimer(Callback):
    """Seconds per batch from the start of batch ``skip`` to the end of the last batch.

    The span includes Lightning's work between batches but not the setup and teardown of a
    run, which do not grow with the number of batches.
    """

    def __init__(self, skip: int, sync: Callable[[], None]) -> None:
        self.skip, self.sync = skip, sync
        self.start: float | None = None
        self.end = 0.0
        self.batches = 0

    def _begin(self, batch_idx: int) -> None:
        if batch_idx == self.skip:
            self.sync()
            self.start = time.perf_counter()

    def _finish(self, batch_idx: int) -> None:
        self.sync()
        self.end, self.batches = time.perf_counter(), batch_idx + 1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._begin(batch_idx)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._finish(batch_idx)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._begin(batch_idx)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._finish(batch_idx)

    def seconds_per_batch(self) -> float:
        if self.start is None or self.batches <= self.skip:
            raise RuntimeError(f"the run had {self.batches} batches; the timer skips {self.skip}")
        return (self.end - self.start) / (self.batches - self.skip)


def validation_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """``trainer.validate`` with and without ``val/consistency``: same model, same batches."""
    data = _datamodule(cfg)
    loader = _memory_loader(data, cfg.batch_size, cfg.val_batches)
    with_metric = _model(data, consistency_every_n_epochs=1)
    # Measured every 2nd epoch: validate() runs epoch 0, so val/consistency is skipped.
    plain = _model(data, consistency_every_n_epochs=2)
    plain.load_state_dict(with_metric.state_dict())

    def run(model: InvarianceClassifier, expect_metric: bool) -> float:
        timer = BatchTimer(cfg.skip, device_sync(device))
        (metrics,) = _trainer(device, timer).validate(model, loader, verbose=False)
        if ("val/consistency" in metrics) != expect_metric:
            raise RuntimeError("val/consistency was not switched as the benchmark expects")
        return timer.seconds_per_batch()

    timings = alternate(
        {
            "validate + consistency": lambda: run(with_metric, True),
            "validate": lambda: run(plain, False),
        },
        cfg.run_rounds,
    )
    setting = _run_setting(data, cfg.batch_size, cfg.val_batches)
    note = f"consistency costs two extra forward passes (floor 3.0), offsets up to {CONSISTENCY_MAX_SHIFT} px"
    return [
        compare(timings, "validation", setting, "validate + consistency", "validate", 3.2, note)
    ]


def training_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Lightning's ``fit`` against a plain loop, and the augmenting loader against the step."""
    data = _datamodule(cfg)
    loader = _memory_loader(data, cfg.batch_size, cfg.train_batches)
    initial = _model(data).state_dict()
    augmenting = _datamodule(cfg, policy="heavy")

    def fresh_model() -> InvarianceClassifier:
        model = _model(data)
        model.load_state_dict(initial)
        return model

    def lightning() -> float:
        timer = BatchTimer(cfg.skip, device_sync(device))
        trainer = _trainer(device, timer, max_steps=cfg.train_batches, limit_val_batches=0)
        trainer.fit(fresh_model(), train_dataloaders=loader)
        return timer.seconds_per_batch()

    def plain() -> float:
        model = fresh_model().to(device).train()
        optimizer = model.configure_optimizers()  # AdamW with the model's settings
        return timed_batches(
            loader, cfg.skip, device, lambda x, y: _plain_step(model, optimizer, x, y)
        )

    def load() -> float:
        return timed_batches(
            _endless(augmenting.train_dataloader()), cfg.skip, device, None, cfg.train_batches
        )

    timings = alternate(
        {"Lightning fit": lightning, "plain PyTorch loop": plain, "train loader": load},
        cfg.run_rounds,
    )
    setting = _run_setting(data, cfg.batch_size, cfg.train_batches)
    workers = augmenting.hparams.num_workers
    step_rate = cfg.batch_size / timings.median("Lightning fit")
    load_rate = cfg.batch_size / timings.median("train loader")
    return [
        compare(
            timings,
            "training",
            setting,
            "Lightning fit",
            "plain PyTorch loop",
            1 / 0.95,
            "target: at least 0.95x the plain loop's images/s; AdamW, no LR schedule, "
            "progress bar and logger off",
        ),
        compare(
            timings,
            "data",
            f"heavy policy, batch {cfg.batch_size}, num_workers={workers} (default)",
            "train loader",
            "Lightning fit",
            1.0,
            f"loader {load_rate:,.0f} images/s vs training step {step_rate:,.0f} images/s",
        ),
    ]


def layout_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """The plain training step with model and batch in channels-last memory against
    contiguous: every variant's small CNN (the measurement behind each variant's
    ``channels_last`` default), and ResNet-18 with the default variant."""
    rows = [_layout_row(cfg, device, "small-cnn", name) for name in VARIANTS]
    return [*rows, _layout_row(cfg, device, "resnet18", VARIANT)]


def _layout_row(cfg: Config, device: torch.device, backbone: str, variant: str) -> Row:
    channels, side = LAYOUT_INPUTS[backbone]
    torch.manual_seed(0)
    net = build_net(
        backbone, in_channels=channels, num_classes=10, image_size=side, **model_options(variant)
    )
    initial = {key: value.clone() for key, value in net.state_dict().items()}
    x = torch.randn(cfg.layout_batch_size, channels, side, side)
    y = torch.randint(0, 10, (cfg.layout_batch_size,))

    def step_time(layout: torch.memory_format) -> float:
        net.load_state_dict(initial)
        model = net.to(device, memory_format=layout).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(images: Tensor, labels: Tensor) -> None:
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

        batch = x.to(device, memory_format=layout), y.to(device)
        batches = itertools.repeat(batch, cfg.layout_batches + cfg.skip)
        return timed_batches(batches, cfg.skip, device, step)

    timings = alternate(
        {
            "channels-last step": lambda: step_time(torch.channels_last),
            "contiguous step": lambda: step_time(torch.contiguous_format),
        },
        cfg.run_rounds,
    )
    rate = cfg.layout_batch_size / timings.median("contiguous step")
    last_rate = cfg.layout_batch_size / timings.median("channels-last step")
    setting = (
        f"{variant} {backbone}, {cfg.layout_batch_size}x{channels}x{side}x{side}, "
        f"{cfg.layout_batches} AdamW steps"
    )
    note = f"contiguous {rate:.3g} images/s, channels-last {last_rate:.3g} images/s"
    return compare(timings, "layout", setting, "channels-last step", "contiguous step", 1.0, note)


def variant_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """What each strategy costs: every variant's plain training step against the default
    variant's, on one batch of the default data held in memory, timed in alternating rounds.

    Every variant trains here at the same batch size, so images per second compare the
    networks; the seconds per epoch are the training split at that rate, loading excluded.
    """
    data = _datamodule(cfg)
    x, y = next(iter(_memory_loader(data, cfg.batch_size, 1)))
    batches = cfg.layout_batches + cfg.skip

    def step_time(model: InvarianceClassifier) -> float:
        optimizer = model.configure_optimizers()
        step = functools.partial(_plain_step, model, optimizer)
        return timed_batches(itertools.repeat((x, y), batches), cfg.skip, device, step)

    arms = {name: (name, {}) for name in VARIANTS} | VARIANT_OPTIONS
    models = {
        name: _model(data, variant, **options).to(device).train()
        for name, (variant, options) in arms.items()
    }
    timings = alternate(
        {name: functools.partial(step_time, model) for name, model in models.items()},
        cfg.run_rounds,
    )
    side, split = data.image_size, len(data.datasets["train"])
    setting = (
        f"small CNN, {cfg.batch_size}x{data.in_channels}x{side}x{side}, "
        f"{cfg.layout_batches} AdamW steps"
    )
    flops = {name: step_flops(model, x, y) for name, model in models.items()}
    rows = []
    for name in arms:
        rate = cfg.batch_size / timings.median(name)
        note = (
            f"{rate:,.0f} images/s: {split / rate:.3g} s per epoch of {split:,} images; "
            f"{flops[name] / 1e9:.3g} GFLOP a step, {flops[name] / flops[VARIANT]:.3g}x "
            f"{VARIANT}'s"
        )
        rows.append(compare(timings, "variants", setting, name, VARIANT, math.inf, note))
    return rows


def step_flops(model: InvarianceClassifier, x: Tensor, y: Tensor) -> int:
    """The floating-point operations of one forward and backward pass on ``(x, y)``, as
    PyTorch counts them (convolutions and matrix products; elementwise work is free): the
    arithmetic a step cannot avoid, against which its time says how much is overhead."""
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _plain_step(
    model: InvarianceClassifier, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor
) -> None:
    """The work of ``training_step`` and of Lightning's automatic optimization, by hand."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    model.train_acc.update(logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def timed_batches(
    batches: Iterator[tuple[Tensor, Tensor]] | DataLoader,
    skip: int,
    device: torch.device,
    step: Callable[[Tensor, Tensor], None] | None,
    limit: int | None = None,
) -> float:
    """Seconds per batch from batch ``skip`` on, moving each batch to the device and then
    running ``step`` on it (``None``: only load)."""
    sync = device_sync(device)
    start, count = time.perf_counter(), 0
    for index, (x, y) in enumerate(itertools.islice(batches, limit)):
        if index == skip:
            sync()
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if step is not None:
            step(x, y)
        count = index + 1
    sync()
    if count <= skip:
        raise RuntimeError(f"only {count} batches came; the timing skips {skip}")
    return (time.perf_counter() - start) / (count - skip)


def _endless(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of epoch after epoch, as a long training run draws them."""
    while True:
        yield from loader


def _datamodule(cfg: Config, policy: str | None = None) -> TranslationDataModule:
    data = {
        key.removeprefix("data."): value
        for key, value in get_variant(VARIANT).defaults().items()
        if key.startswith("data.")
    }
    if policy is not None:
        data["policy"] = policy
    module = TranslationDataModule(**data, batch_size=cfg.batch_size, max_samples=cfg.max_samples)
    module.setup()
    return module


def _model(
    data: TranslationDataModule, variant: str = VARIANT, **options: object
) -> InvarianceClassifier:
    return InvarianceClassifier(
        **model_options(variant),
        **options,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        fill_value=data.fill_value,
        scheduler="none",
    )


def model_options(variant: str) -> dict[str, Any]:
    """The variant's own ``--model.*`` defaults, as InvarianceClassifier keywords."""
    return {
        key.removeprefix("model."): value
        for key, value in get_variant(variant).defaults().items()
        if key.startswith("model.")
    }


def _memory_loader(data: TranslationDataModule, batch_size: int, batches: int) -> DataLoader:
    """``batches`` fixed batches of validation images held in memory, so that the runs
    compared measure the model and the framework, not the loading."""
    images, labels = (torch.cat(parts) for parts in zip(*data.val_dataloader(), strict=True))
    repeats = -(-batch_size * batches // len(images))
    images, labels = images.repeat(repeats, 1, 1, 1), labels.repeat(repeats)
    count = batch_size * batches
    return DataLoader(TensorDataset(images[:count], labels[:count]), batch_size=batch_size)


def _trainer(device: torch.device, timer: BatchTimer, **options: object) -> L.Trainer:
    return L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=False,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **options,
    )


def _run_setting(data: TranslationDataModule, batch_size: int, batches: int) -> str:
    side = data.image_size
    return (
        f"{VARIANT} small CNN, {batch_size}x{data.in_channels}x{side}x{side}, "
        f"{batches} batches in memory"
    )
