"""Batched per-sample integer translation of image batches, on the batch's device.

Every shift metric (consistency, accuracy vs shift, flip rate, equivariance error) needs many
shifted copies of a batch, each sample with its own offset. A Python loop over samples would
dominate evaluation time, so `translate` copies the whole batch in two passes: one copy widened
by the columns the shifts reveal, then one `index_select` of whole output rows (a shifted row is
a contiguous run of that copy), with one index per row rather than per pixel.
"""

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor

from invariance_recipes.common.borders import SHIFT_MODES
from invariance_recipes.common.checks import check_choice
from invariance_recipes.lightning_modules.fourier_shift import fourier_translate
from invariance_recipes.lightning_modules.offset_pairs import per_sample

# Radius (pixels per axis) of the consistency pairs that training and the test report measure
# by default: the one name and value of that quantity.
CONSISTENCY_MAX_SHIFT = 4
SWEEP_KINDS = ("diagonal", "horizontal", "grid")
#: What `translate` accepts: the integer modes shared with the augmentation, and sub-pixel shifts.
TRANSLATE_MODES = (*SHIFT_MODES, "fourier")


def check_mode(mode: str, option: str = "mode") -> None:
    """Raise a one-line `ValueError` unless `mode` is one of `SHIFT_MODES`."""
    check_choice(option, mode, SHIFT_MODES)


def check_max_shift(max_shift: int, size: tuple[int, int] | None = None) -> None:
    """Raise unless `max_shift` is a pixel count that fits images of `size` (H, W) when given."""
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift={max_shift!r} must be a non-negative integer number of pixels")
    if size is not None and max_shift >= min(size):
        raise ValueError(
            f"max_shift={max_shift} does not fit images of size {size[0]}x{size[1]}: "
            f"use max_shift < {min(size)}"
        )


def translate(
    x: Tensor,
    offsets: Tensor | tuple[int, int],
    mode: str = "zero",
    fill: float | Sequence[float] | Tensor = 0.0,
) -> Tensor:
    """Shift every image of `x` [B, C, H, W] by its own integer offset (dy, dx).

    Positive dy moves content down and positive dx moves it right (the `torch.roll` convention).

    Args:
        x: batch of images [B, C, H, W], any dtype.
        offsets: int64 [B, 2] with one (dy, dx) per sample, or one (dy, dx) for the whole batch.
            Every |dy| must be < H and every |dx| < W. CPU offsets are checked; offsets already
            on an accelerator are not read back (that would stall it), so bound them by a
            checked max_shift as `sample_offsets` does.
        mode: "zero": vacated pixels take `fill` (a linear shift on a background);
            "reflect": vacated pixels mirror the image without repeating the edge pixel
            (`torch.nn.functional.pad(mode="reflect")` semantics); "circular": `torch.roll` per
            sample (the shift for which stride-1 convolutions are exactly equivariant);
            "fourier": a band-limited circular shift by real (sub-pixel) offsets, see
            `invariance_recipes.lightning_modules.fourier_shift.fourier_translate`.
        fill: value of vacated pixels in "zero" mode: a scalar or one value per channel.

    Returns:
        A new tensor like `x` with every sample shifted.
    """
    if mode == "fourier":
        return fourier_translate(x, offsets)
    check_choice("mode", mode, TRANSLATE_MODES)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images [B, C, H, W], got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    offsets = _as_offsets(offsets, b, h, w)
    values = _fill_values(fill, x) if mode == "zero" else None
    if x.numel() == 0:
        return x.clone()
    dy, dx = offsets.to(x.device, non_blocking=True).unbind(1)
    # One gather per plane from a [B, 1, H * W] source index shared by the channels (an
    # expanded view): a single read and write of x, with no padded copy.
    rows = torch.arange(h, device=x.device) - dy[:, None]  # source row per output row [B, H]
    cols = torch.arange(w, device=x.device) - dx[:, None]  # source column [B, W]
    if values is None:
        rows, cols = _wrap(rows, h, mode), _wrap(cols, w, mode)
    else:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    out = x.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)
    if values is not None:  # pixels shifted in from outside take the fill
        torch.where(inside[:, None], out, values.view(1, c, 1, 1), out=out)
    return out


def random_offsets(
    n: int,
    max_shift: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw n offsets (dy, dx) as int64 [n, 2], each uniform in [-max_shift, max_shift].

    The numbers come from `generator` (the global RNG when None) on the generator's own device
    and are then moved to `device` (default: the CPU), so a CPU generator gives the same offsets
    whatever device the images live on.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative integer number of offsets")
    check_max_shift(max_shift)
    source_device = generator.device if generator is not None else None
    offsets = torch.randint(
        -max_shift, max_shift + 1, (n, 2), generator=generator, device=source_device
    )
    return offsets if device is None else offsets.to(device, non_blocking=True)


_PRIME = 2_147_483_647  # 2**31 - 1: products of two residues fit in int64


def sample_offsets(x: Tensor, max_shift: int, seed: int = 0) -> Tensor:
    """Offsets (dy, dx) in [-max_shift, max_shift] that depend only on each image and `seed`.

    The metrics draw their random offsets this way, so every image gets the same offsets
    whatever the batch size, the data order, the device or the number of DDP processes:
    a metric computed on 2 GPUs equals the one computed on 1. Runs on the batch's device
    without reading it back.

    Returns:
        int64 [B, 2] on the device of `x`.
    """
    check_max_shift(max_shift)
    return sample_integers(x, 2 * max_shift + 1, seed) - max_shift


def sample_integers(x: Tensor, high: int, seed: int = 0) -> Tensor:
    """Two integers per image in [0, high), keyed by the image's pixels and `seed`.

    The key is an exact integer hash of the pixels (quantized to 1/4096) mixed with the
    seed; over a data set the values are close to uniform.
    """
    keys = _image_keys(x, seed)
    return torch.stack((keys.remainder(high), _mix(keys + 1).remainder(high)), dim=1)


def _image_keys(x: Tensor, seed: int) -> Tensor:
    """An int64 hash per sample of `x`, exact integer arithmetic so it never varies with
    how the batch is formed."""
    pixels = x.detach().flatten(1).float().mul(4096).round().long().remainder(1 << 20)
    weights = torch.arange(1, pixels.shape[1] + 1, device=x.device).mul(2_654_435_761)
    weights = weights.remainder(1 << 20) + 1
    keys = (pixels * weights).sum(dim=1).remainder(_PRIME)  # < 2**40 * (C*H*W): no overflow
    return _mix(keys + (seed % _PRIME) * 1_000_003)


def _mix(h: Tensor) -> Tensor:
    """Scramble residues modulo a prime (two multiply-xorshift rounds)."""
    h = h.remainder(_PRIME)
    for multiplier, shift in ((1_103_515_245, 13), (1_664_525, 17), (48_271, 11)):
        h = (h * multiplier + 12_345).remainder(_PRIME)
        h = h ^ (h >> shift)
    return h


def sample_offset_pair(x: Tensor, max_shift: int, seed: int = 0) -> Tensor:
    """Two independent keyed offsets per sample, as [2B, 2] (rows :B first copy, B: second),
    for the shift-consistency protocol."""
    return torch.cat(
        (sample_offsets(x, max_shift, 2 * seed), sample_offsets(x, max_shift, 2 * seed + 1))
    )


def shifted_pair(
    x: Tensor,
    max_shift: int,
    mode: str = "zero",
    generator: torch.Generator | None = None,
    fill: float | Sequence[float] | Tensor = 0.0,
) -> tuple[Tensor, Tensor]:
    """Two copies of `x`, each sample shifted by two independent offsets within `max_shift`.

    This is the input pair of the shift-consistency protocol of Zhang (ICML 2019).
    """
    check_mode(mode)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch of images [B, C, H, W], got shape {tuple(x.shape)}")
    check_max_shift(max_shift, (x.shape[-2], x.shape[-1]))
    offsets = random_offsets(2 * x.shape[0], max_shift, generator)
    first, second = translate(x.repeat(2, 1, 1, 1), offsets, mode, fill).chunk(2)
    return first, second


def offset_sweep(max_shift: int, kind: str = "diagonal") -> Tensor:
    """A fixed set of offsets for accuracy-vs-shift curves, as int64 [K, 2] rows of (dy, dx).

    diagonal: (-m, -m) ... (m, m); horizontal: (0, -m) ... (0, m); grid: every (dy, dx) in the
    square [-m, m]^2 in row-major order (dy outer, dx inner).
    """
    check_max_shift(max_shift)
    steps = torch.arange(-max_shift, max_shift + 1)
    if kind == "diagonal":
        return torch.stack((steps, steps), dim=1)
    if kind == "horizontal":
        return torch.stack((torch.zeros_like(steps), steps), dim=1)
    if kind == "grid":
        return torch.cartesian_prod(steps, steps)
    raise ValueError(f"kind={kind!r} is not a sweep kind; choose one of {SWEEP_KINDS}")


def _as_offsets(offsets: Tensor | tuple[int, int], b: int, h: int, w: int) -> Tensor:
    """Validate offsets; return them as int64 [B, 2] on their own device (CPU offsets are
    checked against the image size; accelerator offsets are not read back)."""
    if not isinstance(offsets, Tensor):
        if not all(isinstance(o, Integral) and not isinstance(o, bool) for o in offsets):
            raise ValueError(
                f"offsets={tuple(offsets)!r} must be integer pixels (dy, dx); "
                "round fractional shifts first"
            )
        offsets = torch.tensor([int(o) for o in offsets], dtype=torch.int64)
    if offsets.is_floating_point() or offsets.is_complex() or offsets.dtype == torch.bool:
        raise ValueError(
            f"offsets must be integer pixels, got dtype {offsets.dtype}; "
            "pass e.g. offsets.round().long()"
        )
    offsets = per_sample(offsets, b, "offsets", "(dy, dx)").long()
    if offsets.device.type != "cpu" or b == 0:  # reading accelerator offsets would stall it
        return offsets
    (low_dy, low_dx), (high_dy, high_dx) = (t.tolist() for t in offsets.aminmax(dim=0))
    largest_dy, largest_dx = max(-low_dy, high_dy), max(-low_dx, high_dx)
    if largest_dy >= h or largest_dx >= w:
        raise ValueError(
            f"offsets up to |dy|={largest_dy}, |dx|={largest_dx} do not fit images of size "
            f"{h}x{w}: every shift (max_shift) must be smaller than the image size"
        )
    return offsets


def _wrap(index: Tensor, size: int, mode: str) -> Tensor:
    """Map source indices in (-size, 2 * size - 1) back into [0, size) by wrapping or mirroring."""
    if mode == "circular":
        return index.remainder(size)
    return (size - 1) - ((size - 1) - index.abs()).abs()  # reflect without repeating the edge


def _fill_values(fill: float | Sequence[float] | Tensor, x: Tensor) -> Tensor:
    """The fill value per channel as a [C] tensor in the dtype and on the device of `x`."""
    c = x.shape[1]
    if isinstance(fill, int | float) and not isinstance(fill, bool):
        return x.new_full((1,), fill).expand(c)
    values = torch.as_tensor(fill).to(x.device, x.dtype, non_blocking=True)
    if values.ndim == 0:
        return values.view(1).expand(c)
    if values.shape != (c,):
        raise ValueError(
            f"fill must be a scalar or one value per channel (C={c}), got shape "
            f"{tuple(values.shape)}"
        )
    return values
