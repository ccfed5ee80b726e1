"""The translate section: batched per-sample ``translate`` in every shift mode against the
copy floor ``x.clone()`` (one read and one write of the batch), offsets up to ``CONSISTENCY_MAX_SHIFT``.

A mode whose floor is another computation names it in :data:`FLOORS`.
"""

from __future__ import annotations

from collections.abc import Callable

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

TARGET = 2.0  # translate may take at most twice its floor
COPY = "x.clone()"


def _fft_round_trip(x: Tensor) -> Tensor:
    return torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:])


# Mode -> (floor name, floor computation); the others compare with a copy.
FLOORS: dict[str, tuple[str, Callable[[Tensor], Tensor]]] = {
    "fourier": ("rfft2 + irfft2", _fft_round_trip),
}


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
        rows += [
            compare(
                timings,
                "translate",
                setting,
                f"translate({mode})",
                FLOORS[mode][0] if mode in FLOORS else COPY,
                TARGET,
            )
            for mode in TRANSLATE_MODES
        ]
    return rows


def _steps(x: Tensor, offsets: Tensor) -> dict[str, Callable[[], object]]:
    """The copy floor, ``translate`` in every mode and the other floors, on one batch."""
    steps: dict[str, Callable[[], object]] = {COPY: x.clone}
    for mode in TRANSLATE_MODES:
        steps[f"translate({mode})"] = lambda mode=mode: translate(x, offsets, mode)
        if mode in FLOORS:
            name, floor = FLOORS[mode]
            steps[name] = lambda floor=floor: floor(x)
    return steps
