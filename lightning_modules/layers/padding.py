"""Padding of the anti-aliasing layers, with fallbacks so that any input size works."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from invariance_recipes.common.borders import BORDERS, check_border

#: The pad types every layer takes: the project's border names (``zeros`` is read as ``zero``).
PAD_TYPES = BORDERS
_TORCH_MODES = {"reflect": "reflect", "replicate": "replicate", "zero": "constant"}


def pad2d(x: Tensor, padding: tuple[int, int, int, int], pad_type: str) -> Tensor:
    """Pad the last two dimensions by ``(left, right, top, bottom)`` pixels.

    ``pad_type`` is ``reflect``, ``replicate``, ``zero`` or ``circular``. Unlike
    ``F.pad``, every input size works: reflection needs each padded dimension to be larger
    than its padding, so a call on a smaller input falls back to ``replicate`` (the closest
    mode that exists for any size); circular padding that wraps more than once repeats the
    input periodically, which keeps a circular layer exactly shift-equivariant.
    """
    pad_type = check_border("pad_type", pad_type)
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    if pad_type == "circular":
        if max(top, bottom) > height or max(left, right) > width:
            return _periodic(_periodic(x, -1, left, right), -2, top, bottom)
        return F.pad(x, padding, mode="circular")
    if pad_type == "reflect" and (max(top, bottom) >= height or max(left, right) >= width):
        pad_type = "replicate"
    return F.pad(x, padding, mode=_TORCH_MODES[pad_type])


def _periodic(x: Tensor, dim: int, before: int, after: int) -> Tensor:
    """Periodic extension along ``dim`` for paddings larger than the input."""
    size = x.shape[dim]
    index = torch.arange(-before, size + after, device=x.device) % size
    return x.index_select(dim, index)
