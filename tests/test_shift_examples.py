"""The examples panel (``shift_examples.png``) built from a model whose every prediction is known:
the class is the column of the brightest pixel, so a shift by dx moves the prediction by dx.
A change is marked against the unshifted image's prediction, not the leftmost column."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from invariance_recipes.lightning_modules.callbacks import (
    example_grid,
    example_offsets,
    plot_examples,
)
from invariance_recipes.lightning_modules.shifts import offset_sweep

SIZE = 16


class ColumnOfBrightestPixel(LightningModule):
    """Logits are the column sums: the prediction is the column of the (single) bright pixel,
    and 0 for an empty image (argmax of a constant row takes the first index)."""

    def __init__(self) -> None:
        super().__init__()
        self.fill = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=(1, 2))


def dots(columns: list[int]) -> Tensor:
    """One bright pixel per image at (8, column); column -1 leaves the image empty."""
    images = torch.zeros(len(columns), 1, SIZE, SIZE)
    for i, column in enumerate(columns):
        if column >= 0:
            images[i, 0, 8, column] = 1.0
    return images


def test_example_offsets_always_hold_the_unshifted_reference() -> None:
    for max_shift in (1, 2, 3, 4, 5, 8):
        offsets = example_offsets(offset_sweep(max_shift, "diagonal"))
        assert (offsets == 0).all(1).sum() == 1, offsets
        assert len(offsets) == min(7, 2 * max_shift + 1)
    # a sweep whose evenly spread columns miss (0, 0): the nearest column becomes (0, 0)
    offsets = example_offsets(torch.tensor([[d, d] for d in range(-5, 6)]), columns=4)
    assert offsets.tolist() == [[-5, -5], [0, 0], [2, 2], [5, 5]]


def test_grid_marks_changes_against_the_unshifted_prediction() -> None:
    columns = [-1, 5, -1, 7, 9, 6, -1, 10]  # -1: empty image, predicted 0 at every offset
    labels = torch.tensor([0, 5, 0, 3, 9, 1, 0, 10])  # rows 3 and 5 are wrong unshifted
    grid = example_grid(ColumnOfBrightestPixel(), dots(columns), labels, offset_sweep(3))
    offsets = grid.offsets.tolist()
    assert offsets == [[d, d] for d in range(-3, 4)]
    # rows: every dot changes under a shift, so dots first (wrong unshifted first), then empties
    assert grid.rows.tolist() == [3, 5, 1, 4, 7, 0]
    for r, i in enumerate(grid.rows.tolist()):
        for c, (_, dx) in enumerate(offsets):
            expected = columns[i] + dx if columns[i] >= 0 else 0
            assert grid.preds[c, r] == expected
            assert grid.changed[c, r] == (expected != max(columns[i], 0))
            assert grid.correct[c, r] == (expected == labels[i])
        assert grid.unshifted[r] == max(columns[i], 0)
        assert grid.labels[r] == labels[i]
    zero = offsets.index([0, 0])
    assert not grid.changed[zero].any()  # the reference never reads as changed
    # the old rule compared with the leftmost column (-3, -3): every unshifted dot read as changed
    assert (grid.preds[zero, :5] != grid.preds[0, :5]).all()
    # the shifted images are the drawn ones: the dot sits at (8 + dy, column + dx)
    r = 0
    for c, (dy, dx) in enumerate(offsets):
        assert grid.shifted[c, r, 0, 8 + dy, columns[grid.rows[r]] + dx] == 1.0
        assert grid.shifted[c, r].sum() == 1.0


def test_figure_shows_labels_and_marks_wrong_and_changed_predictions() -> None:
    columns = [6, -1, 8]
    labels = torch.tensor([6, 2, 1])
    fig = plot_examples(ColumnOfBrightestPixel(), dots(columns), labels, offset_sweep(2))
    axes = fig.axes
    assert len(axes) == 3 * 5
    grid = [axes[r * 5 : (r + 1) * 5] for r in range(3)]
    # row order: the dots (8 is wrong unshifted, so first), then the empty image
    assert [row[0].get_ylabel() for row in grid] == ["label 1", "label 6", "label 2"]
    center = grid[1][2].title  # label 6, unshifted: right, black
    assert center.get_text() == "(0, 0): 6 \u2713"
    assert matplotlib.colors.same_color(center.get_color(), "black")
    left = grid[1][0].title  # shifted by (-2, -2): predicts 4, changed and wrong
    assert left.get_text() == "(-2, -2): 4 \u2717"
    assert matplotlib.colors.same_color(left.get_color(), "red")
    wrong_unshifted = grid[0][2].title  # label 1, predicts 8 unshifted: wrong but not changed
    assert wrong_unshifted.get_text() == "(0, 0): 8 \u2717"
    assert matplotlib.colors.same_color(wrong_unshifted.get_color(), "black")
    for ax in grid[2]:  # the empty image is predicted 0 everywhere: never changed
        assert matplotlib.colors.same_color(ax.title.get_color(), "black")
    plt.close(fig)
