"""Stride-1 max-pooling that keeps the size: the first half of MaxBlurPool."""

from __future__ import annotations

from typing import Any

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
        return dense_max_pool(self.pad(x), self.kernel_size)

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
    return _eager_cpu(x) and x.is_floating_point() and not needs_grad


def _eager_cpu(x: Tensor) -> bool:
    """Whether ``x`` is on the CPU outside ``torch.compile``'s tracing (which fuses its own
    kernels), where the eager fast paths of this module apply."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def dense_max_pool(x: Tensor, kernel_size: int, padding: int = 0) -> Tensor:
    """``F.max_pool2d(x, kernel_size, stride=1, padding=padding)``, faster under autograd.

    PyTorch's CPU forward of a stride-1 max-pool with indices is slow on a contiguous ``NCHW``
    map and fast in channels-last memory, where its backward is the slow one. So the forward
    runs on a channels-last copy and hands back the maxima and their indices (positions in
    each plane, the same in either layout) contiguous, and the backward is PyTorch's own on
    the contiguous map: the same values and gradients, bit for bit (tested). Measured, 2x2
    windows, forward and backward, 1 thread: 0.25-0.38x the time on 128x32x32x32,
    128x64x16x16 and 128x128x8x8 maps (the small CNN's with LPS), 0.58-0.85x on 64x64x32x32
    and 0.63-0.82x on 16x128x56x56. Elsewhere (no gradient, an accelerator, a map already in
    channels-last memory, under ``torch.compile`` or torch.func's transforms) it is the plain
    call.
    """
    needs_grad = torch.is_grad_enabled() and x.requires_grad
    # in this order: torch.compile cannot trace the query of torch.func's wrapping, and
    # torch.func's wrapped tensors cannot be asked about memory layouts
    if (
        needs_grad
        and _eager_cpu(x)
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
        and not x.is_contiguous(memory_format=torch.channels_last)
    ):
        return _ChannelsLastForwardMaxPool.apply(x, kernel_size, padding)[0]
    return F.max_pool2d(x, kernel_size, stride=1, padding=padding)


class _ChannelsLastForwardMaxPool(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, kernel_size: int, padding: int) -> tuple[Tensor, Tensor]:
        last = x.contiguous(memory_format=torch.channels_last)
        out, indices = F.max_pool2d(last, kernel_size, 1, padding, return_indices=True)
        return out.contiguous(), indices.contiguous()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int, int], output: tuple) -> None:
        x, ctx.kernel_size, ctx.padding = inputs
        ctx.save_for_backward(x, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor, None, None]:
        x, indices = ctx.saved_tensors
        size, pad = [ctx.kernel_size] * 2, [ctx.padding] * 2
        return (
            torch.ops.aten.max_pool2d_with_indices_backward(
                grad.contiguous(), x, size, [1, 1], pad, [1, 1], False, indices
            ),
            None,
            None,
        )


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
