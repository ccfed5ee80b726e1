"""digits-m: real pixels against an independent MNIST-M blend, disjoint photo regions,
determinism per seed, and the three shift modes giving different images on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_sample_images

from invariance_recipes.compare.experiments import get_experiment
from invariance_recipes.datamodules import TranslationDataModule
from invariance_recipes.datamodules.digits_m import (
    CANVAS_SIZE,
    DIGIT_SIZE,
    PHOTO_BLOCKS,
    draw_backgrounds,
)
from invariance_recipes.datamodules.sources import load_splits
from invariance_recipes.lightning_modules.shifts import translate

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def splits() -> dict:
    return load_splits("digits-m", "unused", 0.15, 0.15, seed=3)


def _photos() -> list[np.ndarray]:
    """The two photographs read from scikit-learn's JPEG files with PIL, not through the module."""
    return [np.asarray(Image.open(path).convert("RGB")) for path in load_sample_images().filenames]


def test_pixels_are_the_absolute_difference_of_photo_crop_and_digit(splits) -> None:
    plain = load_splits("digits", "unused", 0.15, 0.15, seed=3)["test"]  # the same carving
    test = splits["test"]
    assert test.images.shape == (len(plain), CANVAS_SIZE, CANVAS_SIZE, 3)
    assert np.array_equal(test.labels, plain.labels)
    photos = _photos()
    corner = (CANVAS_SIZE - DIGIT_SIZE) // 2
    inside = np.zeros((CANVAS_SIZE, CANVAS_SIZE), bool)
    inside[corner : corner + DIGIT_SIZE, corner : corner + DIGIT_SIZE] = True
    digits = torch.from_numpy(plain.images[..., 0]).float()[:, None]
    enlarged = F.interpolate(digits, size=DIGIT_SIZE, mode="bilinear", align_corners=False)
    for i, (photo, top, left) in enumerate(draw_backgrounds(len(test), "test", seed=3)):
        background = photos[photo][top : top + CANVAS_SIZE, left : left + CANVAS_SIZE]
        digit = np.zeros((CANVAS_SIZE, CANVAS_SIZE))
        digit[inside] = enlarged[i, 0].numpy().ravel()
        expected = np.abs(background.astype(float) - digit[..., None])
        error = np.abs(test.images[i].astype(float) - expected)
        assert error[~inside].max() == 0  # the photograph, untouched, around the digit
        assert error.max() <= 1  # rounding of the bilinear enlargement
    assert (test.images.reshape(len(test), -1, 3) != 0).mean() > 0.9  # the photo fills it


def test_splits_use_disjoint_photo_regions_of_both_photographs() -> None:
    covered = {}
    for split in SPLITS:
        mask = np.zeros((2, 427, 640), bool)
        places = draw_backgrounds(4000, split, seed=11)
        assert set(places[:, 0]) == {0, 1}
        for photo, top, left in places:
            mask[photo, top : top + CANVAS_SIZE, left : left + CANVAS_SIZE] = True
        covered[split] = mask
        # every crop lies inside one of the split's blocks
        blocks = np.asarray(PHOTO_BLOCKS[split])
        rows, columns = places[:, 1:2], places[:, 2:3]
        fits = (
            (rows >= blocks[:, 0])
            & (rows + CANVAS_SIZE <= blocks[:, 1])
            & (columns >= blocks[:, 2])
            & (columns + CANVAS_SIZE <= blocks[:, 3])
        )
        assert fits.any(axis=1).all()
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not (covered[a] & covered[b]).any(), (a, b)
    assert covered["test"].sum() > 0.1 * covered["train"].sum()


def test_backgrounds_are_a_function_of_seed_split_and_index(splits) -> None:
    again = load_splits("digits-m", "unused", 0.15, 0.15, seed=3)
    for split in SPLITS:
        assert np.array_equal(again[split].images, splits[split].images)
    assert np.array_equal(draw_backgrounds(50, "val", 5), draw_backgrounds(500, "val", 5)[:50])
    other = draw_backgrounds(50, "val", 6)
    assert (other != draw_backgrounds(50, "val", 5)).any(axis=1).mean() > 0.9


def test_crop_zero_and_circular_shifts_give_different_images(splits) -> None:
    view, (dy, dx) = 32, (3, -2)
    canvas = torch.from_numpy(splits["test"].images[:64]).permute(0, 3, 1, 2).float()
    margin = (CANVAS_SIZE - view) // 2
    centre = canvas[..., margin : margin + view, margin : margin + view]
    # a crop shift moves the window the other way over the canvas: new photo content comes in
    crop = canvas[..., margin - dy : margin - dy + view, margin - dx : margin - dx + view]
    zero = translate(centre, (dy, dx), "zero")
    circular = translate(centre, (dy, dx), "circular")
    kept = (slice(None), slice(None), slice(dy, view), slice(0, view + dx))
    for shifted in (crop, zero, circular):  # all three move the same content the same way
        assert torch.equal(shifted[kept], centre[..., : view - dy, -dx:])
    for a, b in ((crop, zero), (crop, circular), (zero, circular)):
        differs = (a != b).flatten(1).any(dim=1)
        assert differs.all()


def test_datamodule_serves_digits_m_as_three_channel_canvases() -> None:
    data = TranslationDataModule(dataset="digits-m", max_samples=20, batch_size=10, policy="none")
    assert (data.in_channels, data.image_size) == (3, CANVAS_SIZE)
    data.setup()
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (10, 3, CANVAS_SIZE, CANVAS_SIZE)
    assert labels.tolist() == data.datasets["test"].split.labels[:10].tolist()
    expected = data.datasets["test"].split.images[:10]
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2).float() / 255)
    assert TranslationDataModule().hparams.dataset == "digits"  # the default stays


def test_presets_keep_the_digit_scale_on_the_photo_canvas() -> None:
    small, digits = (
        get_experiment("small-shift", "digits-m"),
        get_experiment("small-shift", "digits"),
    )
    assert small.canvas == CANVAS_SIZE  # the whole photo canvas, never cut to 32 px
    assert (small.max_shifts, small.curve_max_shift) == (digits.max_shifts, digits.curve_max_shift)
