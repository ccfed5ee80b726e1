"""``digits-m``: the embedded digits blended into crops of real photographs, with no download.

The construction of MNIST-M (Ganin & Lempitsky, ICML 2015): every output pixel is, per channel,
``|background - digit|``, where the background is a crop of a photograph and the digit a
grey-level image (0 outside the stroke). The photographs are the two that scikit-learn ships
(``sklearn.datasets.load_sample_images``: ``china.jpg`` and ``flower.jpg``, 427 x 640 RGB).

Why it exists: on the plain ``digits`` canvas the background is empty, so zero-fill and circular
shifts give identical images and accuracy saturates. Here the photograph fills the whole canvas,
so a crop shift brings in new real content, a zero shift a black border and a circular shift
wrapped content: the three shift modes give different images.

- Geometry: each 8x8 digit is enlarged to ``DIGIT_SIZE`` (bilinear, as the DataModule enlarges
  the plain digits) and centred on a ``CANVAS_SIZE`` canvas; the photograph covers the canvas.
  The canvas leaves room for a centred view of 32 px to move by up to 8 px per axis.
- Disjoint regions: each photograph is cut into 2 bands of rows (0-212, 213-426) and 5 strips of
  128 columns, and each of these blocks belongs to one split (``PHOTO_BLOCKS``; the same blocks
  in both photographs):

      rows 0-212:    train train val   train test
      rows 213-426:  train test  train val   train

  so the test backgrounds come from regions never seen in training or validation, while every
  split still samples both photographs, top and bottom, left and right.
- Determinism: background ``i`` of a split (photograph, block, top, left) comes from row ``i``
  of ``numpy.random.default_rng([seed, split index]).random((count, 4))``, so it is a function
  of the seed, the split and the sample index only.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

import cv2
import numpy as np
from sklearn.datasets import load_sample_images

DIGIT_SIZE = 16  # side of the enlarged digit, as on the plain digits canvas
CANVAS_SIZE = 48  # side of the blended image; the photograph fills all of it
_BANDS = ((0, 213), (213, 427))  # rows of the 427-px photographs
_STRIPS = tuple((start, start + 128) for start in range(0, 640, 128))  # columns of the 640-px ones
_LAYOUT = ("train train val train test", "train test train val train")
#: Split -> its blocks ``(top, bottom, left, right)`` (half-open) of both photographs.
PHOTO_BLOCKS: Mapping[str, tuple[tuple[int, int, int, int], ...]] = MappingProxyType(
    {
        split: tuple(
            (*_BANDS[band], *_STRIPS[strip])
            for band, row in enumerate(_LAYOUT)
            for strip, owner in enumerate(row.split())
            if owner == split
        )
        for split in ("train", "val", "test")
    }
)
_SPLIT_INDEX = {name: index for index, name in enumerate(PHOTO_BLOCKS)}


@cache
def photographs() -> tuple[np.ndarray, ...]:
    """scikit-learn's two bundled photographs as read-only ``H x W x 3`` uint8 arrays."""
    images = tuple(np.ascontiguousarray(image) for image in load_sample_images().images)
    for image in images:
        image.setflags(write=False)
    return images


def draw_backgrounds(count: int, split: str, seed: int, size: int = CANVAS_SIZE) -> np.ndarray:
    """``[count, 3]`` int64 rows ``(photograph, top, left)``: where each sample's ``size``-px
    background is cropped, inside one of the split's blocks. Row ``i`` does not depend on
    ``count``."""
    blocks = np.asarray(PHOTO_BLOCKS[split])
    uniform = np.random.default_rng([seed, _SPLIT_INDEX[split]]).random((count, 4))
    photograph = (uniform[:, 0] * len(photographs())).astype(np.int64)
    top, bottom, left, right = blocks[(uniform[:, 1] * len(blocks)).astype(np.int64)].T
    rows = top + (uniform[:, 2] * (bottom - top - size + 1)).astype(np.int64)
    columns = left + (uniform[:, 3] * (right - left - size + 1)).astype(np.int64)
    return np.stack((photograph, rows, columns), axis=1)


def crop(photograph: int, top: int, left: int, size: int = CANVAS_SIZE) -> np.ndarray:
    """The ``size x size x 3`` crop of a photograph with its corner at (top, left)."""
    return photographs()[photograph][top : top + size, left : left + size]


def digit_canvas(digit: np.ndarray, size: int = CANVAS_SIZE) -> np.ndarray:
    """An ``H x W`` uint8 digit enlarged to ``DIGIT_SIZE`` and centred on a zero canvas."""
    enlarged = cv2.resize(digit, (DIGIT_SIZE, DIGIT_SIZE), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((size, size), np.uint8)
    corner = (size - DIGIT_SIZE) // 2
    canvas[corner : corner + DIGIT_SIZE, corner : corner + DIGIT_SIZE] = enlarged
    return canvas


def blend(background: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """MNIST-M blending: ``|background - digit|`` per channel (``H x W x 3`` and ``H x W``)."""
    return cv2.absdiff(background, cv2.merge([digit] * background.shape[2]))


def blend_split(digits: np.ndarray, split: str, seed: int) -> np.ndarray:
    """``N x CANVAS_SIZE x CANVAS_SIZE x 3`` uint8 digits-m images of one split.

    Args:
        digits: ``N x 8 x 8 x 1`` uint8 grey-level digits (0 = background).
        split: ``train``, ``val`` or ``test``: selects the photographs' column range.
        seed: seed of the background draws.
    """
    places = draw_backgrounds(len(digits), split, seed)
    out = np.empty((len(digits), CANVAS_SIZE, CANVAS_SIZE, 3), np.uint8)
    for i, (digit, (photograph, top, left)) in enumerate(zip(digits, places, strict=True)):
        out[i] = blend(crop(photograph, top, left), digit_canvas(digit[..., 0]))
    return out
