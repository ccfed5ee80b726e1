"""Max-pooling with learnable polyphase sampling (LPS, Rojas-Gomez et al., NeurIPS 2022)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invariance_recipes.lightning_modules.layers.learnable_polyphase import (
    LearnablePolyphaseDownsample2d,
)
from invariance_recipes.lightning_modules.layers.same_max_pool import max_pool_first


class MaxLearnablePolyphasePool2d(nn.Module):
    """``MaxPool(k, stride 1)`` then learnable polyphase downsampling: LPS's ``MaxPool(k, s)``.

    The LPS counterpart of :class:`MaxPolyphasePool2d`, as the authors replace ResNet's
    max-pool (circular pad, ``MaxPool2d(2, stride 1)``, LPD; ``models/resnet_custom.py``).

    Args:
        channels: channels of the input.
        max_pool_size: max-pool window (kornia's name; ``kernel_size`` is a deprecated alias,
            ambiguous because kornia's ``kernel_size`` is the blur).
        stride, filt_size, hidden, mixture, tau: see :class:`LearnablePolyphaseDownsample2d`.
        pad_type: padding of the blur and of odd sizes; ``circular`` wraps the max-pool too.
    """

    def __init__(
        self,
        channels: int,
        max_pool_size: int = 2,
        stride: int = 2,
        filt_size: int = 1,
        hidden: int | None = None,
        mixture: str = "gumbel",
        tau: float = 1.0,
        pad_type: str = "circular",
        *,
        kernel_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.pool, pad_type = max_pool_first(
            "MaxLearnablePolyphasePool2d", max_pool_size, kernel_size, pad_type
        )
        self.lps = LearnablePolyphaseDownsample2d(
            channels, stride, filt_size, hidden, mixture, tau, pad_type, device=device, dtype=dtype
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.lps(self.pool(x))

    def forward_with_phase(self, x: Tensor, phase: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, weights)``; see :meth:`LearnablePolyphaseDownsample2d.forward_with_phase`."""
        return self.lps.forward_with_phase(self.pool(x), phase)

    def extra_repr(self) -> str:
        return f"max_pool_size={self.pool.kernel_size}"
