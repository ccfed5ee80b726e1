"""Measure any set of named protocols (`PROTOCOLS`) in one pass over the data.

`ProtocolReport` owns every metric of every protocol it measures, their compute and their reset:
a caller updates it per batch and reads `compute()` (or logs `scalar_metrics()` with Lightning
and takes `take_curves()` at the end of the epoch). Every key is ``<protocol>/<metric>``, so two
numbers from different protocols can never share a name.

The loader gives canvases [B, C, H, W]; the network sees the centre `view_size` window (the whole
canvas when `view_size` is None). Crop protocols cut their windows from the canvas themselves;
every other source shifts the centre view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import torch
from invariance_recipes.lightning_modules.crop_shift import center_view, crop_windows
from invariance_recipes.lightning_modules.metrics._utils import evaluating
from invariance_recipes.lightning_modules.metrics.accuracy_vs_shift import AccuracyVsShift
from invariance_recipes.lightning_modules.metrics.flip_rate import FlipRate
from invariance_recipes.lightning_modules.metrics.mean_absolute_change import MeanAbsoluteChange
from invariance_recipes.lightning_modules.metrics.protocols import ProtocolSpec, get_protocol
from invariance_recipes.lightning_modules.metrics.worst_case import WorstCaseConsistency
from invariance_recipes.lightning_modules.shifts import sample_integers, translate
from torch import Tensor, nn
from torchmetrics import Metric

#: The one-pixel steps of the flip rate and MAC: along the width, and diagonal.
FLIP_STEPS = {"axis": (0, 1), "diagonal": (1, 1)}
#: The metric a protocol is summed up by in a results table, by its measure (curves have none).
HEADLINE_METRICS = {
    "consistency": "consistency",
    "vs-unshifted": "consistency",
    "stability": "stability",
    "worst-case": "worst_consistency",
    "flip": f"flip_rate_{next(iter(FLIP_STEPS))}",
}
#: Shifted copies of a fixed range go through the network in passes of at most this many images.
IMAGES_PER_PASS = 4096


def random_bounds(range_name: str, value: int) -> tuple[int, int]:
    """(low, high) with high exclusive, as ``torch.randint`` takes them, of a random range."""
    bounds = {
        "[0, D)": (0, value),
        "[-m, m)": (-value, value),
        "[-m, m]": (-value, value + 1),
        "[1, m)": (1, value),
    }[range_name]
    if bounds[1] <= bounds[0]:
        raise ValueError(
            f"the range {range_name} with {value} px is empty on this image size: use a larger "
            "view or canvas"
        )
    return bounds


def fixed_offsets(range_name: str, value: int) -> Tensor:
    """Every offset of a fixed range, [K, 2] (float for sub-pixel ranges)."""
    if range_name == "diagonal [0, D]":
        steps = torch.arange(value + 1)
        return torch.stack((steps, steps), dim=1)
    if range_name == "grid [1, m)^2":
        if value < 2:
            raise ValueError(f"the range {range_name} with m = {value} is empty: use a larger view")
        steps = torch.arange(1, value)
        return torch.cartesian_prod(steps, steps)
    # quarter pixels: content moves up/left by a/4, b/4, as subpixel_shift rolls by -shift
    quarters = torch.arange(1, value, dtype=torch.float64) / value
    return -torch.cartesian_prod(quarters, quarters)


def headline_key(name: str) -> str | None:
    """The ``<protocol>/<metric>`` key that sums the named protocol up in one number (of its
    first source), or ``None`` for a protocol that only measures a curve."""
    spec = get_protocol(name)
    metric = HEADLINE_METRICS.get(spec.measure)
    return None if metric is None else f"{spec.name}/{metric}_{spec.sources[0]}"


class ProtocolReport(nn.Module):
    """Every metric of the named protocols, updated batch by batch.

    Args:
        protocols: names in `PROTOCOLS`.
        view_size: the side of the window the network sees; None: the whole canvas.
        fill: the background of "zero" shifts: a scalar or one value per channel.
    """

    def __init__(
        self,
        protocols: Sequence[str],
        view_size: int | None = None,
        fill: float | Sequence[float] | Tensor = 0.0,
    ) -> None:
        super().__init__()
        names = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        if len(set(names)) != len(names):
            raise ValueError(f"protocols={list(names)!r} names a protocol twice: name each once")
        self.specs = {name: get_protocol(name, "protocol") for name in names}
        self.view_size = view_size
        self.fill = fill
        self.metrics = nn.ModuleDict()
        self.curves = nn.ModuleDict()
        for spec in self.specs.values():
            for source in spec.sources:
                self._add_metrics(spec, source)
        self._generators: dict[tuple[str, str, int], torch.Generator] = {}

    def _add_metrics(self, spec: ProtocolSpec, source: str) -> None:
        key, aggregation = f"{spec.name}/{{}}_{source}", spec.aggregation
        if spec.measure in ("consistency", "stability", "vs-unshifted"):
            self.metrics[key.format("consistency")] = WorstCaseConsistency(aggregation=aggregation)
        if spec.measure == "stability":
            self.metrics[key.format("stability")] = WorstCaseConsistency(aggregation=aggregation)
        if spec.measure == "vs-unshifted":
            self.metrics[key.format("mac")] = MeanAbsoluteChange()
            self.metrics[key.format("acc_shifted")] = WorstCaseConsistency(True, aggregation)
        if spec.measure == "worst-case":
            self.metrics[key.format("worst_consistency")] = WorstCaseConsistency(
                aggregation=aggregation
            )
            self.metrics[key.format("worst_acc")] = WorstCaseConsistency(True, aggregation)
        if spec.measure == "flip":
            for step in FLIP_STEPS:
                self.metrics[key.format(f"flip_rate_{step}")] = FlipRate()
                self.metrics[key.format(f"mac_{step}")] = MeanAbsoluteChange()
        if spec.measure == "accuracy-at-offsets":
            # The offsets depend on the canvas, known at the first update.
            self.curves[key.format("acc_vs_offset")] = nn.Identity()

    def view(self, x: Tensor) -> Tensor:
        """The window of the canvases `x` that the network sees."""
        return x if self.view_size is None else center_view(x, self.view_size)

    @torch.no_grad()
    def update(
        self,
        model: Callable[[Tensor], Tensor],
        x: Tensor,
        y: Tensor,
        logits: Tensor | None = None,
    ) -> None:
        """Measure one batch: canvases x [B, C, H, W], labels y [B], optional logits of the view."""
        if x.ndim != 4 or y.shape != x.shape[:1]:
            raise ValueError(
                f"x must be images [B, C, H, W] and y labels [B], got shapes {tuple(x.shape)} "
                f"and {tuple(y.shape)}"
            )
        if len(x) == 0:
            return
        view = self.view(x)
        self._check_crop_margin(x, view)
        logits = model(view) if logits is None else logits
        for spec in self.specs.values():
            for source in spec.sources:
                self._update(spec, source, model, x, view, y, logits)

    def _check_crop_margin(self, x: Tensor, view: Tensor) -> None:
        """Crop protocols need a canvas larger than the view: fail before any forward pass."""
        size = view.shape[-1]
        for spec in self.specs.values():
            if "crop" in spec.sources and x.shape[-1] == size:
                raise ValueError(
                    f"protocol {spec.name} cuts {size}-px windows from a larger canvas, but the "
                    f"network sees the whole {size}-px canvas: train with --data.view_size "
                    "smaller than the canvas (e.g. 7/8 of it)"
                )

    def _update(
        self,
        spec: ProtocolSpec,
        source: str,
        model: Callable[[Tensor], Tensor],
        x: Tensor,
        view: Tensor,
        y: Tensor,
        logits: Tensor,
    ) -> None:
        value = spec.scaled_range(x.shape[-1], view.shape[-1])
        key = f"{spec.name}/{{}}_{source}"
        batch = len(x)
        if spec.measure in ("worst-case", "accuracy-at-offsets"):
            offsets = fixed_offsets(spec.range, value)
            classes = self._classes_at(model, source, x, view, offsets)
            if spec.measure == "accuracy-at-offsets":
                self._curve(key.format("acc_vs_offset"), offsets, x.device).update(classes, y)
                return
            every = torch.cat((logits.argmax(dim=1)[None], classes))
            self.metrics[key.format("worst_consistency")].update(every)
            self.metrics[key.format("worst_acc")].update(every, y)
            return
        if spec.measure == "flip":
            low, high = random_bounds(spec.range, value)
            start = sample_integers(view, high - low, spec.seed) + low
            steps = [start, *(start + start.new_tensor(step) for step in FLIP_STEPS.values())]
            out = model(torch.cat([self._shift(source, x, view, o) for o in steps]))
            out = out.unflatten(0, (len(steps), batch))
            for i, step in enumerate(FLIP_STEPS, start=1):
                self.metrics[key.format(f"flip_rate_{step}")].update(out[0], out[i])
                self.metrics[key.format(f"mac_{step}")].update(out[0], out[i])
            return
        copies = 1 if spec.measure == "vs-unshifted" else spec.copies
        for p in range(spec.passes):
            offsets = [self._draw(spec, source, p, c, view, value) for c in range(copies)]
            out = model(torch.cat([self._shift(source, x, view, o) for o in offsets]))
            out = out.unflatten(0, (copies, batch))
            if spec.measure == "vs-unshifted":
                self.metrics[key.format("consistency")].update(torch.stack((logits, out[0])))
                self.metrics[key.format("mac")].update(logits, out[0])
                self.metrics[key.format("acc_shifted")].update(out, y)
                continue
            self.metrics[key.format("consistency")].update(out)
            if spec.measure == "stability":
                self.metrics[key.format("stability")].update(torch.cat((logits[None], out)))

    def _draw(
        self, spec: ProtocolSpec, source: str, pass_index: int, copy: int, view: Tensor, value: int
    ) -> Tensor:
        """Offsets [B, 2] of one copy: per batch from the protocol's generator, or per sample."""
        low, high = random_bounds(spec.range, value)
        if spec.draw == "per-sample":
            seed = spec.seed * 1_000_003 + pass_index * 1_009 + copy
            return sample_integers(view, high - low, seed) + low
        generator = self._generators.get((spec.name, source, pass_index))
        if generator is None:
            generator = torch.Generator().manual_seed(spec.seed + pass_index)
            self._generators[(spec.name, source, pass_index)] = generator
        return torch.randint(low, high, (2,), generator=generator).expand(len(view), 2)

    def _shift(self, source: str, x: Tensor, view: Tensor, offsets: Tensor) -> Tensor:
        """One copy of the batch made by `source`: crop windows of the canvases x (of the
        view's size), or the view shifted."""
        if source == "crop":
            return crop_windows(x, offsets, view.shape[-1])
        if source == "pad-crop":  # zero in input space, content moves by -offset
            return translate(view, -offsets, "zero", 0.0)
        if source == "zero":
            return translate(view, offsets, "zero", self.fill)
        return translate(view, offsets, source)  # circular, fourier

    def _classes_at(
        self,
        model: Callable[[Tensor], Tensor],
        source: str,
        x: Tensor,
        view: Tensor,
        offsets: Tensor,
    ) -> Tensor:
        """Top-1 classes [K, B] at every one of K fixed offsets, in passes of bounded size."""
        batch = len(x)
        per_pass = max(1, IMAGES_PER_PASS // batch)
        classes = []
        for part in offsets.split(per_pass):
            copies = len(part)
            shifted = self._shift(
                source,
                x.repeat(copies, 1, 1, 1) if source == "crop" else x,
                view.repeat(copies, 1, 1, 1),
                part.repeat_interleave(batch, 0),
            )
            classes.append(model(shifted).argmax(dim=-1).view(copies, batch))
        return torch.cat(classes)

    def _curve(self, key: str, offsets: Tensor, device: torch.device) -> AccuracyVsShift:
        """The curve of `key`, made at the first update, when the canvas fixes its offsets."""
        curve = self.curves[key]
        if not isinstance(curve, AccuracyVsShift):
            curve = AccuracyVsShift(offsets).to(device)
            self.curves[key] = curve
        return curve

    def scalar_metrics(self) -> dict[str, Metric]:
        """The scalar metrics by key, for ``LightningModule.log`` (which computes and resets them)."""
        return {key: metric for key, metric in self.metrics.items()}

    def take_curves(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every curve as (offsets [K, 2], accuracy [K]) by key, then reset the curves."""
        taken = {}
        for key, curve in self.curves.items():
            if isinstance(curve, AccuracyVsShift):
                taken[key] = (curve.offsets, curve.compute().cpu())
                curve.reset()
        return taken

    def compute(self) -> dict[str, Tensor]:
        """Every scalar by key ``<protocol>/<metric>``, each curve [K] and its mean."""
        values = {key: metric.compute() for key, metric in self.metrics.items()}
        for key, curve in self.curves.items():
            if isinstance(curve, AccuracyVsShift):
                accuracy = curve.compute()
                values[key] = accuracy
                values[key.replace("acc_vs_offset", "mean_acc")] = accuracy.float().mean()
        return values

    def reset(self) -> None:
        """Clear every metric and restart every per-batch generator from its seed."""
        for metric in chain(self.metrics.values(), self.curves.values()):
            if isinstance(metric, Metric):
                metric.reset()
        self._generators.clear()

    def extra_repr(self) -> str:
        return f"protocols={list(self.specs)}, view_size={self.view_size}"


def evaluate_protocols(
    model: nn.Module,
    data: Iterable[tuple[Tensor, Tensor]],
    protocols: Sequence[str],
    **report_kwargs: Any,
) -> dict[str, Tensor]:
    """Run a `ProtocolReport` over (canvases, labels) batches with the model in eval mode."""
    first = next(chain(model.parameters(), model.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    report = ProtocolReport(protocols, **report_kwargs).to(device)
    seen = 0
    with evaluating(model):
        for images, labels in data:
            report.update(model, images.to(device), labels.to(device))
            seen += 1
    if not seen:
        raise ValueError("data yielded no batches; pass a non-empty loader")
    return report.compute()
