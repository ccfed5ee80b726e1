"""Ideal (FFT) low-pass filtering, downsampling and upsampling (Michaeli, Michaeli & Soudry,
CVPR 2023, "Alias-Free Convnets: Fractional Shift Invariance via Polynomial Activations")."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor, nn

from invariance_recipes.lightning_modules.layers.checks import check_stride


def band_response(size: int, band: float, edge: float, dtype: torch.dtype) -> Tensor:
    """Gain of each FFT bin of a ``size``-point axis: 1 for ``|k| < band``, ``edge`` for
    ``|k| == band``, 0 above (``k`` in cycles per ``size`` samples)."""
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=dtype).abs()
    return torch.where(k < band, 1.0, torch.where(k == band, edge, 0.0)).to(dtype)


def _lowpass_rows(x: Tensor, band: float, edge: float) -> Tensor:
    """Ideal low-pass of each row of ``x`` (periodic), see :func:`band_response`."""
    size = x.shape[-1]
    response = band_response(size, band, edge, x.dtype)[: size // 2 + 1]
    return torch.fft.irfft(torch.fft.rfft(x) * response, n=size)


def _downsample_matrix(size: int, stride: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[size, ceil(size / stride)]`` matrix of :func:`ideal_downsample` along one axis."""
    with torch.inference_mode(False):
        kept = math.ceil(size / stride)
        identity = torch.eye(size, dtype=torch.float64)
        return _lowpass_rows(identity, kept / 2, 0.0)[:, ::stride].to(device, dtype)


def _upsample_matrix(size: int, factor: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[size, size * factor]`` matrix of :func:`ideal_upsample` along one axis."""
    with torch.inference_mode(False):
        sparse = torch.zeros(size, size * factor, dtype=torch.float64)
        sparse[:, ::factor] = torch.eye(size, dtype=torch.float64)
        return (_lowpass_rows(sparse, size / 2, 0.5) * factor).to(device, dtype)


def _interpolation_matrix(
    size: int, factor: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``[size, size * (factor - 1)]``: the columns of :func:`_upsample_matrix` between the
    samples (column ``j * (factor - 1) + r - 1`` is fine position ``j * factor + r``). The
    columns at the samples are the identity, as the interpolation passes through them."""
    full = _upsample_matrix(size, factor, device, dtype)
    return full.view(size, size, factor)[:, :, 1:].reshape(size, size * (factor - 1))


downsample_matrix = lru_cache(maxsize=256)(_downsample_matrix)
upsample_matrix = lru_cache(maxsize=256)(_upsample_matrix)
interpolation_matrix = lru_cache(maxsize=256)(_interpolation_matrix)
_UNCACHED = {
    downsample_matrix: _downsample_matrix,
    upsample_matrix: _upsample_matrix,
    interpolation_matrix: _interpolation_matrix,
}


def _matrix(build, size: int, factor: int, x: Tensor) -> Tensor:
    # torch.compile traces the construction instead (it folds it into constants).
    if torch.compiler.is_compiling():
        build = _UNCACHED[build]
    return build(size, factor, x.device, x.dtype)


def _separable(x: Tensor, build, factor: int) -> Tensor:
    """Apply a per-axis linear map (``build(size, factor, device, dtype)``) to both axes."""
    h, w = x.shape[-2:]
    rows, cols = _matrix(build, h, factor, x), _matrix(build, w, factor, x)
    # Each axis is one matrix product over all planes; the other axis must then be the last
    # dimension, which takes one transposing copy. The result is left transposed in memory
    # (the last two dimensions swapped), and an input stored that way starts with its rows,
    # so an upsampling followed by a downsampling copies twice in all, not four times.
    if x.mT.is_contiguous() and not x.is_contiguous():
        return (x.mT @ rows).mT.contiguous() @ cols
    return ((x @ cols).mT.contiguous() @ rows).mT


def without_nyquist(x: Tensor) -> Tensor:
    """``x`` with the Nyquist frequency (``k = n / 2``) of each even-sized spatial axis removed:
    what ``ideal_downsample(ideal_upsample(x, f), f)`` returns, at the cost of two passes.

    The Nyquist component of a length-``n`` axis is ``s * mean(s * x)`` with ``s = (-1)^i``.
    """
    for dim in (-1, -2):
        size = x.shape[dim]
        if size % 2 == 0:
            shape = [1] * x.ndim
            shape[dim] = size
            sign = torch.ones(size, device=x.device, dtype=x.dtype)
            sign[1::2] = -1
            sign = sign.view(shape)
            x = x - sign * (x * sign).mean(dim=dim, keepdim=True)
    return x


def ideal_downsample(x: Tensor, stride: int = 2) -> Tensor:
    """Remove every frequency the coarser grid cannot hold, then keep every ``stride``-th pixel.

    An ``n``-pixel side becomes ``m = ceil(n / stride)``; the kept band is ``|k| < m / 2``, so
    the new Nyquist bin (``k = m / 2`` for even ``m``) is removed too: a component there
    would be a cosine that a half-pixel shift turns into an invisible sine. The map is
    treated as periodic.
    """
    return _separable(x, downsample_matrix, stride)


def ideal_upsample(x: Tensor, factor: int = 2) -> Tensor:
    """Trigonometric (ideal sinc) interpolation onto a ``factor`` times finer grid.

    Zeros are inserted between the samples and every spectral image above the original band
    is removed; the original Nyquist bin (even sizes) is split evenly between ``+-n/2``, so a
    real input stays real and the result passes through the original samples.
    """
    if factor == 1:
        return x
    # Per axis, the samples are copied and only the positions between them are products (half
    # the multiply-adds of the full matrix); the copy into the interleaved layout is also the
    # transposing copy that the second axis needs (see _separable).
    h, w = x.shape[-2:]
    fine = _interleave(x, x @ _matrix(interpolation_matrix, w, factor, x), factor)
    return _interleave(fine, fine @ _matrix(interpolation_matrix, h, factor, x), factor)


def ideal_downsample_square(x: Tensor, stride: int = 2) -> Tensor:
    """``ideal_downsample(x.square(), stride)``, with a gradient that takes one pass over ``x``.

    Autograd's gradient of the square (``2 x``, then times the incoming gradient) makes three
    passes over ``x`` and allocates a map of its size for each; here the factor 2 goes onto the
    incoming gradient, which is ``stride**2`` times smaller, and the downsampling's adjoint is
    multiplied by ``x`` in place. The alias-free activation squares on its 2x grid, where
    this was a fifth of the training step. Values and gradients are those of the plain
    expression (tested); without a gradient to compute, or when compiling (the compiler
    fuses the square itself), it is the plain expression.
    """
    if torch.is_grad_enabled() and x.requires_grad and not torch.compiler.is_compiling():
        return _DownsampledSquare.apply(x, stride)
    return ideal_downsample(x.square(), stride)


class _DownsampledSquare(torch.autograd.Function):
    # forward and backward are plain torch operations, so torch.func's transforms apply
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, stride: int) -> Tensor:
        return ideal_downsample(x.square(), stride)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.stride = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        h, w = x.shape[-2:]
        rows = _matrix(downsample_matrix, h, ctx.stride, x)
        cols = _matrix(downsample_matrix, w, ctx.stride, x)
        # the adjoint rows @ g @ cols^T, ending with the product that leaves it in x's layout
        spread = (2 * grad).mT.contiguous() @ rows.mT
        spread = spread.mT.contiguous() @ cols.mT
        if torch.is_grad_enabled():  # a second derivative needs the product out of place
            return spread * x, None
        return spread.mul_(x), None


def _interleave(samples: Tensor, between: Tensor, factor: int) -> Tensor:
    """``[..., a, b]`` samples and ``[..., a, b * (factor - 1)]`` values between them ->
    ``[..., b * factor, a]``: the fine axis, transposed to the front of the last two (one
    copy, written in that layout)."""
    *batch, a, b = samples.shape
    parts = (samples.mT.unsqueeze(-2), between.view(*batch, a, b, factor - 1).movedim(-3, -1))
    return torch.cat(parts, dim=-2).view(*batch, b * factor, a)


class IdealLowPassDownsample2d(nn.Module):
    """Alias-free downsampling: an ideal (FFT) low-pass below the new Nyquist, then subsampling.

    BlurPool's binomial filter only attenuates the frequencies a stride-2 grid cannot hold;
    the ideal filter removes them, so the output is the exact samples of a band-limited
    signal and a fractional (sub-pixel) shift of a band-limited input shifts the output by
    half as much (Michaeli, Michaeli & Soudry, CVPR 2023; their ``models/ideal_lpf.py``
    ``LPF_RFFT`` followed by subsampling). The FFT treats the map as periodic, so only
    circular padding elsewhere keeps a whole network consistent.

    Computation: the ideal filter has no finite support, so each output pixel depends on every
    input pixel of its row and column. Filter and subsampling along one axis are one dense
    ``[n, ceil(n / stride)]`` matrix (built once per size from the FFT definition, cached), and
    the layer is its product along both axes: ``O(C H W (H + W) / stride)`` multiply-adds,
    against ``O(C H W k^2 / stride^2)`` for a ``k``-tap BlurPool, so it costs more on larger
    maps (the benchmark recipe measures it); on the small maps here matrix products beat an
    FFT. An ``n``-pixel side becomes ``ceil(n / stride)``.

    Args:
        stride: subsampling factor.
    Shape:
        - Input: ``[N, C, H, W]`` with ``H`` and ``W`` multiples of ``stride``.
        - Output: ``[N, C, H / stride, W / stride]``.

    Examples:
        >>> import torch
        >>> down = IdealLowPassDownsample2d(stride=2)
        >>> down(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(
        self,
        stride: int = 2,
        channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """``channels``, ``device`` and ``dtype`` are accepted and unused (no weights), so the
        layer plugs in where a factory passes them, e.g. timm's ``aa_layer``."""
        super().__init__()
        check_stride(stride)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return ideal_downsample(x, self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"
