"""MaxBlurPool: dense max-pooling, then BlurPool (Zhang, ICML 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.same_max_pool import (
    dense_max_pool,
    max_pool_first,
    takes_shift_path,
)


class MaxBlurPool2d(nn.Module):
    """Anti-aliased max-pooling: ``MaxPool(k, stride 1)`` then ``BlurPool(stride)``.

    Max-pooling with stride 2 is a dense max (which keeps the nonlinearity's benefit)
    followed by naive subsampling (which aliases); Zhang (ICML 2019, "Making Convolutional
    Networks Shift-Invariant Again") keeps the first and blurs before subsampling. The
    max-pool keeps the size (see :class:`SameMaxPool2d`; it wraps around when
    ``pad_type='circular'``), so an ``n``-pixel side becomes ``ceil(n / stride)`` like every
    downsampling layer here, and a circular layer commutes exactly with circular shifts by
    multiples of ``stride``.

    Args:
        channels: channels of the input, checked on every call; ``None``: any number.
        max_pool_size: max-pool window (kornia's name; ``kernel_size`` is a deprecated alias,
            ambiguous because kornia's ``kernel_size`` is the blur).
        filt_size: binomial taps of the blur, 1..7.
        stride: subsampling factor.
        pad_type: blur padding, see :class:`BlurPool2d`.
    Shape:
        - Input: ``[N, C, H, W]``.
        - Output: ``[N, C, ceil(H / stride), ceil(W / stride)]``.

    Examples:
        >>> import torch
        >>> pool = MaxBlurPool2d(3, max_pool_size=2, filt_size=4, stride=2)
        >>> pool(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        channels: int | None = None,
        max_pool_size: int = 2,
        filt_size: int = 4,
        stride: int = 2,
        pad_type: str = "reflect",
        *,
        kernel_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.pool, pad_type = max_pool_first("MaxBlurPool2d", max_pool_size, kernel_size, pad_type)
        self.blur = BlurPool2d(channels, filt_size, stride, pad_type, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        pool, blur = self.pool, self.blur
        if pool.circular or pool.kernel_size == 1 or takes_shift_path(x):
            return blur(pool(x))
        # Fused: the pooling pads ``after`` with -inf on both sides (the same maxima as
        # SameMaxPool2d's, without its padded copy), and the ``after - before`` windows that
        # start before the image are skipped: the dense blur gives them zero weight (no crop
        # copy forward and backward), the convolution reads past them.
        blur.check_input(x)
        before, after = pool.padding[:2]
        pooled = dense_max_pool(x, pool.kernel_size, after)
        skip = after - before
        if blur.takes_dense_path(x):
            return blur.dense(pooled, skip=skip)
        return blur(pooled[..., skip:, skip:])

    def extra_repr(self) -> str:
        return f"max_pool_size={self.pool.kernel_size}, stride={self.blur.stride}"
