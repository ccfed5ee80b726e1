"""Stride-1 max-pooling that keeps the size: the first half of MaxBlurPool."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from invariance_common.checks import check_positive
from lightning_modules.layers.padding import pad2d


class SameMaxPool2d(nn.Module):
    """``MaxPool2d(kernel_size, stride=1)`` whose output has the input's size.

    Zhang (ICML 2019) splits ``MaxPool(k, stride 2)`` into a dense max (this layer) and an
    anti-aliased subsampling. Padding is ``(k - 1) // 2`` before and ``ceil((k - 1) / 2)``
    after, the convention of :class:`BlurPool2d`. Non-circular borders see only real pixels
    (replicated edges never change a window's max, as PyTorch's ``-inf`` padding); with
    ``circular=True`` the windows wrap around, so the layer commutes exactly with circular
    shifts. (The reference uses an unpadded pool, which drops the last row and column.)

    Args:
        kernel_size: window side; 1 is the identity.
        circular: wrap windows around the borders instead of clipping them.
    """

    def __init__(self, kernel_size: int = 2, circular: bool = False) -> None:
        super().__init__()
        check_positive("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.circular = circular
        before, after = (kernel_size - 1) // 2, kernel_size // 2
        self.padding = (before, after, before, after)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel_size == 1:
            return x
        x = pad2d(x, self.padding, "circular" if self.circular else "replicate")
        return F.max_pool2d(x, self.kernel_size, stride=1)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, circular={self.circular}"
