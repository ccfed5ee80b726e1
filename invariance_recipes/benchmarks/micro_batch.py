"""The micro-batch section: every variant's forward passes in parts of its default
``micro_batch`` against the whole batch at once: the measurement behind each downsampling
method's ``Downsampler.micro_batch_values``.

Evaluation is timed on four training batches at once, as a protocol's two shifted copies of
a test batch reach the network; training (forward and backward) on one training batch, for
the variants whose network may split it (no BatchNorm on batch statistics).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync
from invariance_recipes.benchmarks.timing import alternate
from invariance_recipes.benchmarks.training import model_options
from invariance_recipes.lightning_modules import InvarianceClassifier
from invariance_recipes.lightning_modules.variants import VARIANTS

#: The comparisons' network inputs: small-shift's 32-px views, unseen-position's 48-px images.
SIDES = (32, 48)
CHANNELS = 3


def micro_batch_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Per variant and side, evaluation in parts against at once; per variant whose network
    splits in training, its training step too."""
    return [
        row
        for name in VARIANTS
        for side in SIDES
        for row in micro_batch_row(cfg, device, name, side)
    ]


def micro_batch_row(cfg: Config, device: torch.device, variant: str, side: int) -> list[Row]:
    """The rows of one variant at one side: evaluation, and training where it splits."""
    models = {}
    for parts in (True, False):
        torch.manual_seed(0)  # the same weights in both
        models[parts] = InvarianceClassifier(
            **model_options(variant),
            in_channels=CHANNELS,
            image_size=side,
            scheduler="none",
            micro_batch=None if parts else 0,
        ).to(device)
    size = models[True].hparams.micro_batch
    sync = device_sync(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4 * cfg.batch_size, CHANNELS, side, side, generator=generator)
    images = images.to(device)
    labels = torch.randint(0, 10, (cfg.batch_size,), generator=generator).to(device)

    def evaluate(model: InvarianceClassifier) -> float:
        model.eval()
        with torch.inference_mode():
            model(images[: cfg.batch_size])  # warm-up
            sync()
            start = time.perf_counter()
            model(images)
            sync()
        return time.perf_counter() - start

    def train(model: InvarianceClassifier) -> float:
        model.train()
        x = images[: cfg.batch_size]
        F.cross_entropy(model(x), labels).backward()  # warm-up
        sync()
        start = time.perf_counter()
        model.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        sync()
        return time.perf_counter() - start

    setting = f"{variant} small-cnn, {{}} images of {CHANNELS}x{side}x{side}"
    parts_name, whole_name = f"in parts of {size}", "all at once"
    rows = []
    timings = alternate(
        {parts_name: lambda: evaluate(models[True]), whole_name: lambda: evaluate(models[False])},
        cfg.run_rounds,
    )
    note = "evaluation (inference mode)"
    evaluated = setting.format(len(images))
    rows.append(compare(timings, "micro-batch", evaluated, parts_name, whole_name, 1.0, note))
    models[True].train()
    if not models[True].couples_images():
        timings = alternate(
            {parts_name: lambda: train(models[True]), whole_name: lambda: train(models[False])},
            cfg.run_rounds,
        )
        note = "training step (forward and backward)"
        setting = setting.format(cfg.batch_size)
        rows.append(compare(timings, "micro-batch", setting, parts_name, whole_name, 1.0, note))
    return rows
