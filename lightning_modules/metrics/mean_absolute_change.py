"""Mean absolute change (MAC) of the top-1 probability under a shift (Azulay & Weiss, JMLR 2019)."""

from typing import TYPE_CHECKING, Any

import torch
from invariance_recipes.lightning_modules.metrics._utils import check_same_samples
from torch import Tensor
from torchmetrics import Metric

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
        check_same_samples(logits, logits_shifted, ("logits", "logits_shifted"))
        if logits.ndim != 2 or not logits.is_floating_point():
            raise ValueError(
                f"logits must be floating class scores [B, C], got shape {tuple(logits.shape)} "
                f"and dtype {logits.dtype}"
            )
        before, after = logits.float(), logits_shifted.float()
        if not self.probabilities:
            before, after = before.softmax(dim=1), after.softmax(dim=1)
        top = before.argmax(dim=1, keepdim=True)
        self.change += (before.gather(1, top) - after.gather(1, top)).abs().sum()
        self.total += logits.shape[0]

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
