"""Max-pooling with adaptive polyphase subsampling (Chaman & Dokmanic, CVPR 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.lightning_modules.layers.polyphase import (
    PolyphaseDownsample2d,
    needs_kept_phase_only,
    phase_window,
)
from invariance_recipes.lightning_modules.layers.same_max_pool import max_pool_first


class MaxPolyphasePool2d(nn.Module):
    """``MaxPool(k, stride 1)`` then adaptive polyphase sampling: APS's ``MaxPool(k, stride s)``.

    The APS counterpart of :class:`MaxBlurPool2d`: the dense max-pool is kept and its
    fixed subsampling is replaced by the polyphase component of largest norm, as Chaman &
    Dokmanic (CVPR 2021) do for ResNet's max-pool. With ``pad_type='circular'`` the
    max-pool wraps around too, so the layer is exactly shift-consistent for circular shifts.

    Args:
        channels: channels of the input, checked on every call; ``None``: any number.
        max_pool_size: max-pool window (kornia's name; ``kernel_size`` is a deprecated alias,
            ambiguous because kornia's ``kernel_size`` is the blur).
        stride: subsampling factor.
        filt_size: binomial taps of the stride-1 blur before the selection, 1 (none) .. 7.
        norm: selection norm, see :class:`PolyphaseDownsample2d`.
        pad_type: padding of the blur and of odd sizes, see :class:`BlurPool2d`.
    Shape:
        - Input: ``[N, C, H, W]`` with ``H`` and ``W`` multiples of ``stride``.
        - Output: ``[N, C, H / stride, W / stride]``.

    Examples:
        >>> import torch
        >>> pool = MaxPolyphasePool2d(3, max_pool_size=2, stride=2)
        >>> pool(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        channels: int | None = None,
        max_pool_size: int = 2,
        stride: int = 2,
        filt_size: int = 1,
        norm: str = "l2",
        pad_type: str = "circular",
        *,
        kernel_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.pool, pad_type = max_pool_first(
            "MaxPolyphasePool2d", max_pool_size, kernel_size, pad_type
        )
        self.aps = PolyphaseDownsample2d(
            channels, stride, filt_size, norm, pad_type, device=device, dtype=dtype
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_phase(x)[0]

    def forward_with_phase(self, x: Tensor, phase: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(output, phase)``; see :meth:`PolyphaseDownsample2d.forward_with_phase`.

        Under autograd without a blur only the kept phase of the max-pool is computed (see
        :func:`needs_kept_phase_only`): a stride-``stride`` max-pool of the padded input
        moved by the phase gives the same maxima as the dense pool at that phase.
        """
        stride = self.aps.stride
        if self.aps.blur.filt_size > 1 or not needs_kept_phase_only(x, stride):
            return self.aps.forward_with_phase(self.pool(x), phase)
        if phase is None:
            with torch.no_grad():
                phase = self.aps.forward_with_phase(self.pool(x))[1]
        k = self.pool.kernel_size
        height, width = x.shape[-2] - stride + k, x.shape[-1] - stride + k
        window = phase_window(self.pool.pad(x), phase, stride, height, width)
        return F.max_pool2d(window, k, stride), phase

    def extra_repr(self) -> str:
        return f"max_pool_size={self.pool.kernel_size}, stride={self.aps.stride}"
