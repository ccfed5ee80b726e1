"""Flip rate: how often a one-pixel shift changes the top-1 class (Azulay & Weiss, JMLR 2019)."""

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import Metric

from invariance_recipes.lightning_modules.functional import flip_rate_update

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class FlipRate(Metric):
    """Fraction of samples whose top-1 class changes under a one-pixel shift.

    Azulay & Weiss ("Why do deep convolutional networks generalize so poorly to small image
    transformations?") call this P(top-1 change), a measure of "jaggedness": stride-2 layers
    alias, so a shift smaller than the stride can flip the prediction. Their reference code
    compares frames one pixel apart along both axes; `ShiftReport` follows it with a diagonal
    one-pixel step whose signs are drawn per sample. Pass the predictions on the original and the
    shifted images to `update`.
    Examples:
        >>> import torch
        >>> metric = FlipRate()
        >>> metric.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
        >>> metric.compute()
        tensor(0.2500)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    flips: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("flips", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, preds_shifted: Tensor) -> None:
        """Count top-1 changes between logits [B, C] or class indices [B] of x and shifted x."""
        flips, total = flip_rate_update(preds, preds_shifted)
        self.flips += flips
        self.total += total

    def compute(self) -> Tensor:
        """Fraction of samples whose top-1 class changed."""
        return self.flips / self.total

    def plot(
        self, val: Tensor | list[Tensor] | None = None, ax: "Axes | None" = None
    ) -> tuple["Figure", "Axes"]:
        """Plot one value or a series of values (defaults to `compute()`)."""
        return self._plot(val, ax)
