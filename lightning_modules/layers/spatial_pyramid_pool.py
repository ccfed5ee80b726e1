"""Spatial pyramid pooling (He, Zhang, Ren & Sun, ECCV 2014)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.common.checks import check_choice

SPP_MODES = ("max", "avg")


class SpatialPyramidPool2d(nn.Module):
    """Pool the map over ``g x g`` grids for each ``g`` in ``levels`` and concatenate.

    The 1x1 level is global pooling (position-free); the finer grids keep coarse position,
    so a head on the pyramid sits between global pooling and flattening. Any input size
    gives the same number of features, ``channels * sum(g * g)``, laid out level by level,
    each level ``[channels, g, g]`` flattened (grids finer than the map reuse pixels, as
    adaptive pooling does).

    Args:
        levels: grid sides, coarse to fine (He et al. use 1, 2, 4 with more levels).
        mode: ``max`` (the paper's) or ``avg``.
    Shape:
        - Input: ``[N, C, H, W]`` with ``H, W >=`` the finest grid.
        - Output: ``[N, C * sum(g * g for g in levels)]``, whatever ``H`` and ``W`` are.

    Examples:
        >>> import torch
        >>> spp = SpatialPyramidPool2d(levels=(1, 2, 4))
        >>> spp(torch.randn(2, 8, 9, 13)).shape
        torch.Size([2, 168])
    """

    def __init__(
        self,
        levels: Sequence[int] = (1, 2, 4),
        mode: str = "max",
        channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``channels``, ``device`` and ``dtype`` are accepted and unused (no weights)."""
        super().__init__()
        check_choice("mode", mode, SPP_MODES)
        if not levels or any(
            isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in levels
        ):
            raise ValueError(
                f"levels={tuple(levels)!r} is invalid: list positive grid sides, e.g. (1, 2, 4)"
            )
        self.levels = tuple(levels)
        self.mode = mode

    def features(self, channels: int) -> int:
        """Width of the output for a map of ``channels`` channels."""
        return channels * sum(g * g for g in self.levels)

    def forward(self, x: Tensor) -> Tensor:
        pool = F.adaptive_max_pool2d if self.mode == "max" else F.adaptive_avg_pool2d
        return torch.cat([pool(x, g).flatten(1) for g in self.levels], dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}"
