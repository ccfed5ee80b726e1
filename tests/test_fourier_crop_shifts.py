"""Sub-pixel Fourier shifts against an analytic band-limited signal, and crop windows against
per-sample slicing."""

import math

import pytest
import torch

from invariance_recipes.lightning_modules.crop_shift import center_view, crop_windows
from invariance_recipes.lightning_modules.shifts import translate

SIZE = 32
# (frequency along H, frequency along W, amplitude, phase): every frequency below Nyquist (16).
COSINES = [(1, 0, 1.0, 0.3), (3, 5, 0.7, -1.1), (7, 2, 0.4, 2.0), (0, 15, 0.25, 0.5)]


def band_limited(dy: float, dx: float) -> torch.Tensor:
    """The sum of cosines sampled on the grid after moving it by (dy, dx), in float64."""
    n = torch.arange(SIZE, dtype=torch.float64)
    rows, cols = (n - dy)[:, None], (n - dx)[None, :]
    image = sum(
        a * torch.cos(2 * math.pi * (ky * rows + kx * cols) / SIZE + phase)
        for ky, kx, a, phase in COSINES
    )
    return image[None, None]


@pytest.mark.parametrize("offset", [(0.5, 0.25), (0.25, -0.5), (-1.75, 3.5)])
def test_fourier_shift_moves_a_band_limited_signal_exactly(offset: tuple[float, float]) -> None:
    shifted = translate(band_limited(0.0, 0.0), offset, "fourier")
    torch.testing.assert_close(shifted, band_limited(*offset), rtol=0, atol=1e-12)


def band_limited_slope(dy: float, dx: float) -> torch.Tensor:
    """d/d(dy) and d/d(dx) of :func:`band_limited` at (dy, dx): [2, 1, 1, SIZE, SIZE]."""
    n = torch.arange(SIZE, dtype=torch.float64)
    rows, cols = (n - dy)[:, None], (n - dx)[None, :]
    sines = [
        (a * torch.sin(2 * math.pi * (ky * rows + kx * cols) / SIZE + phase), ky, kx)
        for ky, kx, a, phase in COSINES
    ]
    return torch.stack(
        [sum(s * 2 * math.pi * k[axis] / SIZE for s, *k in sines)[None, None] for axis in (0, 1)]
    )


@pytest.mark.parametrize("size", [(12, 9), (8, 10)])
def test_fourier_shift_gradient_for_the_images_is_the_opposite_shift(size: tuple[int, int]) -> None:
    # the adjoint of a band-limited circular shift is the shift back (the Nyquist rows and
    # columns of even sides are scaled by cos(pi d), which is its own adjoint)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, *size, dtype=torch.float64, generator=generator, requires_grad=True)
    weights = torch.randn(3, 2, *size, dtype=torch.float64, generator=generator)
    offsets = torch.tensor([[0.5, -1.25], [2.0, 0.3], [-3.7, 4.0]], dtype=torch.float64)
    (translate(x, offsets, "fourier") * weights).sum().backward()
    torch.testing.assert_close(x.grad, translate(weights, -offsets, "fourier"), rtol=0, atol=1e-12)


def test_fourier_shift_gradient_for_the_offsets_is_the_signal_slope() -> None:
    offsets = torch.tensor([[0.5, -1.25]], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(
        1, 1, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    (translate(band_limited(0.0, 0.0), offsets, "fourier") * weights).sum().backward()
    slope = band_limited_slope(0.5, -1.25)
    expected = torch.stack([(slope[axis] * weights).sum() for axis in (0, 1)])[None]
    torch.testing.assert_close(offsets.grad, expected, rtol=0, atol=1e-9)


def test_integer_fourier_shifts_equal_roll_per_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 12, 9, generator=generator)
    offsets = torch.tensor([[0, 0], [1, -1], [-3, 4], [11, -8], [6, 2]])
    shifted = translate(x, offsets.float(), "fourier")
    expected = torch.stack(
        [
            torch.roll(image, (dy, dx), dims=(1, 2))
            for image, (dy, dx) in zip(x, offsets.tolist(), strict=True)
        ]
    )
    torch.testing.assert_close(shifted, expected, rtol=0, atol=1e-5)


def test_fourier_shift_keeps_low_precision_dtypes() -> None:
    x = band_limited(0.0, 0.0).to(torch.bfloat16)
    assert translate(x, (0.5, 0.5), "fourier").dtype == torch.bfloat16


def test_fourier_shift_of_integer_images_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"mode='fourier' shifts floating images.*uint8.*float"):
        translate(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), (0.5, 0.5), "fourier")


def test_crop_windows_equal_per_sample_slices() -> None:
    generator = torch.Generator().manual_seed(1)
    canvas = torch.randn(6, 2, 20, 17, generator=generator)
    starts = torch.stack(
        (
            torch.randint(0, 20 - 12 + 1, (6,), generator=generator),
            torch.randint(0, 17 - 12 + 1, (6,), generator=generator),
        ),
        dim=1,
    )
    expected = torch.stack(
        [c[:, t : t + 12, s : s + 12] for c, (t, s) in zip(canvas, starts.tolist(), strict=True)]
    )
    assert torch.equal(crop_windows(canvas, starts, 12), expected)
    assert torch.equal(center_view(canvas, 12), canvas[:, :, 4:16, 2:14])


def test_crop_brings_new_content_where_zero_and_circular_do_not() -> None:
    """With content up to the canvas border, moving the window shows pixels that a zero or
    circular shift of the centre view cannot produce."""
    canvas = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16) + 1.0
    view_size, offset = 12, (1, 2)  # content moves down 1, right 2
    top, left = 2 - offset[0], 2 - offset[1]
    cropped = crop_windows(canvas, (top, left), view_size)
    centre = center_view(canvas, view_size)
    for mode in ("zero", "circular"):
        shifted = translate(centre, offset, mode)
        assert not torch.equal(cropped, shifted), mode
        # the parts present in both agree: only the entering border differs
        assert torch.equal(cropped[..., 1:, 2:], shifted[..., 1:, 2:])
    # the entering rows and columns are the canvas's real pixels just outside the centre view
    assert torch.equal(cropped[0, 0, 0], canvas[0, 0, top, left : left + view_size])


def test_crop_range_beyond_the_margin_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"margin \[0, 4\] x \[0, 4\].*smaller crop range"):
        crop_windows(torch.zeros(2, 1, 16, 16), torch.tensor([[0, 0], [5, 1]]), 12)
    with pytest.raises(ValueError, match=r"view_size=20 does not fit a 16x16 canvas"):
        center_view(torch.zeros(2, 1, 16, 16), 20)


@pytest.mark.parametrize(
    ("move", "message"),
    [
        (lambda x, p: translate(x, p, "zero"), r"offsets must be one \(dy, dx\)"),
        (lambda x, p: translate(x, p.float(), "fourier"), r"offsets must be one \(dy, dx\)"),
        (lambda x, p: crop_windows(x, p, 6), r"crop starts must be one \(top, left\)"),
    ],
)
def test_pairs_of_the_wrong_shape_are_a_one_line_error(move, message) -> None:
    x = torch.zeros(3, 1, 8, 8)
    one, each = torch.tensor([1, 2]), torch.tensor([[1, 2], [0, 1], [2, 0]])
    # one pair for the batch and one per sample both move every image
    torch.testing.assert_close(move(x, one), move(x, one.expand(3, 2)))
    assert move(x, each).shape[0] == 3
    for bad in (torch.tensor([[1, 2], [0, 1]]), torch.tensor([1, 2, 3]), torch.zeros(3, 2, 1)):
        with pytest.raises(ValueError, match=message + r" or one per sample \[B=3, 2\], got shape"):
            move(x, bad.long())
