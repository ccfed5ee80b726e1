"""Band-limited (sub-pixel) translation: a phase ramp in the 2-D DFT, circular by nature.

Integer shifts cannot probe what happens between pixels, and a stride-s layer can only follow
shifts by multiples of s. Shifting a band-limited image by a fraction of a pixel is exact in the
Fourier domain: multiply every frequency (ky, kx) by exp(-2 pi i (ky dy / H + kx dx / W)). This
is the "ideal" sub-pixel shift of Michaeli et al. (CVPR 2023, alias_free_convnets
``models/ideal_lpf.py`` ``subpixel_shift``), which upsamples by an ideal filter, rolls and
subsamples: the same operator for shifts that are multiples of 1/up, without the upsampled copy.

The Nyquist frequency of an even side has no sign of its own: the shift keeps its real part (a
factor cos(pi d) per axis), so integer shifts equal ``torch.roll`` up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invariance_recipes.lightning_modules.offset_pairs import per_sample


def fourier_translate(x: Tensor, offsets: Tensor | tuple[float, float]) -> Tensor:
    """Shift every image of `x` [B, C, H, W] by its own real offset (dy, dx), circularly.

    Positive dy moves content down and positive dx right (the `torch.roll` convention).

    Args:
        x: floating images [B, C, H, W]; float16/bfloat16 are computed in float32.
        offsets: one (dy, dx) for the batch or [B, 2], in pixels, any real values.

    Returns:
        A new tensor like `x`.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"mode='fourier' shifts floating images, got dtype {x.dtype}: convert with x.float()"
        )
    b = x.shape[0]
    offsets = torch.as_tensor(offsets, device=x.device)
    if offsets.is_complex() or offsets.dtype == torch.bool:
        raise ValueError(f"offsets must be real pixels (dy, dx), got dtype {offsets.dtype}")
    offsets = per_sample(offsets, b, "offsets", "(dy, dx)")
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    offsets = offsets.to(compute)
    height, width = x.shape[-2:]
    # The shift is separable: one real 2-D transform, the product of the two axes' ramps, and
    # back. Each axis's Nyquist term keeps only the real part of its factor, cos(pi d): the
    # value that taking the real part after each axis's own inverse gives, and the Hermitian
    # symmetry that irfft2 assumes holds, so the corner term gets cos(pi dy) cos(pi dx), as
    # the separable ideal interpolator of subpixel_shift gives.
    rows = _ramp(offsets[:, 0], torch.fft.fftfreq(height, device=x.device, dtype=compute))
    cols = _ramp(offsets[:, 1], torch.fft.rfftfreq(width, device=x.device, dtype=compute))
    spectrum = torch.fft.rfft2(x.to(compute))
    # in place: the spectrum is this call's own, and a second complex batch would cost about
    # as much as one of the transforms at small sizes
    spectrum.mul_((rows[:, :, None] * cols[:, None, :])[:, None])
    return torch.fft.irfft2(spectrum, s=(height, width)).to(x.dtype)


def _ramp(shift: Tensor, frequencies: Tensor) -> Tensor:
    """``exp(-2 pi i shift f)`` per sample ``[B, len(frequencies)]``, real at ``|f| = 1/2``."""
    phase = -2 * torch.pi * shift[:, None] * frequencies[None, :]
    sine = torch.where(frequencies.abs() == 0.5, 0.0, torch.sin(phase))
    return torch.complex(torch.cos(phase), sine)
