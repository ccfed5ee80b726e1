"""Where the object sits on the canvas: named placements and per-sample positions.

Placing an object on a larger empty canvas is what makes translation experiments possible on small
datasets: the free margin lets shifts move the object without cropping it, and a placement
restricted to one quadrant reproduces the "cat in the corner" test (train with objects in one
corner, test in another) that separates position-tied heads from global pooling.
"""

from __future__ import annotations

import numpy as np

from invariance_recipes.common.checks import check_choice

#: Named placements. Quadrant placements keep the whole object inside that quadrant.
PLACEMENTS: tuple[str, ...] = (
    "center",
    "uniform",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
)


def check_placement(
    placement: str, canvas_size: int, object_size: int, option: str = "placement"
) -> None:
    """Raise ``ValueError`` if ``placement`` is unknown or the object does not fit its region."""
    check_choice(option, placement, PLACEMENTS)
    half = canvas_size // 2
    if placement not in ("center", "uniform") and object_size > half:
        raise ValueError(
            f"{option}={placement!r} needs the object inside one quadrant, but object_size="
            f"{object_size} is larger than the {half}-px quadrant of canvas_size={canvas_size}: "
            f"use canvas_size >= {2 * object_size} or object_size <= {half}"
        )


def position_ranges(
    placement: str, canvas_size: int, object_size: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive ranges ``((top_min, top_max), (left_min, left_max))`` of the object's corner."""
    check_placement(placement, canvas_size, object_size)
    free = canvas_size - object_size
    if placement == "center":
        return (free // 2, free // 2), (free // 2, free // 2)
    if placement == "uniform":
        return (0, free), (0, free)
    half = canvas_size // 2
    near, far = (0, half - object_size), (canvas_size - half, free)
    vertical, horizontal = placement.split("-")
    return (near if vertical == "top" else far), (near if horizontal == "left" else far)


def sample_positions(
    placement: str, count: int, canvas_size: int, object_size: int, rng: np.random.Generator
) -> np.ndarray:
    """``[count, 2]`` int64 (top, left) corners, uniform over the placement's region.

    Draws are row by row, so sample ``i`` gets the same position whatever ``count`` is: positions
    are a function of the generator's seed and the sample index.
    """
    (top_min, top_max), (left_min, left_max) = position_ranges(placement, canvas_size, object_size)
    return rng.integers((top_min, left_min), (top_max, left_max), size=(count, 2), endpoint=True)


def place(image: np.ndarray, top: int, left: int, canvas_size: int) -> np.ndarray:
    """Embed an ``H x W x C`` image in a zero (background) square canvas with its corner at (top, left)."""
    height, width = image.shape[:2]
    if not (0 <= top <= canvas_size - height and 0 <= left <= canvas_size - width):
        raise ValueError(
            f"a {height}x{width} image at ({top}, {left}) does not fit a {canvas_size}-px canvas"
        )
    # a zero canvas and one slice copy: np.pad does the same with several times the overhead,
    # and this runs for every training image of every epoch
    canvas = np.zeros((canvas_size, canvas_size, *image.shape[2:]), dtype=image.dtype)
    canvas[top : top + height, left : left + width] = image
    return canvas
