"""Mean absolute change (MAC) of the top-1 probability under a shift (Azulay & Weiss, JMLR 2019)."""

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import Metric

from invariance_recipes.lightning_modules.functional import mean_absolute_change_update

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class MeanAbsoluteChange(Metric):
    """Mean over samples of |p(c | x) - p(c | shifted x)| with c the top-1 class of x.

    The flip rate only sees changes that cross a decision boundary; MAC also measures how much
    the confidence moves, so it separates a network that is stable from one that is merely far
    from the boundary (Azulay & Weiss, "Why do deep convolutional networks generalize so poorly
    to small image transformations?").

    Args:
        probabilities: the inputs are already probabilities; by default they are logits and go
            through a softmax.
        kwargs: forwarded to `torchmetrics.Metric`.
    Examples:
        >>> import torch
        >>> metric = MeanAbsoluteChange(probabilities=True)
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> shifted = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
        >>> metric.update(probs, shifted)  # top-1 probability: 0.9 -> 0.7 and 0.8 -> 0.8
        >>> round(float(metric.compute()), 4)
        0.1
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    change: Tensor
    total: Tensor

    def __init__(self, probabilities: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probabilities = probabilities
        self.add_state("change", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: Tensor, logits_shifted: Tensor) -> None:
        """Accumulate the change for scores [B, C] of x and of its shifted copy."""
        change, total = mean_absolute_change_update(logits, logits_shifted, self.probabilities)
        self.change += change
        self.total += total

    def compute(self) -> Tensor:
        """Mean absolute change of the top-1 probability."""
        return self.change / self.total

    def plot(
        self, val: Tensor | list[Tensor] | None = None, ax: "Axes | None" = None
    ) -> tuple["Figure", "Axes"]:
        """Plot one value or a series of values (defaults to `compute()`)."""
        return self._plot(val, ax)

    def extra_repr(self) -> str:
        return f"probabilities={self.probabilities}"
