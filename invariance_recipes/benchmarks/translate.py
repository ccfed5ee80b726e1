"""The translate section: batched per-sample ``translate`` in every shift mode against the
copy floor ``x.clone()`` (one read and one write of the batch), offsets up to ``CONSISTENCY_MAX_SHIFT``.

A mode whose floor is another computation names it, and its own target, in :data:`FLOORS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from invariance_recipes.benchmarks.rows import Config, Row, compare, device_sync, shape_text
from invariance_recipes.benchmarks.timing import interleaved
from invariance_recipes.lightning_modules.shifts import (
    CONSISTENCY_MAX_SHIFT,
    TRANSLATE_MODES,
    random_offsets,
    translate,
)

TARGET = 2.0  # an integer shift may take at most twice a copy
COPY = "x.clone()"


def _fft_round_trip(x: Tensor) -> Tensor:
    return torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:])


class Floor(NamedTuple):
    """What a mode is timed against, and the largest ratio aimed for."""

    name: str
    compute: Callable[[Tensor], Tensor]
    target: float


COPY_FLOOR = Floor(COPY, lambda x: x.clone(), TARGET)
# Modes whose floor is not a copy. The Fourier shift's only work beyond its two transforms is
# one complex product of the spectrum.
FLOORS: dict[str, Floor] = {"fourier": Floor("rfft2 + irfft2", _fft_round_trip, 1.5)}


def translate_rows(cfg: Config, device: torch.device, notes: list[str]) -> list[Row]:
    """Every mode of ``translate`` against its floor, all timed in the same rounds."""
    rows = []
    for shape in cfg.translate_shapes:
        x = torch.rand(shape, device=device)
        offsets = random_offsets(
            len(x), CONSISTENCY_MAX_SHIFT, torch.Generator().manual_seed(0), device
        )
        steps = _steps(x, offsets)
        timings = interleaved(steps, cfg.rounds, cfg.min_block, device_sync(device))
        setting = f"{shape_text(shape)}, offsets up to {CONSISTENCY_MAX_SHIFT} px"
        for mode in TRANSLATE_MODES:
            floor = FLOORS.get(mode, COPY_FLOOR)
            rows.append(
                compare(
                    timings, "translate", setting, f"translate({mode})", floor.name, floor.target
                )
            )
    return rows


def _steps(x: Tensor, offsets: Tensor) -> dict[str, Callable[[], object]]:
    """Every floor and ``translate`` in every mode, on one batch."""
    steps: dict[str, Callable[[], object]] = {
        floor.name: lambda floor=floor: floor.compute(x) for floor in (COPY_FLOOR, *FLOORS.values())
    }
    for mode in TRANSLATE_MODES:
        steps[f"translate({mode})"] = lambda mode=mode: translate(x, offsets, mode)
    return steps
