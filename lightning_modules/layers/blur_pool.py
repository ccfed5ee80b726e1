"""BlurPool: low-pass filter, then subsample (Zhang, ICML 2019)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.layers.binomial import binomial_filter
from lightning_modules.layers.checks import (
    check_choice,
    check_filt_size,
    check_positive,
    check_stride,
)
from lightning_modules.layers.padding import PAD_TYPES, pad2d


class BlurPool2d(nn.Module):
    """Anti-aliased subsampling: a depthwise binomial blur evaluated at every ``stride``-th pixel.

    Subsampling without a low-pass filter aliases, so a one-pixel shift of the input can
    change the output completely (Azulay & Weiss, JMLR 2019). Blurring first removes the
    frequencies the coarser grid cannot represent (Zhang, ICML 2019, "Making Convolutional
    Networks Shift-Invariant Again").

    The filter is the outer product of :func:`binomial_filter` taps. Padding follows the
    reference layer (``antialiased_cnns.BlurPool``): ``(filt_size - 1) // 2`` pixels before
    and ``ceil((filt_size - 1) / 2)`` after, so for the same settings the outputs agree with
    the published layer (the same padded depthwise convolution with the same, exactly
    representable filter), and an ``n``-pixel side becomes ``ceil(n / stride)``.
    ``filt_size=1`` is plain subsampling ``x[..., ::s, ::s]``.
    Inputs that are not larger than the padding work too: ``reflect`` then falls back to
    ``replicate`` for that call (see :func:`pad2d`).

    The filter is a non-persistent buffer: it is not part of the state dict, so a model
    converted with BlurPool still loads the state dict of the original model.

    Args:
        channels: channels of the input (the blur is depthwise).
        filt_size: binomial taps per axis, 1..7 (4 is Zhang's default trade-off).
        stride: subsampling factor; 1 blurs without subsampling.
        pad_type: ``reflect`` (reference default), ``replicate``, ``zero`` or ``circular``
            (commutes exactly with circular shifts by multiples of ``stride``).
    """

    def __init__(
        self, channels: int, filt_size: int = 4, stride: int = 2, pad_type: str = "reflect"
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_filt_size(filt_size)
        check_stride(stride)
        check_choice("pad_type", pad_type, PAD_TYPES)
        self.channels = channels
        self.filt_size = filt_size
        self.stride = stride
        self.pad_type = pad_type
        before, after = (filt_size - 1) // 2, filt_size // 2
        self.padding = (before, after, before, after)
        taps = binomial_filter(filt_size)
        kernel = (taps[:, None] * taps[None, :]).expand(channels, 1, filt_size, filt_size)
        self.register_buffer("filt", kernel.contiguous(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"BlurPool2d(channels={self.channels}) got an input of shape {tuple(x.shape)}: "
                f"pass a [batch, {self.channels}, height, width] tensor or build the layer "
                "with channels equal to the input's"
            )
        if self.filt_size == 1:
            return x[:, :, :: self.stride, :: self.stride]
        x = pad2d(x, self.padding, self.pad_type)
        # One strided depthwise convolution: on CPU it was usually faster than a separable
        # pair of 1D convolutions or one single-channel convolution over batch x channels;
        # it is one kernel on GPU and exactly the reference's computation.
        return F.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, filt_size={self.filt_size}, stride={self.stride}, "
            f"pad_type={self.pad_type!r}"
        )
