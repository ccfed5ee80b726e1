"""Crop mode of the DataModule: the network sees a window of the canvas, and training moves it."""

import pytest
import torch

from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.datamodules.augment import CanvasTransform

CANVAS, VIEW = 32, 28


def canvases(data: TranslationDataModule, split: str) -> torch.Tensor:
    """Every canvas of a split, unshifted and whole, rebuilt from its sample and position."""
    dataset = data.datasets[split]
    plain = CanvasTransform(data.object_size, CANVAS)
    return torch.stack(
        [
            plain(dataset.split.images[i], int(top), int(left), None)
            for i, (top, left) in enumerate(dataset.positions)
        ]
    )


def test_view_size_sets_image_size_and_what_each_split_yields() -> None:
    data = TranslationDataModule(
        view_size=VIEW, policy="heavy", max_shift=2, max_samples=64, batch_size=64
    )
    assert (data.image_size, data.canvas_size) == (VIEW, CANVAS)
    data.setup()
    test_images, _ = next(iter(data.test_dataloader()))
    val_images, _ = next(iter(data.val_dataloader()))
    assert torch.equal(test_images, canvases(data, "test"))  # whole canvases for the metrics
    assert torch.equal(val_images, canvases(data, "val")[:, :, 2:30, 2:30])  # centre window

    torch.manual_seed(0)
    train_images = torch.stack([data.datasets["train"][i][0] for i in range(64)])
    whole = canvases(data, "train")
    corners = []
    for image, canvas in zip(train_images, whole, strict=True):
        found = [
            (top, left)
            for top in range(CANVAS - VIEW + 1)
            for left in range(CANVAS - VIEW + 1)
            if torch.equal(canvas[:, top : top + VIEW, left : left + VIEW], image)
        ]
        assert found, "a training image is a window of its canvas"
        corners.append(found[0])
    assert len(set(corners)) > 3  # the window moves


def test_a_shift_beyond_the_margin_the_view_leaves_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"max_shift=3 px moves the 28-px view beyond the 2-px"):
        TranslationDataModule(view_size=VIEW, policy="heavy", max_shift=3)
    with pytest.raises(ValueError, match=r"view_size=40 is larger than canvas_size=32"):
        TranslationDataModule(view_size=40)
