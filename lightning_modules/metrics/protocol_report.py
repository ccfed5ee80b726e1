"""Measure any set of named protocols (`PROTOCOLS`) in one pass over the data.

`ProtocolReport` owns every number of every protocol it measures: a caller updates it per batch
and reads `compute()` (or logs `scalar_metrics()` with Lightning and takes `take_curves()` at the
end of the epoch), and with ``keep_outcomes=True`` takes the per-image outcomes behind them
(`take_outcomes()`), for paired tests. Every key is ``<protocol>/<metric>_<source>``, so two
numbers from different protocols can never share a name. Beside each measure's own numbers
(`protocol_parts.MEASURES`), every protocol with a scalar headline reports:

- ``acc_<source>``: the clean accuracy of the images it measured;
- ``<metric>_among_correct_<source>``: each consistency over the correctly classified images;
- ``n_<source>`` and ``n_among_correct_<source>``: the outcomes (image x pass; for a
  consistency, the pairs) behind its numbers and behind the ``among_correct`` ones.

The loader gives canvases [B, C, H, W]; the network sees the centre `view_size` window (the whole
canvas when `view_size` is None). Crop protocols cut their windows from the canvas themselves;
every other source shifts the centre view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, SumMetric

from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.crop_shift import center_view
from invariance_recipes.lightning_modules.metrics._utils import evaluating
from invariance_recipes.lightning_modules.metrics.protocol_parts import (
    AMONG_CORRECT,
    FixedRange,
    Probe,
    Source,
)
from invariance_recipes.lightning_modules.metrics.protocols import (
    ACCURACY,
    COUNT,
    ProtocolSpec,
    get_protocol,
    metric_key,
)
from invariance_recipes.lightning_modules.metrics.worst_case import AGGREGATIONS


class ImageMean(Metric):
    """The mean over images of a per-image outcome (a share, a MAC, or a curve over K offsets).

    Args:
        aggregation: "over-images" (the mean over every image) or "mean-of-batch-means" (the
            mean over `update` calls of each call's mean, as the APS and TIPS code average).
        size: K for a curve (outcomes [N, K], one mean per offset); None for a scalar.
    """

    is_differentiable = False
    full_state_update = False

    total: Tensor
    count: Tensor
    batch_means: Tensor
    batches: Tensor

    def __init__(
        self, aggregation: str = "over-images", size: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_choice("aggregation", aggregation, AGGREGATIONS)
        self.aggregation = aggregation
        shape = () if size is None else (size,)
        self.add_state("total", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("batch_means", torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        """Add outcomes [N] (or [N, K] for a curve); an empty batch counts for nothing."""
        if len(values) == 0:
            return
        values = values.double()
        self.total += values.sum(dim=0)
        self.count += len(values)
        self.batch_means += values.mean(dim=0)
        self.batches += 1

    def compute(self) -> Tensor:
        """The mean, aggregated as chosen (NaN before any outcome)."""
        if self.aggregation == "mean-of-batch-means":
            return (self.batch_means / self.batches).float()
        return (self.total / self.count).float()


class ProtocolReport(nn.Module):
    """Every number of the named protocols, updated batch by batch.

    Args:
        protocols: names in `PROTOCOLS`.
        view_size: the side of the window the network sees; None: the whole canvas.
        fill: the background of "zero" shifts: a scalar or one value per channel.
        keep_outcomes: keep every per-image outcome for `take_outcomes` (one process: the
            outcomes of other DDP processes are not gathered).
    """

    def __init__(
        self,
        protocols: Sequence[str],
        view_size: int | None = None,
        fill: float | Sequence[float] | Tensor = 0.0,
        keep_outcomes: bool = False,
    ) -> None:
        super().__init__()
        names = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        if len(set(names)) != len(names):
            raise ValueError(f"protocols={list(names)!r} names a protocol twice: name each once")
        self.specs = {name: get_protocol(name, "protocol") for name in names}
        self.view_size = view_size
        self.fill = fill
        self.keep_outcomes = keep_outcomes
        self.metrics = nn.ModuleDict()
        self.curves = nn.ModuleDict()
        self._curve_offsets: dict[str, Tensor] = {}
        self._outcomes: dict[str, list[Tensor]] = {}
        for spec in self.specs.values():
            for source in spec.sources:
                self._add_metrics(spec, source)

    def _add_metrics(self, spec: ProtocolSpec, source: Source) -> None:
        measure, aggregation = spec.measure, spec.aggregation
        if measure.curve is not None:  # its offsets depend on the canvas: made at the first update
            self.curves[_key(spec, measure.curve, source)] = nn.Identity()
        if measure.headline is None:
            return
        means = [*measure.metrics, *(m + AMONG_CORRECT for m in measure.consistencies), ACCURACY]
        for metric in means:
            self.metrics[_key(spec, metric, source)] = ImageMean(aggregation)
        for count in (COUNT, COUNT + AMONG_CORRECT):
            self.metrics[_key(spec, count, source)] = SumMetric()

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
        canvas_size, view_size = x.shape[-1], view.shape[-1]
        for spec in self.specs.values():  # fail before any forward pass
            for source in spec.sources:
                source.check(
                    spec.name, canvas_size, view_size, spec.scaled_range(canvas_size, view_size)
                )
        logits = model(view) if logits is None else logits
        correct = logits.argmax(dim=1) == y
        for spec in self.specs.values():
            for source in spec.sources:
                probe = Probe(
                    model,
                    x,
                    view,
                    y,
                    logits,
                    source,
                    spec.range,
                    spec.scaled_range(canvas_size, view_size),
                    spec.seed,
                    spec.copies,
                    spec.passes,
                    self.fill,
                )
                self._record(spec, source, spec.measure.run(probe), correct, probe.value)

    def _record(
        self,
        spec: ProtocolSpec,
        source: Source,
        outcomes: dict[str, Tensor],
        correct: Tensor,
        value: int,
    ) -> None:
        """Average, count and (when asked) keep one batch's per-image outcomes."""
        measure = spec.measure
        if measure.curve is not None:
            key = _key(spec, measure.curve, source)
            assert isinstance(spec.range, FixedRange)
            self._curve(key, spec.range.offsets(value), correct.device).update(
                outcomes[measure.curve]
            )
            self._keep(key, outcomes[measure.curve])
        if measure.headline is None:
            return
        for metric in measure.metrics:
            self.metrics[_key(spec, metric, source)].update(outcomes[metric].reshape(-1))
            self._keep(_key(spec, metric, source), outcomes[metric].squeeze(1))
        for metric in measure.consistencies:
            among = outcomes[metric][correct].reshape(-1)
            self.metrics[_key(spec, metric + AMONG_CORRECT, source)].update(among)
        self.metrics[_key(spec, ACCURACY, source)].update(correct)
        self._keep(_key(spec, ACCURACY, source), correct)
        headline = outcomes[measure.headline]
        self.metrics[_key(spec, COUNT, source)].update(headline.numel())
        self.metrics[_key(spec, COUNT + AMONG_CORRECT, source)].update(headline[correct].numel())

    def _keep(self, key: str, values: Tensor) -> None:
        if self.keep_outcomes:
            self._outcomes.setdefault(key, []).append(values.detach().cpu())

    def _curve(self, key: str, offsets: Tensor, device: torch.device) -> ImageMean:
        """The curve of `key`, made at the first update, when the canvas fixes its offsets."""
        curve = self.curves[key]
        if not isinstance(curve, ImageMean):
            curve = ImageMean(size=len(offsets)).to(device)
            self.curves[key] = curve
            self._curve_offsets[key] = offsets.cpu()
        return curve

    def scalar_metrics(self) -> dict[str, Metric]:
        """The scalar metrics by key, for ``LightningModule.log`` (which computes and resets them)."""
        return dict(self.metrics.items())

    def take_curves(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every curve as (offsets [K, 2], accuracy [K]) by key, then reset the curves."""
        taken = {}
        for key, curve in self.curves.items():
            if isinstance(curve, ImageMean):
                taken[key] = (self._curve_offsets[key], curve.compute().cpu())
                curve.reset()
        return taken

    def take_outcomes(self) -> dict[str, Tensor]:
        """Every per-image outcome since the last take, by key, in the order the images came:
        [N] booleans (or floats for a MAC) for one pass, [N, passes] for several, [N, K] for
        a curve; then forget them. Needs ``keep_outcomes=True``."""
        if not self.keep_outcomes:
            raise ValueError("take_outcomes() needs ProtocolReport(..., keep_outcomes=True)")
        taken = {key: torch.cat(parts) for key, parts in self._outcomes.items()}
        self._outcomes.clear()
        return taken

    def compute(self) -> dict[str, Tensor]:
        """Every scalar by key ``<protocol>/<metric>_<source>``, each curve [K] and its mean."""
        values = {key: metric.compute() for key, metric in self.metrics.items()}
        for key, curve in self.curves.items():
            if isinstance(curve, ImageMean):
                accuracy = curve.compute()
                values[key] = accuracy
                values[key.replace("acc_vs_offset", "mean_acc")] = accuracy.mean()
        return values

    def reset(self) -> None:
        """Clear every metric and every kept outcome."""
        for metric in chain(self.metrics.values(), self.curves.values()):
            if isinstance(metric, Metric):
                metric.reset()
        self._outcomes.clear()

    def extra_repr(self) -> str:
        return f"protocols={list(self.specs)}, view_size={self.view_size}"


def _key(spec: ProtocolSpec, metric: str, source: Source) -> str:
    return metric_key(spec.name, metric, source.name)


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
