"""Translation augmentation: the named policies and the albumentations pipeline that applies them.

Shifts are whole pixels (``A.Affine(translate_px=...)`` with nearest-neighbour sampling), so an
augmented image is exactly a shifted copy of the canvas, like the integer offsets of the shift
metrics. Border modes match the metrics' modes:

- ``zero``: vacated pixels become background (``cv2.BORDER_CONSTANT`` with fill 0);
- ``reflect``: ``cv2.BORDER_REFLECT_101`` (``dcb|abcd|cba``, edge not repeated), the same rule as
  ``torch.nn.functional.pad(mode="reflect")`` and ``np.pad(mode="reflect")``, so augmentation and
  the on-device shifts of the metrics agree pixel for pixel;
- ``circular``: ``cv2.BORDER_WRAP``, i.e. ``torch.roll``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from invariance_recipes.common.borders import SHIFT_MODES
from invariance_recipes.common.checks import check_choice
from invariance_recipes.datamodules.placement import place

#: Shift mode -> the OpenCV border mode that fills the pixels a shift vacates, in the order of
#: ``invariance_recipes.common.borders.SHIFT_MODES``.
BORDER_MODES: Mapping[str, int] = MappingProxyType(
    dict(
        zip(
            SHIFT_MODES,
            (cv2.BORDER_CONSTANT, cv2.BORDER_REFLECT_101, cv2.BORDER_WRAP),
            strict=True,
        )
    )
)


@dataclass(frozen=True)
class Translation:
    """A random translation: with probability ``p``, shift each axis independently by a uniform
    integer in ``[-max_shift, max_shift]``.

    Args:
        max_shift: whole pixels (>= 1), a fraction of the image side (0 < x < 1), or 0 for none.
        mode: a shift mode (``invariance_recipes.common.borders.SHIFT_MODES``).
        p: probability that an image is shifted at all.
    """

    max_shift: float
    mode: str = "zero"
    p: float = 1.0


#: Named policies. ``light`` is the usual small jitter (2 px on a 32-px canvas, like half of
#: CIFAR's pad-4-crop) applied to half of the images, so the canonical position stays common.
#: ``heavy`` always shifts by up to a quarter of the canvas: for the default digits (16 px on a
#: 32-px canvas, centred) that is exactly the free margin, so objects move anywhere without
#: being cropped (the large-shift augmentation of Azulay & Weiss 2019).
POLICIES: Mapping[str, Translation] = MappingProxyType(
    {
        "none": Translation(max_shift=0, p=0.0),
        "light": Translation(max_shift=1 / 16, mode="zero", p=0.5),
        "heavy": Translation(max_shift=1 / 4, mode="zero", p=1.0),
    }
)


def shift_pixels(max_shift: float, image_size: int) -> int:
    """``max_shift`` in whole pixels: a fraction (0 < x < 1) of the image side, rounded, at least 1
    pixel; a whole number >= 1 as is; 0 for no shift."""
    fix = f"pass 0, a whole number of pixels in [1, {image_size - 1}] or a fraction in (0, 1)"
    if max_shift < 0:
        raise ValueError(f"max_shift={max_shift} is negative: {fix}")
    if 0 < max_shift < 1:
        return max(1, round(max_shift * image_size))
    if max_shift != int(max_shift):
        raise ValueError(f"max_shift={max_shift} is neither whole pixels nor a fraction: {fix}")
    if max_shift >= image_size:
        raise ValueError(
            f"max_shift={max_shift} px does not fit the {image_size}-px image "
            f"(a shift must be smaller than the image): {fix}"
        )
    return int(max_shift)


def check_view_margin(view_size: int, canvas_size: int, max_shift: int) -> None:
    """Raise unless a ``view_size`` window fits the canvas and every shift keeps it inside."""
    if isinstance(view_size, bool) or not isinstance(view_size, int) or view_size < 1:
        raise ValueError(f"view_size={view_size!r} is invalid: use a positive integer or None")
    if view_size > canvas_size:
        raise ValueError(
            f"view_size={view_size} is larger than canvas_size={canvas_size}: use a view_size "
            f"<= {canvas_size}"
        )
    margin = (canvas_size - view_size) // 2
    if max_shift > margin:
        raise ValueError(
            f"max_shift={max_shift} px moves the {view_size}-px view beyond the {margin}-px margin "
            f"it leaves on each side of the {canvas_size}-px canvas: use max_shift <= {margin} or "
            "a smaller view_size"
        )


def resolve_translation(
    policy: str,
    image_size: int,
    max_shift: float | None = None,
    shift_mode: str | None = None,
    shift_prob: float | None = None,
) -> Translation:
    """The named ``policy`` with any given override applied, ``max_shift`` in whole pixels
    (a fraction is a share of ``image_size``, the side the network sees)."""
    check_choice("policy", policy, POLICIES)
    base = POLICIES[policy]
    mode = base.mode if shift_mode is None else shift_mode
    check_choice("shift_mode", mode, SHIFT_MODES)
    p = base.p if shift_prob is None else shift_prob
    if not 0 <= p <= 1:
        raise ValueError(f"shift_prob={p} is not a probability: pass a value in [0, 1]")
    pixels = shift_pixels(base.max_shift if max_shift is None else max_shift, image_size)
    return Translation(max_shift=pixels, mode=mode, p=p)


class CanvasTransform:
    """Object image -> model input: resize the object, place it on an empty canvas, shift it
    (training only), scale to [0, 1] or normalize, and convert to a float32 ``C x H x W`` tensor.

    The random shift is driven only by the ``seed`` passed per call, so whoever draws that seed
    (the dataset, from torch's RNG) controls reproducibility.

    Args:
        object_size: side the object image is resized to (area interpolation when shrinking,
            bilinear when enlarging).
        canvas_size: side of the square canvas.
        translation: random shift (``max_shift`` in pixels or as a fraction of the canvas), or
            ``None`` for none.
        mean, std: per-channel statistics for ``A.Normalize``; ``None`` keeps values in [0, 1].
        view_size: cut the centre ``view_size`` window after the shift (crop mode: shifting the
            canvas under a fixed window moves the window, and real canvas content enters the
            view); ``None`` keeps the whole canvas.
    """

    def __init__(
        self,
        object_size: int,
        canvas_size: int,
        translation: Translation | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        view_size: int | None = None,
    ) -> None:
        self.object_size = object_size
        self.canvas_size = canvas_size
        self.resize = A.Resize(object_size, object_size, area_for_downscale="image", strict=True)
        limit = 0 if translation is None else shift_pixels(translation.max_shift, canvas_size)
        shifts = translation is not None and limit > 0 and translation.p > 0
        steps: list[A.BasicTransform] = []
        # the one random step: seeding it alone gives the pixels that seeding the whole
        # pipeline gives (every other step is deterministic) at a fifth of the cost
        self.shift: A.Affine | None = None
        if shifts:
            self.shift = A.Affine(
                translate_px=(-limit, limit),
                interpolation=cv2.INTER_NEAREST,
                border_mode=BORDER_MODES[translation.mode],
                fill=0,
                p=translation.p,
                strict=True,
            )
            steps.append(self.shift)
        if view_size is not None:
            check_view_margin(view_size, canvas_size, limit if shifts else 0)
            steps.append(A.CenterCrop(view_size, view_size, strict=True))
        if mean is None or std is None:
            steps.append(A.ToFloat(max_value=255, strict=True))
        else:
            steps.append(A.Normalize(mean=tuple(mean), std=tuple(std), strict=True))
        steps.append(ToTensorV2())
        self.pipeline = A.Compose(steps, strict=True)

    @property
    def random(self) -> bool:
        """Whether the transform draws anything (a seed then fixes its output)."""
        return self.shift is not None

    def __call__(self, image: np.ndarray, top: int, left: int, seed: int | None) -> torch.Tensor:
        """Transform one ``H x W x C`` uint8 object image placed with its corner at (top, left)."""
        if image.shape[:2] != (self.object_size, self.object_size):
            image = self.resize(image=image)["image"]
        canvas = place(image, top, left, self.canvas_size)
        if self.shift is not None:
            self.shift.set_random_seed(seed)
        return self.pipeline(image=canvas)["image"]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(object_size={self.object_size}, "
            f"canvas_size={self.canvas_size}, pipeline={self.pipeline.transforms})"
        )
