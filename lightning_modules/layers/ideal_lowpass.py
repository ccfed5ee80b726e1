"""Ideal (FFT) low-pass filtering, downsampling and upsampling (Michaeli, Michaeli & Soudry,
CVPR 2023, "Alias-Free Convnets: Fractional Shift Invariance via Polynomial Activations")."""

from __future__ import annotations

import math
from functools import lru_cache

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


def _square_grid(size: int, stride: int) -> tuple[int, int]:
    """``(fine, out)``: the side of the grid :func:`ideal_upsampled_square` squares on, and
    the output's side."""
    out = math.ceil(size / stride)
    return size + math.ceil(out / 2), out


def _band_limited(samples: int, positions: Tensor, band: float, nyquist: bool) -> Tensor:
    """``[samples, len(positions)]`` float64: the periodic interpolant of ``samples`` values with
    only the frequencies ``|k| < band`` (with ``nyquist``, also ``k = band`` split evenly
    between ``+-band``), evaluated at ``positions`` (in sample spacings)."""
    lag = positions[None, :] - torch.arange(samples, dtype=torch.float64)[:, None]
    total = torch.ones_like(lag)
    for k in range(1, math.ceil(band)):
        total += 2 * torch.cos(2 * math.pi * k * lag / samples)
    if nyquist:
        total += torch.cos(2 * math.pi * band * lag / samples)
    return total / samples


def _square_upsample_matrix(
    size: int, stride: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``[size, fine]``: :func:`ideal_upsample` along one axis onto the squaring grid."""
    with torch.inference_mode(False):
        fine, _ = _square_grid(size, stride)
        positions = torch.arange(fine, dtype=torch.float64) * size / fine
        return _band_limited(size, positions, size / 2, size % 2 == 0).to(device, dtype)


def _square_downsample_matrix(
    size: int, stride: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``[fine, out]``: the ideal low-pass below the output's Nyquist, sampled at the output's
    pixels, along one axis of the squaring grid."""
    with torch.inference_mode(False):
        fine, out = _square_grid(size, stride)
        positions = torch.arange(out, dtype=torch.float64) * stride * fine / size
        return _band_limited(fine, positions, out / 2, False).to(device, dtype)


downsample_matrix = lru_cache(maxsize=256)(_downsample_matrix)
upsample_matrix = lru_cache(maxsize=256)(_upsample_matrix)
interpolation_matrix = lru_cache(maxsize=256)(_interpolation_matrix)
square_upsample_matrix = lru_cache(maxsize=256)(_square_upsample_matrix)
square_downsample_matrix = lru_cache(maxsize=256)(_square_downsample_matrix)
_UNCACHED = {
    downsample_matrix: _downsample_matrix,
    upsample_matrix: _upsample_matrix,
    interpolation_matrix: _interpolation_matrix,
    square_upsample_matrix: _square_upsample_matrix,
    square_downsample_matrix: _square_downsample_matrix,
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


def ideal_upsampled_square(x: Tensor, stride: int = 1) -> Tensor:
    """``ideal_downsample(ideal_upsample(x, 2).square(), 2 * stride)``, squared on the smallest
    grid that gives the same function.

    The interpolation holds the frequencies ``|k| <= n / 2`` of an ``n``-pixel side, so its
    square holds ``|k| <= n``; on a grid of ``f`` points the part above ``f / 2`` folds back to
    ``|k| >= f - n``. The output keeps only ``|k| < m / 2`` (``m = ceil(n / stride)``), so any
    ``f >= n + m / 2`` folds nothing into it: ``f = n + ceil(m / 2)`` instead of ``2 n``, 1.25
    to 1.5 times the side where the 2x grid doubles it, and a square on 0.39-0.56 of its
    pixels. Each axis is one dense product with the interpolant evaluated on that grid, and
    one with the low-pass evaluated at the output's pixels (built from their Fourier sums in
    float64). The same values as the expression above (to 1e-13 in float64, tested) and its
    autograd gradients. Measured forward and backward, 1 thread, stride 2: 128x32x32x32
    0.19-0.44x the time of the 2x grid, 128x64x16x16 0.38-0.56x, 128x128x8x8 0.77-0.86x.
    """
    h, w = x.shape[-2:]
    fine = _matrix(square_upsample_matrix, h, stride, x).mT @ (
        x @ _matrix(square_upsample_matrix, w, stride, x)
    )
    down_rows = _matrix(square_downsample_matrix, h, stride, x)
    return down_rows.mT @ (fine.square() @ _matrix(square_downsample_matrix, w, stride, x))


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
