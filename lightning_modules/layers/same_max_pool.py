"""Stride-1 max-pooling that keeps the size: the first half of MaxBlurPool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.layers.checks import renamed_argument
from invariance_recipes.lightning_modules.layers.padding import pad2d


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
    Shape:
        - Input: ``[N, C, H, W]``.
        - Output: the same shape (stride 1).

    Examples:
        >>> import torch
        >>> SameMaxPool2d(2)(torch.randn(2, 3, 7, 7)).shape
        torch.Size([2, 3, 7, 7])
    """

    def __init__(
        self,
        kernel_size: int = 2,
        circular: bool = False,
        channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``channels``, ``device`` and ``dtype`` are accepted and unused (no weights)."""
        super().__init__()
        check_positive("kernel_size", kernel_size)
        self.kernel_size = kernel_size
        self.circular = circular
        before, after = (kernel_size - 1) // 2, kernel_size // 2
        self.padding = (before, after, before, after)

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel_size == 1:
            return x
        if takes_shift_path(x):
            before, after = self.padding[:2]
            for dim in (-1, -2):
                x = window_max(x, dim, before, after, self.circular)
            return x
        padded = self.pad(x)
        if not takes_channels_last_kernel(padded):
            return F.max_pool2d(padded, self.kernel_size, stride=1)
        last = padded.contiguous(memory_format=torch.channels_last)
        # back to the layout the pool gives a contiguous map, so what follows runs as before
        return F.max_pool2d(last, self.kernel_size, stride=1).contiguous()

    def pad(self, x: Tensor) -> Tensor:
        """``x`` padded as the windows see it: wrapped, or edges replicated (a replicated
        edge never changes a window's max)."""
        return pad2d(x, self.padding, "circular" if self.circular else "replicate")

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, circular={self.circular}"


def takes_shift_path(x: Tensor) -> bool:
    """Whether a stride-1 max runs as maxima of shifted views rather than ``max_pool2d``.

    On CPU without autograd, PyTorch's ``max_pool2d`` (no indices kept) is several times
    slower than maxima of ``k - 1`` shifted views per axis written in place. Measured, 2x2
    windows, float32, 2 threads, in the test pass of the default run: 2176x32x32x32 2455 ms
    against 606 ms (a copy: 260 ms); 256x32x32x32 308 against 81 ms. With autograd the
    in-place writes are not allowed and ``max_pool2d`` (its training kernel) stays; so it does
    under ``torch.compile``, which cannot trace writes into views and fuses its own kernel.
    """
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    return eager_cpu and x.is_floating_point() and not needs_grad


def takes_channels_last_kernel(x: Tensor) -> bool:
    """Whether a stride-1 ``max_pool2d`` under autograd runs on a channels-last copy of ``x``.

    PyTorch's CPU kernel for a stride-1 max-pool that keeps its indices is much slower on a
    contiguous ``NCHW`` map than on the same map in channels-last memory; converting there and
    back wins even with the two copies, and the output and gradients are identical (tested).
    Measured, 2x2 windows, forward and backward: on 128x32x33x33, 128x64x17x17 and
    128x128x9x9 maps (the small CNN's with LPS) 0.48-0.63x at 1 thread and 0.51-0.72x at 2;
    on 16x128x57x57 0.79-0.88x and 0.79-1.04x. A stride-2 pool gains nothing, so only this
    layer converts. Not under ``torch.compile``, which fuses its own kernel.
    """
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    return eager_cpu and x.ndim == 4 and not x.is_contiguous(memory_format=torch.channels_last)


def window_max(x: Tensor, dim: int, before: int, after: int, circular: bool) -> Tensor:
    """``out[i] = max(x[i - before], ..., x[i + after])`` along ``dim``: windows clipped at the
    borders, or wrapped around them when ``circular``. Writes in place: not for autograd."""
    out = x.clone()
    size = x.shape[dim]
    for offset in range(-before, after + 1):
        if circular and offset % size:  # out[i] sees x[(i + offset) mod size]: two runs
            shift = offset % size
            _max_into(out.narrow(dim, 0, size - shift), x.narrow(dim, shift, size - shift))
            _max_into(out.narrow(dim, size - shift, shift), x.narrow(dim, 0, shift))
        elif not circular and 0 < abs(offset) < size:  # out[i] sees x[i + offset] if inside
            length = size - abs(offset)
            source = x.narrow(dim, max(offset, 0), length)
            _max_into(out.narrow(dim, max(-offset, 0), length), source)
    return out


def _max_into(target: Tensor, source: Tensor) -> None:
    torch.maximum(target, source, out=target)


def max_pool_first(
    layer: str, max_pool_size: int, kernel_size: int | None, pad_type: str
) -> tuple[SameMaxPool2d, str]:
    """The dense max a ``Max*Pool2d`` layer runs before its downsampling, wrapping when the
    layer pads circularly, and the checked ``pad_type`` (``kernel_size``: the deprecated name
    of ``max_pool_size``)."""
    size = renamed_argument(layer, "kernel_size", kernel_size, "max_pool_size", max_pool_size)
    check_positive("max_pool_size", size)
    pad_type = check_border("pad_type", pad_type)
    return SameMaxPool2d(size, circular=pad_type == "circular"), pad_type
