"""One clear error for inputs a network cannot take, instead of a shape error from a layer."""

from __future__ import annotations

import math

from torch import Tensor


def check_input(
    x: Tensor, *, in_channels: int, image_size: int, total_stride: int, fixed_size: bool
) -> None:
    """Check channels, the minimum size, and (for flattening heads) the size built for."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"the network takes [batch, {in_channels}, height, width] images "
            f"(in_channels={in_channels}), got shape {tuple(x.shape)}: build it with "
            "in_channels equal to the images' channels"
        )
    height, width = x.shape[-2:]
    if min(height, width) < total_stride:
        raise ValueError(
            f"a {height}x{width} input is smaller than the network's total stride "
            f"{total_stride}: use images of at least {total_stride}x{total_stride} or fewer "
            "downsampling stages"
        )
    expected = math.ceil(image_size / total_stride)
    if fixed_size and (math.ceil(height / total_stride), math.ceil(width / total_stride)) != (
        expected,
        expected,
    ):
        raise ValueError(
            f"the flattening head was built for image_size={image_size}, got a {height}x{width} "
            f"input: build the network with image_size={height} or use head='gap'"
        )
