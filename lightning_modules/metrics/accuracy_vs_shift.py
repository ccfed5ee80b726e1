"""Accuracy as a function of a fixed set of offsets: the shift curve of Azulay & Weiss (JMLR 2019)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import Metric

from invariance_recipes.lightning_modules.functional import top1

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


class AccuracyVsShift(Metric):
    """Top-1 accuracy for each of K offsets (dy, dx), as a curve.

    A single accuracy number hides where a network fails; the curve shows whether accuracy decays
    smoothly with the shift (augmentation covers small shifts only) or collapses away from the
    training positions (a flatten-FC head tied to positions). Build the offsets with
    `invariance_recipes.lightning_modules.shifts.offset_sweep`, shift each batch by every offset, and pass the
    stacked predictions to `update`.

    Args:
        offsets: K integer offsets (dy, dx), as a [K, 2] tensor or a sequence of pairs.
        kwargs: forwarded to `torchmetrics.Metric`.
    Examples:
        >>> import torch
        >>> metric = AccuracyVsShift(offsets=[(0, 0), (0, 1)])
        >>> preds = torch.tensor([[1, 0, 1], [1, 1, 1]])  # [K offsets, B images] classes
        >>> metric.update(preds, torch.tensor([1, 0, 1]))
        >>> metric.compute()
        tensor([1.0000, 0.6667])
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    correct: Tensor
    total: Tensor

    def __init__(self, offsets: Tensor | Sequence[tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        offsets = torch.as_tensor(offsets)
        if offsets.is_floating_point() or offsets.ndim != 2 or offsets.shape[1] != 2:
            raise ValueError(
                f"offsets must be integer pairs (dy, dx) shaped [K, 2], got shape "
                f"{tuple(offsets.shape)} and dtype {offsets.dtype}; build them with offset_sweep"
            )
        if len(offsets) == 0:
            raise ValueError("offsets is empty; pass at least one (dy, dx), e.g. offset_sweep(4)")
        self.offsets = offsets.long().cpu()
        self.add_state("correct", torch.zeros(len(offsets), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Count correct predictions: preds [K, B, C] scores or [K, B] indices, target [B]."""
        classes = top1(preds, "preds", layout="K, B")
        if classes.shape != (len(self.offsets), *target.shape) or target.ndim != 1:
            raise ValueError(
                f"preds must stack one prediction per offset [K={len(self.offsets)}, B] for "
                f"target [B], got preds {tuple(preds.shape)} and target {tuple(target.shape)}"
            )
        self.correct += (classes == target).sum(dim=1)
        self.total += target.numel()

    def compute(self) -> Tensor:
        """Accuracy per offset, [K]."""
        return self.correct / self.total

    def plot(self, val: Tensor | None = None, ax: "Axes | None" = None) -> tuple["Figure", "Axes"]:
        """Draw accuracy against the offset (defaults to `compute()`).

        A one-axis sweep (diagonal dy = dx, horizontal or vertical) is a curve over the shift;
        any other set of offsets (a grid) is a map over (dx, dy) in image orientation, with
        offsets outside the set left blank.
        """
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        accuracy = (self.compute() if val is None else val).detach().cpu()
        fig, ax = plt.subplots() if ax is None else (ax.get_figure(), ax)
        dy, dx = self.offsets.unbind(dim=1)
        if torch.equal(dy, dx):
            axis = (dy, "shift dy = dx")
        elif not dy.any():
            axis = (dx, "shift dx")
        elif not dx.any():
            axis = (dy, "shift dy")
        else:
            axis = None
        if axis is not None:
            ax.plot(axis[0], accuracy, marker="o")
            ax.set(xlabel=f"{axis[1]} (pixels)", ylabel="accuracy", ylim=(0.0, 1.0))
        else:
            top, left = int(dy.min()), int(dx.min())
            bottom, right = int(dy.max()), int(dx.max())
            grid = torch.full((bottom - top + 1, right - left + 1), float("nan"))
            grid[dy - top, dx - left] = accuracy.float()
            extent = (left - 0.5, right + 0.5, bottom + 0.5, top - 0.5)
            tiles = ax.imshow(grid, extent=extent, vmin=0.0, vmax=1.0)
            fig.colorbar(tiles, ax=ax, label="accuracy")
            ax.set(xlabel="shift dx (pixels)", ylabel="shift dy (pixels)")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return fig, ax

    def extra_repr(self) -> str:
        return f"offsets={len(self.offsets)}"
