"""Every shift metric of a classifier in one call: `ShiftReport` and `evaluate_shift_robustness`."""

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from invariance_recipes.lightning_modules.metrics._utils import evaluating
from invariance_recipes.lightning_modules.metrics.accuracy_vs_shift import AccuracyVsShift
from invariance_recipes.lightning_modules.metrics.consistency import ShiftConsistency
from invariance_recipes.lightning_modules.metrics.flip_rate import FlipRate
from invariance_recipes.lightning_modules.metrics.mean_absolute_change import MeanAbsoluteChange
from invariance_recipes.lightning_modules.shifts import (
    CONSISTENCY_MAX_SHIFT,
    SHIFT_MODES,
    check_max_shift,
    check_mode,
    offset_sweep,
    sample_integers,
    sample_offset_pair,
    translate,
)

# The shift modes whose consistency the test report gives by default: ``zero`` moves the
# object on its background, ``circular`` wraps it (the two differ once content fills the canvas).
REPORTED_MODES = ("zero", "circular")


class ShiftReport(nn.Module):
    """Clean accuracy, shift consistency per mode, flip rate, MAC and accuracy vs shift.

    Protocol for every batch (see `draw_offsets`):
        - "consistency_<mode>": two offsets per sample, each axis uniform in
          [-max_shift, max_shift], shifted with <mode> (Zhang, ICML 2019); every mode uses the
          same offsets, so modes differ only in how the vacated border is filled.
        - "flip_rate" and "mac": the clean image against a copy shifted by one pixel along both
          axes with `flip_mode`. The reference code of Azulay & Weiss (JMLR 2019) steps one pixel
          diagonally; the signs are drawn per sample so no direction is favoured.
        - "acc_vs_shift": accuracy at every offset of `sweep`, shifted with `sweep_mode`.
    Offsets are keyed by each image and `seed` (`sample_offsets`): the same image gets the same
    offsets whatever the batch size, data order, device or number of DDP processes, so the
    numbers are exact under DDP and reproducible; the global RNG is never consumed.
    Each `update` runs two extra forward passes without gradients: one on all consistency and
    flip copies ((2 * len(modes) + 1) * B images) and one on the sweep (K * B images).

    Args:
        max_shift: the largest |dy| and |dx| of the consistency offsets, in pixels.
        modes: the shift modes to report consistency for (`SHIFT_MODES`).
        sweep: the [K, 2] offsets of the accuracy curve; default `offset_sweep(max_shift)`, the
            diagonal from (-max_shift, -max_shift) to (max_shift, max_shift).
        flip_mode: the shift mode of the one-pixel step.
        fill: the background of "zero" shifts: a scalar or one value per channel (pass the
            normalized background when inputs are normalized).
        seed: seed of the per-image offsets.
        sweep_mode: the shift mode of the accuracy curve.
    """

    def __init__(
        self,
        max_shift: int = CONSISTENCY_MAX_SHIFT,
        modes: Sequence[str] = REPORTED_MODES,
        sweep: Tensor | None = None,
        flip_mode: str = "zero",
        fill: float | Sequence[float] = 0.0,
        seed: int = 0,
        sweep_mode: str = "zero",
    ) -> None:
        super().__init__()
        check_max_shift(max_shift)
        modes = tuple(modes)
        if not modes or len(set(modes)) != len(modes):
            raise ValueError(
                f"modes={modes!r} must name at least one shift mode, each once; "
                f"choose from {SHIFT_MODES}"
            )
        for mode in modes:
            check_mode(mode, option="modes")
        check_mode(flip_mode, option="flip_mode")
        check_mode(sweep_mode, option="sweep_mode")
        self.max_shift = max_shift
        self.modes = modes
        self.flip_mode = flip_mode
        self.sweep_mode = sweep_mode
        self.fill = fill
        self.seed = seed
        self.metrics = nn.ModuleDict(
            {
                "acc": MeanMetric(nan_strategy="disable"),
                **{f"consistency_{mode}": ShiftConsistency(max_shift, mode) for mode in modes},
                "flip_rate": FlipRate(),
                "mac": MeanAbsoluteChange(),
            }
        )
        self.curve = AccuracyVsShift(offset_sweep(max_shift) if sweep is None else sweep)
        self.last_curve: tuple[Tensor, Tensor] | None = None

    def draw_offsets(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The offsets `update` uses for images x, on their device.

        Returns:
            Per mode, [2 * B, 2] offsets (rows :B shift the first copy, rows B: the second), and
            the one-pixel steps [B, 2] with entries in {-1, 1}.
        """
        # Every mode shifts by the same offsets: modes differ only in what fills the border.
        pair = sample_offset_pair(x, self.max_shift, self.seed)
        pairs = dict.fromkeys(self.modes, pair)
        steps = sample_integers(x, 2, -1 - self.seed) * 2 - 1
        return pairs, steps

    @torch.no_grad()
    def update(
        self,
        model: Callable[[Tensor], Tensor],
        x: Tensor,
        y: Tensor,
        logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Measure one batch: images x [B, C, H, W], labels y [B], optional clean logits [B, C].

        Reads nothing back from the device, so it does not stall an accelerator.

        Returns:
            The per-image outcomes behind the proportions, booleans [B] on the device:
            "acc", "consistency_<mode>" (the two copies agree) and "flip_rate" (the one-pixel
            step changes the prediction), so paired tests see exactly what the metrics counted.
        """
        if x.ndim != 4 or y.shape != x.shape[:1]:
            raise ValueError(
                f"x must be images [B, C, H, W] and y labels [B], got shapes {tuple(x.shape)} "
                f"and {tuple(y.shape)}"
            )
        check_max_shift(self.max_shift, (x.shape[-2], x.shape[-1]))
        batch = len(x)
        if batch == 0:
            return {}
        logits = model(x) if logits is None else logits
        pairs, steps = self.draw_offsets(x)
        copies = [translate(x.repeat(2, 1, 1, 1), pairs[m], m, self.fill) for m in self.modes]
        copies.append(translate(x, steps, self.flip_mode, self.fill))
        outputs = model(torch.cat(copies)).split(batch)
        for i, mode in enumerate(self.modes):
            self.metrics[f"consistency_{mode}"].update(outputs[2 * i], outputs[2 * i + 1])
        self.metrics["flip_rate"].update(logits, outputs[-1])
        self.metrics["mac"].update(logits, outputs[-1])
        clean = logits.argmax(dim=1)
        self.metrics["acc"].update((clean == y).float())
        outcomes = {"acc": clean == y, "flip_rate": outputs[-1].argmax(dim=1) != clean}
        for i, mode in enumerate(self.modes):
            agree = outputs[2 * i].argmax(dim=1) == outputs[2 * i + 1].argmax(dim=1)
            outcomes[f"consistency_{mode}"] = agree

        sweep = self.curve.offsets
        swept = translate(
            x.repeat(len(sweep), 1, 1, 1),
            sweep.repeat_interleave(batch, dim=0),
            self.sweep_mode,
            self.fill,
        )
        self.curve.update(model(swept).unflatten(0, (len(sweep), batch)), y)
        return outcomes

    def compute(self) -> dict[str, Tensor]:
        """The scalar metrics by name, and "acc_vs_shift": accuracy per sweep offset [K]."""
        values = {name: metric.compute() for name, metric in self.metrics.items()}
        return values | {"acc_vs_shift": self.curve.compute()}

    def take_curve(self) -> tuple[Tensor, Tensor]:
        """The accuracy curve as (offsets [K, 2], accuracy [K]) on the CPU, then reset it.

        Kept as `last_curve` until the next take, for whoever writes or plots it.
        """
        self.last_curve = (self.curve.offsets.cpu(), self.curve.compute().cpu())
        self.curve.reset()
        return self.last_curve

    def reset(self) -> None:
        """Clear every metric."""
        for metric in self.metrics.values():
            metric.reset()
        self.curve.reset()

    def extra_repr(self) -> str:
        return (
            f"max_shift={self.max_shift}, modes={self.modes}, flip_mode={self.flip_mode!r}, "
            f"sweep_mode={self.sweep_mode!r}, fill={self.fill}, seed={self.seed}"
        )


def evaluate_shift_robustness(
    model: nn.Module,
    data: tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]],
    **report_kwargs: Any,
) -> dict[str, Tensor]:
    """Run a `ShiftReport` over one (images, labels) batch or an iterable of batches.

    The model runs in eval mode without gradients (every submodule's mode is restored
    afterwards) and every batch moves to the model's device. `report_kwargs` go to
    `ShiftReport`.
    """
    first = next(chain(model.parameters(), model.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    single = isinstance(data, tuple | list) and len(data) == 2
    batches = [data] if single and all(isinstance(t, Tensor) for t in data) else data
    report = ShiftReport(**report_kwargs).to(device)
    seen = 0
    with evaluating(model):
        for batch in batches:
            if not isinstance(batch, tuple | list) or len(batch) != 2:
                raise ValueError(
                    f"data must yield (images, labels) pairs, got a {type(batch).__name__}"
                )
            images, labels = batch
            report.update(model, images.to(device), labels.to(device))
            seen += 1
    if not seen:
        raise ValueError("data yielded no batches; pass (images, labels) or a non-empty loader")
    return report.compute()
