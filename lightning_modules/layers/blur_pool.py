"""BlurPool: low-pass filter, then subsample (Zhang, ICML 2019)."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invariance_recipes.common.borders import check_border
from invariance_recipes.common.checks import check_positive
from invariance_recipes.lightning_modules.layers.binomial import binomial_filter
from invariance_recipes.lightning_modules.layers.blur_paths import (
    CONV_CHANNELS_LAST,
    DENSE,
    KRONECKER_MAX_OUTPUTS,
    choose_path,
)
from invariance_recipes.lightning_modules.layers.checks import check_filt_size, check_stride
from invariance_recipes.lightning_modules.layers.padding import pad2d


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

    Computation: each call takes the path that :func:`~invariance_recipes.lightning_modules.layers.blur_paths.
    choose_path` measured fastest for its padding, filter, map size, dtype and thread count:
    the depthwise convolution (zero padding fused into ``conv2d``; in channels-last memory
    where that was faster) or dense matrix products. For the latter, padding, blur and
    subsampling along one axis are one linear map, a ``[size, ceil(size / stride)]`` matrix
    built by running the reference computation on the identity (see :func:`blur_matrix`), and
    the 2D layer is its product along both axes (one product with their Kronecker product
    when a plane has at most ``KRONECKER_MAX_OUTPUTS`` outputs); a channels-last map is
    multiplied in its own memory layout, with no copy. All paths give the same
    values up to float rounding (the taps are exact dyadic fractions). The dense products
    multiply every pixel by the zero taps of far-away outputs too, so there a non-finite
    input makes its whole plane NaN instead of a neighbourhood.

    Args:
        channels: channels of the input, checked on every call; ``None``: any number (the
            blur is depthwise, the same filter for every channel, so it needs no count;
            timm's ``aa_layer`` passes it).
        filt_size: binomial taps per axis, 1..7 (4 is Zhang's default trade-off).
        stride: subsampling factor; 1 blurs without subsampling.
        pad_type: ``reflect`` (reference default), ``replicate``, ``zero`` or ``circular``
            (commutes exactly with circular shifts by multiples of ``stride``).
        device, dtype: where and in which precision the filter is made (the factory arguments
            every torch layer takes, and that timm's ``aa_layer`` passes).
    Shape:
        - Input: ``[N, C, H, W]``.
        - Output: ``[N, C, ceil(H / stride), ceil(W / stride)]``.

    Examples:
        >>> import torch
        >>> pool = BlurPool2d(3, filt_size=4, stride=2)
        >>> pool(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 3, 5, 5])
        >>> flat = torch.full((1, 3, 8, 8), 0.5)  # the taps sum to 1: a flat image stays flat
        >>> torch.equal(pool(flat), torch.full((1, 3, 4, 4), 0.5))
        True
    """

    def __init__(
        self,
        channels: int | None = None,
        filt_size: int = 4,
        stride: int = 2,
        pad_type: str = "reflect",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels is not None:
            check_positive("channels", channels)
        check_filt_size(filt_size)
        check_stride(stride)
        pad_type = check_border("pad_type", pad_type)
        self.channels = channels
        self.filt_size = filt_size
        self.stride = stride
        self.pad_type = pad_type
        before, after = (filt_size - 1) // 2, filt_size // 2
        self.padding = (before, after, before, after)
        taps = binomial_filter(filt_size)
        # one filter per channel (the depthwise weight), or one shared by any number of them
        kernel = (taps[:, None] * taps[None, :]).expand(channels or 1, 1, filt_size, filt_size)
        kernel = kernel.to(device=device, dtype=dtype or kernel.dtype).contiguous()
        self.register_buffer("filt", kernel, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self.filt_size == 1:
            return x[:, :, :: self.stride, :: self.stride]
        path = choose_path(x, self.filt_size, self.pad_type)
        if path == DENSE:
            return self.dense(x)
        return self.convolve(x, channels_last=path == CONV_CHANNELS_LAST)

    def convolve(self, x: Tensor, channels_last: bool = False) -> Tensor:
        """The blur as one depthwise convolution, in the memory format of ``x``.

        Zero padding is ``conv2d``'s own (no padded copy): an even filter pads one pixel more
        after than before, which ``conv2d``'s symmetric padding gives with one leading zero
        tap, needed only along an axis whose last window would otherwise be dropped.
        """
        in_channels_last = x.is_contiguous(memory_format=torch.channels_last)
        in_channels_last = in_channels_last and not x.is_contiguous()
        weight = self.depthwise_weight(x)
        if self.pad_type == "zero":
            before, after = self.padding[0], self.padding[1]
            extend = [
                int(after > before and (size - 1) % self.stride == 0) for size in x.shape[-2:]
            ]
            weight = F.pad(weight, (extend[1], 0, extend[0], 0))
            padding = tuple(before + e for e in extend)
        else:
            x, padding = pad2d(x, self.padding, self.pad_type), (0, 0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(x, weight, stride=self.stride, padding=padding, groups=x.shape[1])
        return out if in_channels_last else out.contiguous()

    def depthwise_weight(self, x: Tensor) -> Tensor:
        """The ``[C, 1, k, k]`` filter for ``x``'s ``C`` channels, in its dtype."""
        weight = self.filt.to(x.dtype)
        return weight if len(weight) == x.shape[1] else weight.expand(x.shape[1], -1, -1, -1)

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line ``ValueError`` unless x is [batch, channels, height, width]."""
        if x.ndim != 4 and self.channels is None:
            raise ValueError(
                f"BlurPool2d got an input of shape {tuple(x.shape)}: pass a "
                "[batch, channels, height, width] tensor"
            )
        if self.channels is not None and (x.ndim != 4 or x.shape[1] != self.channels):
            raise ValueError(
                f"BlurPool2d(channels={self.channels}) got an input of shape {tuple(x.shape)}: "
                f"pass a [batch, {self.channels}, height, width] tensor or build the layer "
                "with channels equal to the input's"
            )

    def takes_dense_path(self, x: Tensor) -> bool:
        """Whether a call on ``x`` computes the blur with :meth:`dense` (see the class)."""
        return self.filt_size > 1 and choose_path(x, self.filt_size, self.pad_type) == DENSE

    def dense(self, x: Tensor, skip: int = 0) -> Tensor:
        """The blur as matrix products along the width and the height.

        The first ``skip`` rows and columns of ``x`` get zero weight: :class:`MaxBlurPool2d`
        passes its pooled map uncropped, which saves a copy forward and backward.
        """
        b, c, h, w = x.shape
        h, w = h - skip, w - skip
        left, right, top, bottom = self.padding
        pad_type = self.pad_type
        if pad_type == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
            pad_type = "replicate"  # pad2d's fallback, decided on both sides as pad2d does
        options = (self.filt_size, self.stride, pad_type, x.device, x.dtype)
        # torch.compile traces the construction instead (it folds it into constants).
        matrix = _blur_matrix if torch.compiler.is_compiling() else blur_matrix
        rows, cols = matrix(h, top, bottom, *options), matrix(w, left, right, *options)
        if skip:
            rows, cols = F.pad(rows, (0, 0, skip, 0)), F.pad(cols, (0, 0, skip, 0))
        kronecker = rows.shape[1] * cols.shape[1] <= KRONECKER_MAX_OUTPUTS
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return _channels_last_products(x, rows, cols, kronecker)
        if kronecker:
            plane = torch.kron(rows, cols)  # [h * w, outputs]: one product for a small plane
            return (x.reshape(b, c, -1) @ plane).view(b, c, rows.shape[1], cols.shape[1])
        return rows.mT @ (x @ cols)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, filt_size={self.filt_size}, stride={self.stride}, "
            f"pad_type={self.pad_type!r}"
        )


def _channels_last_products(x: Tensor, rows: Tensor, cols: Tensor, kronecker: bool) -> Tensor:
    """:meth:`BlurPool2d.dense` on a channels-last ``x``, in its memory as it lies.

    The memory of a channels-last map is ``[N, H, W, C]``, so the matrices multiply from the
    left, over the batch: no copy into the contiguous layout and back, forward or backward.
    (Those copies were a fifth of the blurpool network's training step; without them the
    step took 0.742x the time at 1 thread.) The result is channels-last.
    """
    b, c, h, w = x.shape
    rows_out, cols_out = rows.shape[1], cols.shape[1]
    pixels = x.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous
    if kronecker:  # one product for a small plane, as in the contiguous layout
        out = torch.kron(rows, cols).mT @ pixels.reshape(b, h * w, c)
    else:
        out = cols.mT @ pixels.reshape(b * h, w, c)  # along the width: [N * H, W', C]
        out = rows.mT @ out.view(b, h, cols_out * c)  # then the height: [N, H', W' * C]
    return out.view(b, rows_out, cols_out, c).permute(0, 3, 1, 2)


def _blur_matrix(
    size: int,
    before: int,
    after: int,
    filt_size: int,
    stride: int,
    pad_type: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """``[size, ceil(size / stride)]`` matrix ``M``: ``x @ M`` pads rows ``x`` by ``before``
    and ``after`` with :func:`pad2d`, blurs them with :func:`binomial_filter` taps and keeps
    every ``stride``-th output, exactly the reference computation along one axis.

    Built by running that computation on the identity (in float64, so every entry is an
    exact sum of taps), so it follows :func:`pad2d` for every size and padding mode.
    """
    # A normal tensor even when first asked for under inference mode (validation), so that
    # training can use the cached matrix afterwards.
    with torch.inference_mode(False):
        taps = binomial_filter(filt_size).double().view(1, 1, 1, filt_size)
        identity = torch.eye(size, dtype=torch.float64).view(size, 1, 1, size)
        padded = pad2d(identity, (before, after, 0, 0), pad_type)
        rows = F.conv2d(padded, taps, stride=(1, stride))
        return rows.view(size, -1).to(device, dtype)


blur_matrix = lru_cache(maxsize=512)(_blur_matrix)
