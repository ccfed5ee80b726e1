"""Performance recipe: ratios measured side by side in one process, written as CSV and Markdown.

    python recipes/benchmark.py                  # CPU; writes docs/benchmarks/cpu.{csv,md}
    python recipes/benchmark.py --device cuda    # adds bfloat16 rows; writes cuda.{csv,md}
    python recipes/benchmark.py --quick          # tiny shapes: a smoke test of this script
    python recipes/benchmark.py --only blurpool translate --rounds 21

Every row compares one of ours with a baseline timed in the same rounds (see ``timing.py``):
``ratio`` is ours' time per call over the baseline's, the median over rounds (lower is
faster), ``spread`` the interquartile range of the per-round ratios, and ``target`` the
largest ratio the project aims for on CPU. The baselines:

- blurpool: forward + backward of BlurPool against the layers users would otherwise pick
  (timm ``BlurPool2d``, kornia ``BlurPool2D``/``MaxBlurPool2D``, antialiased-cnns
  ``BlurPool``; rows are skipped with a note when one is not installed) and against the
  memory-bound floor, a stride-2 ``avg_pool2d`` of the same input.
- translate: batched per-sample ``translate`` against ``x.clone()`` (the memory-copy floor)
  and a per-sample Python loop, at batch 256.
- validation: ``trainer.validate`` of the blurpool variant with ``val/consistency`` against
  the same without it (two extra forward passes: floor 3).
- training: ``trainer.fit`` against a plain PyTorch loop on the same network, data, batch size
  and optimizer (Lightning's overhead), and the DataModule's ``heavy`` train loader against
  that training step (is augmentation the bottleneck?).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from datamodules import TranslationDataModule
from invariance_recipes.benchmarks.timing import Timings, alternate, interleaved
from lightning_modules import InvarianceClassifier
from lightning_modules.layers import BlurPool2d, MaxBlurPool2d
from lightning_modules.shifts import random_offsets, translate
from lightning_modules.variants import get_variant

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("blurpool", "translate", "validation", "training")
PEERS = {"timm": "timm.layers", "kornia": "kornia.filters", "antialiased-cnns": "antialiased_cnns"}
VARIANT = "blurpool"  # the model of the validation and training rows
MAX_SHIFT = 4  # the offsets of translate and of val/consistency (the model's default)
COLUMNS = (
    "section", "setting", "ours", "baseline", "ours_ms", "baseline_ms",
    "ratio", "ratio_q1", "ratio_q3", "target", "holds", "note",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one benchmark run."""

    blur_shapes: tuple[tuple[int, int, int, int], ...]
    translate_shape: tuple[int, int, int, int]
    batch_size: int  # validation, training and loader batches
    val_batches: int
    train_batches: int
    skip: int  # batches at the start of every run left out of its timing (warm-up)
    rounds: int  # interleaved rounds of the layer and translation timings
    run_rounds: int  # alternating trainer runs
    min_block: float  # seconds of back-to-back calls per layer timing
    max_samples: int | None  # cap on the DataModule's splits


FULL = Config(
    blur_shapes=((128, 64, 32, 32), (32, 256, 56, 56)),
    translate_shape=(256, 3, 32, 32),
    batch_size=128,
    val_batches=12,
    train_batches=30,
    skip=3,
    rounds=15,
    run_rounds=7,
    min_block=0.05,
    max_samples=None,
)
QUICK = Config(
    blur_shapes=((4, 8, 16, 16), (2, 16, 12, 12)),
    translate_shape=(256, 1, 12, 12),
    batch_size=32,
    val_batches=3,
    train_batches=4,
    skip=1,
    rounds=3,
    run_rounds=1,
    min_block=0.002,
    max_samples=200,
)


@dataclass(frozen=True)
class Row:
    """One comparison: ours against a baseline timed in the same rounds."""

    section: str
    setting: str
    ours: str
    baseline: str
    ours_ms: float
    baseline_ms: float
    ratio: float  # median over rounds of ours' time / the baseline's time
    ratio_q1: float
    ratio_q3: float
    target: float  # the ratio should be at most this
    note: str = ""

    @property
    def holds(self) -> bool:
        return self.ratio <= self.target


def compare(
    timings: Timings,
    section: str,
    setting: str,
    ours: str,
    baseline: str,
    target: float,
    note: str = "",
) -> Row:
    ratio, q1, q3 = timings.ratio(ours, baseline)
    return Row(
        section,
        setting,
        ours,
        baseline,
        timings.median(ours) * 1e3,
        timings.median(baseline) * 1e3,
        ratio,
        q1,
        q3,
        target,
        note,
    )


# --- BlurPool forward + backward --------------------------------------------------------------


def blurpool_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Forward + backward of ours, the peers at matching settings and the avg-pool floor."""
    peers = {name: _import_peer(name, notes) for name in PEERS}
    dtypes = [torch.float32] + ([torch.bfloat16] if device.type == "cuda" else [])
    rows = []
    for shape, dtype in itertools.product(cfg.blur_shapes, dtypes):
        layers, comparisons = _blur_candidates(shape[1], peers)
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        steps = {name: _forward_backward(layer.to(device, dtype), x) for name, layer in layers}
        timings = interleaved(steps, cfg.rounds, cfg.min_block, _sync(device))
        setting = f"{'x'.join(map(str, shape))} {str(dtype).removeprefix('torch.')}"
        for ours, baseline, target, note in comparisons:
            if baseline in steps:
                rows.append(compare(timings, "blurpool", setting, ours, baseline, target, note))
    return rows


def _blur_candidates(
    channels: int, peers: dict[str, object | None]
) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, str, float, str]]]:
    """The layers to time (name, module) and the comparisons (ours, baseline, target, note)."""
    ours4, ours3, ours4z = "BlurPool2d(4, reflect)", "BlurPool2d(3, reflect)", "BlurPool2d(4, zero)"
    maxr, maxz = "MaxBlurPool2d(2, 4, reflect)", "MaxBlurPool2d(2, 4, zero)"
    floor = "avg_pool2d(2)"
    layers: list[tuple[str, nn.Module]] = [
        (ours4, BlurPool2d(channels, 4, 2, "reflect")),
        (ours3, BlurPool2d(channels, 3, 2, "reflect")),
        (ours4z, BlurPool2d(channels, 4, 2, "zero")),
        (maxr, MaxBlurPool2d(channels, 2, 4, 2, "reflect")),
        (maxz, MaxBlurPool2d(channels, 2, 4, 2, "zero")),
        (floor, nn.AvgPool2d(2)),
    ]
    same = "same filter, stride and padding"
    comparisons = [(ours4, floor, 2.0, "memory-bound floor: stride-2 average pooling")]
    aa, timm, kornia = peers["antialiased-cnns"], peers["timm"], peers["kornia"]
    if aa is not None:
        layers += [
            ("antialiased-cnns BlurPool(4)", aa.BlurPool(channels, "reflect", 4, 2)),
            ("antialiased-cnns BlurPool(3)", aa.BlurPool(channels, "reflect", 3, 2)),
            (
                "antialiased-cnns MaxPool2d(2, 1) + BlurPool(4)",
                nn.Sequential(nn.MaxPool2d(2, 1), aa.BlurPool(channels, "reflect", 4, 2)),
            ),
        ]
        comparisons += [
            (ours4, "antialiased-cnns BlurPool(4)", 1.0, same),
            (ours3, "antialiased-cnns BlurPool(3)", 1.0, same),
            (
                maxr,
                "antialiased-cnns MaxPool2d(2, 1) + BlurPool(4)",
                1.0,
                "as in antialiased-cnns' models: its max-pool is unpadded (one row and "
                "column fewer)",
            ),
        ]
    if timm is not None:
        layers += [
            ("timm BlurPool2d(3)", timm.BlurPool2d(channels, 3, 2, "reflect")),
            ("timm BlurPool2d(4)", timm.BlurPool2d(channels, 4, 2, "reflect")),
        ]
        comparisons += [
            (ours3, "timm BlurPool2d(3)", 1.0, same),
            (
                ours4,
                "timm BlurPool2d(4)",
                1.0,
                "timm pads filt 4 by 2 px on every side (one more output row and column)",
            ),
        ]
    if kornia is not None:
        layers += [
            ("kornia BlurPool2D(4)", kornia.BlurPool2D(4, 2)),
            ("kornia MaxBlurPool2D(4)", kornia.MaxBlurPool2D(4, 2, max_pool_size=2)),
        ]
        comparisons += [
            (ours4z, "kornia BlurPool2D(4)", 1.0, f"{same} (kornia pads with zeros only)"),
            (
                maxz,
                "kornia MaxBlurPool2D(4)",
                1.0,
                "kornia's max-pool is unpadded (one row and column fewer)",
            ),
        ]
    return layers, comparisons


def _forward_backward(layer: nn.Module, x: Tensor) -> Callable[[], object]:
    grad = torch.randn_like(layer(x))
    return lambda: torch.autograd.grad(layer(x), x, grad)


def _import_peer(name: str, notes: list[str]) -> object | None:
    try:
        return import_module(PEERS[name])
    except ImportError:
        notes.append(
            f"{name} is not installed: its rows are skipped "
            f"(pip install {name}, or the project's `bench` extra)."
        )
        return None


# --- batched translation ----------------------------------------------------------------------


def translate_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """``translate`` against the copy floor and per-sample loops, offsets drawn on the device."""
    x = torch.rand(cfg.translate_shape, device=device)
    generator = torch.Generator().manual_seed(0)
    offsets = random_offsets(len(x), MAX_SHIFT, generator, device=device)
    steps = {
        "translate(zero)": lambda: translate(x, offsets, "zero"),
        "translate(circular)": lambda: translate(x, offsets, "circular"),
        "x.clone()": x.clone,
        "loop: slice copy per sample": lambda: per_sample_slices(x, offsets),
        "loop: torch.roll per sample": lambda: per_sample_rolls(x, offsets),
    }
    timings = interleaved(steps, cfg.rounds, cfg.min_block, _sync(device))
    setting = f"{'x'.join(map(str, x.shape))}, offsets up to {MAX_SHIFT} px"

    def versus_loop(ours: str, loop: str) -> Row:
        clones = timings.median(loop) / timings.median("x.clone()")
        note = f"target: 20x faster; the loop itself takes {clones:.1f}x a clone"
        return compare(timings, "translate", setting, ours, loop, 0.05, note)

    return [
        compare(timings, "translate", setting, "translate(zero)", "x.clone()", 2.0),
        versus_loop("translate(zero)", "loop: slice copy per sample"),
        versus_loop("translate(circular)", "loop: torch.roll per sample"),
    ]


def per_sample_slices(x: Tensor, offsets: Tensor) -> Tensor:
    """``translate(x, offsets, "zero")`` as a per-sample loop: one slice copy per image."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            i, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def per_sample_rolls(x: Tensor, offsets: Tensor) -> Tensor:
    """``translate(x, offsets, "circular")`` as a per-sample loop of ``torch.roll``."""
    rolled = [
        torch.roll(image, (dy, dx), (-2, -1))
        for image, (dy, dx) in zip(x, offsets.tolist(), strict=True)
    ]
    return torch.stack(rolled)


# --- validation, training and the data pipeline ----------------------------------------------


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
        timer = BatchTimer(cfg.skip, _sync(device))
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
    note = f"consistency costs two extra forward passes (floor 3.0), offsets up to {MAX_SHIFT} px"
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
        timer = BatchTimer(cfg.skip, _sync(device))
        trainer = _trainer(device, timer, max_steps=cfg.train_batches, limit_val_batches=0)
        trainer.fit(fresh_model(), train_dataloaders=loader)
        return timer.seconds_per_batch()

    def plain() -> float:
        model = fresh_model().to(device).train()
        optimizer = model.configure_optimizers()  # AdamW with the model's settings
        return _timed_batches(
            loader, cfg.skip, device, lambda x, y: _plain_step(model, optimizer, x, y)
        )

    def load() -> float:
        return _timed_batches(
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


def _timed_batches(
    batches: Iterator[tuple[Tensor, Tensor]] | DataLoader,
    skip: int,
    device: torch.device,
    step: Callable[[Tensor, Tensor], None] | None,
    limit: int | None = None,
) -> float:
    """Seconds per batch from batch ``skip`` on, moving each batch to the device and then
    running ``step`` on it (``None``: only load)."""
    sync = _sync(device)
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


def _model(data: TranslationDataModule, **options: object) -> InvarianceClassifier:
    model = {
        key.removeprefix("model."): value
        for key, value in get_variant(VARIANT).defaults().items()
        if key.startswith("model.")
    }
    return InvarianceClassifier(
        **model,
        **options,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        fill_value=data.fill_value,
        scheduler="none",
    )


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


# --- report -----------------------------------------------------------------------------------


def describe_machine(device: torch.device) -> str:
    """CPU model, cores and threads, the GPU if used, and the versions that set the numbers."""
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    parts = [f"{_cpu_model()}, {os.cpu_count()} logical cores, {threads} torch thread{plural}"]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    parts += [f"torch {torch.__version__}", f"lightning {L.__version__}"]
    parts += [f"{name} {_version(name)}" for name in PEERS]
    parts.append(f"Python {platform.python_version()}")
    return "; ".join(parts)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            values = asdict(row) | {"holds": "yes" if row.holds else "no"}
            for key in ("ours_ms", "baseline_ms", "ratio", "ratio_q1", "ratio_q3", "target"):
                values[key] = f"{values[key]:.4g}"
            writer.writerow(values)


def markdown(rows: list[Row], command: str, machine: str, notes: list[str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}",
        "",
        "ratio = ours' time per call / the baseline's, the median over interleaved rounds "
        "(lower is faster); spread = interquartile range of the per-round ratios; target = "
        "the largest ratio aimed for.",
        "",
        "| section | setting | ours | baseline | ours ms | baseline ms | ratio | spread "
        "| target | holds? | note |",
        "|---|---|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for row in rows:
        cells = [
            row.section,
            row.setting,
            row.ours,
            row.baseline,
            f"{row.ours_ms:.3g}",
            f"{row.baseline_ms:.3g}",
            f"{row.ratio:.3g}",
            f"{row.ratio_q1:.3g}-{row.ratio_q3:.3g}",
            f"<= {row.target:.3g}",
            "yes" if row.holds else "**no**",
            row.note,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Config, torch.device, list[str]], list[Row]]] = {
    "blurpool": blurpool_rows,
    "translate": translate_rows,
    "validation": validation_rows,
    "training": training_rows,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the project's fast paths against their baselines, side by side.",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few rounds")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks",
        help="folder for DEVICE.csv and DEVICE.md (DEVICE-quick.* with --quick)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run"
    )
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per timing")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


def run(argv: list[str]) -> list[Row]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda: CUDA is not available on this machine; run with --device cpu"
        )
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file: pass a folder for the CSV and Markdown")
    for option in ("rounds", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option} {value}: pass a positive integer")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        cfg = Config(**{**asdict(cfg), "rounds": args.rounds, "run_rounds": args.rounds})
    device = torch.device(args.device)
    _quiet()
    machine = describe_machine(device)
    print(f"machine: {machine}", flush=True)
    rows: list[Row] = []
    notes: list[str] = []
    for section in args.only:
        print(f"[{section}] ...", flush=True)
        new = RUNNERS[section](cfg, device, notes)
        for row in new:
            print(f"  {row.ours} vs {row.baseline} ({row.setting}): {row.ratio:.3g} "
                  f"(target <= {row.target:.3g}: {'holds' if row.holds else 'MISSED'})",
                  flush=True)  # fmt: skip
        rows += new
    stem = args.device + ("-quick" if args.quick else "")
    command = "python recipes/benchmark.py" + ("" if not argv else " " + " ".join(argv))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / f"{stem}.csv")
    table = markdown(rows, command, machine, notes)
    (args.out / f"{stem}.md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {args.out / stem}.csv and .md")
    return rows


def _quiet() -> None:
    """Keep Lightning's per-run banners and hints out of the report."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _sync(device: torch.device) -> Callable[[], None]:
    """Wait for queued CUDA work, so a timing covers it; nothing to wait for on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def main() -> int:
    try:
        run(sys.argv[1:])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
