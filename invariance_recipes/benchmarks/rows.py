"""What every benchmark section shares: the run's sizes, one row of the report, and how a
row is made from interleaved timings."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from invariance_recipes.benchmarks.timing import Timings

COLUMNS = (
    "section",
    "threads",
    "setting",
    "ours",
    "baseline",
    "ours_ms",
    "baseline_ms",
    "ratio",
    "ratio_q1",
    "ratio_q3",
    "target",
    "holds",
    "note",
)

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one benchmark run."""

    layer_shapes: tuple[tuple[Shape, tuple[int, ...]], ...]  # (input, filter sizes)
    translate_shapes: tuple[Shape, ...]
    batch_size: int  # validation, training and loader batches
    val_batches: int
    train_batches: int
    skip: int  # batches at the start of every run left out of its timing (warm-up)
    rounds: int  # interleaved rounds of the layer and translation timings
    run_rounds: int  # alternating trainer runs
    min_block: float  # seconds of back-to-back calls per layer timing
    max_samples: int | None  # cap on the DataModule's splits
    import_runs: int  # whole-process imports per module
    layout_batch_size: int  # channels-last against contiguous training steps
    layout_batches: int
    comparison_arms: int  # arms of the comparison section's experiment, in its order
    comparison_steps: int  # steps of each short comparison run
    comparison_epoch_batches: int  # its steps per validation


FULL = Config(
    layer_shapes=(
        ((64, 64, 32, 32), (3, 4, 5)),
        ((16, 128, 56, 56), (3, 4)),
        ((32, 256, 56, 56), (3, 4)),
    ),
    translate_shapes=((256, 3, 32, 32), (128, 64, 32, 32)),
    batch_size=128,
    val_batches=12,
    train_batches=30,
    skip=3,
    rounds=11,
    run_rounds=5,
    min_block=0.05,
    max_samples=None,
    import_runs=5,
    layout_batch_size=64,
    layout_batches=5,
    comparison_arms=6,
    comparison_steps=40,
    comparison_epoch_batches=20,
)
QUICK = Config(
    layer_shapes=(((4, 8, 16, 16), (3, 4)), ((2, 16, 12, 12), (3,))),
    translate_shapes=((256, 1, 12, 12),),
    batch_size=32,
    val_batches=3,
    train_batches=4,
    skip=1,
    rounds=3,
    run_rounds=1,
    min_block=0.002,
    max_samples=200,
    import_runs=1,
    layout_batch_size=4,
    layout_batches=2,
    comparison_arms=1,
    comparison_steps=4,
    comparison_epoch_batches=2,
)


@dataclass(frozen=True)
class Row:
    """One comparison: ours against a baseline timed in the same rounds, at one thread count."""

    section: str
    threads: int
    setting: str
    ours: str
    baseline: str
    ours_ms: float
    baseline_ms: float
    ratio: float  # median over rounds of ours' time / the baseline's time
    ratio_q1: float
    ratio_q3: float
    target: float  # the ratio should be at most this; infinite: a measured cost, no goal
    note: str = ""

    @property
    def holds(self) -> bool:
        return self.ratio <= self.target

    @property
    def target_text(self) -> str:
        return "none" if math.isinf(self.target) else f"<= {self.target:.3g}"

    @property
    def verdict(self) -> str:
        """ "yes" or "no" against the target, "n/a" for a cost without one."""
        return "n/a" if math.isinf(self.target) else "yes" if self.holds else "no"


def compare(
    timings: Timings,
    section: str,
    setting: str,
    ours: str,
    baseline: str,
    target: float,
    note: str = "",
) -> Row:
    """The row of ``ours`` against ``baseline`` at the current torch thread count."""
    ratio, q1, q3 = timings.ratio(ours, baseline)
    return Row(
        section,
        torch.get_num_threads(),
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


def device_sync(device: torch.device) -> Callable[[], None]:
    """Wait for queued CUDA work, so a timing covers it; nothing to wait for on CPU."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
