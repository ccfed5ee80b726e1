"""Batched translation against per-sample NumPy and torch.roll references, pixel-exact."""

import itertools

import numpy as np
import pytest
import torch

from invariance_recipes.common.borders import SHIFT_MODES
from invariance_recipes.lightning_modules.shifts import (
    offset_sweep,
    random_offsets,
    sample_offset_pair,
    sample_offsets,
    shifted_pair,
    translate,
)

NUMPY_MODES = {"zero": "constant", "reflect": "reflect", "circular": "wrap"}


def reference_translate(
    x: torch.Tensor, offsets: torch.Tensor, mode: str, fill: list[float]
) -> np.ndarray:
    """Shift one sample at a time: pad by |dy|, |dx| with NumPy and slice the window."""
    images = x.numpy()
    out = np.empty_like(images)
    height, width = images.shape[-2:]
    for i, (dy, dx) in enumerate(offsets.tolist()):
        pad = ((abs(dy), abs(dy)), (abs(dx), abs(dx)))
        for c, plane in enumerate(images[i]):
            if mode == "zero":
                padded = np.pad(plane, pad, mode="constant", constant_values=fill[c])
            else:
                padded = np.pad(plane, pad, mode=NUMPY_MODES[mode])
            top, left = abs(dy) - dy, abs(dx) - dx
            out[i, c] = padded[top : top + height, left : left + width]
    return out


def full_range_offsets(n: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Offsets covering every legal shift, up to size - 1 on each axis."""
    generator = torch.Generator().manual_seed(seed)
    dy = torch.randint(-(height - 1), height, (n,), generator=generator)
    dx = torch.randint(-(width - 1), width, (n,), generator=generator)
    return torch.stack((dy, dx), dim=1)


@pytest.mark.parametrize("mode", SHIFT_MODES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_translate_matches_per_sample_reference(
    mode: str, channels: int, dtype: torch.dtype
) -> None:
    generator = torch.Generator().manual_seed(channels)
    x = (torch.rand(40, channels, 7, 10, generator=generator) * 250).to(dtype)
    offsets = full_range_offsets(40, 7, 10, seed=channels)
    fill = [5.0, 7.0, 9.0][:channels]
    out = translate(x, offsets, mode, fill=fill)
    assert out.dtype == dtype and out.shape == x.shape
    np.testing.assert_array_equal(out.numpy(), reference_translate(x, offsets, mode, fill))


def test_circular_equals_torch_roll_per_sample() -> None:
    x = torch.randn(32, 2, 9, 8)
    offsets = full_range_offsets(32, 9, 8, seed=1)
    expected = torch.stack(
        [
            torch.roll(image, tuple(offset.tolist()), dims=(1, 2))
            for image, offset in zip(x, offsets, strict=True)
        ]
    )
    assert torch.equal(translate(x, offsets, "circular"), expected)


def test_positive_offsets_move_content_down_and_right() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 1, 1] = 1.0
    out = translate(x, (2, 1), "zero")
    assert out[0, 0, 3, 2] == 1.0 and out.sum() == 1.0


@pytest.mark.parametrize("mode", SHIFT_MODES)
def test_one_offset_for_the_batch_equals_per_sample_offsets(mode: str) -> None:
    x = torch.randn(6, 3, 8, 8)
    per_sample = torch.tensor([[3, -2]]).expand(6, 2)
    expected = translate(x, per_sample, mode, fill=0.5)
    assert torch.equal(translate(x, (3, -2), mode, fill=0.5), expected)
    assert torch.equal(translate(x, torch.tensor([3, -2]), mode, fill=0.5), expected)


def test_fill_as_tensor_scalar_and_per_channel() -> None:
    x = torch.randn(4, 3, 6, 6)
    offsets = torch.tensor([[2, 0], [0, -3], [-1, 1], [0, 0]])
    per_channel = translate(x, offsets, fill=torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(per_channel, translate(x, offsets, fill=[1.0, 2.0, 3.0]))
    assert torch.equal(
        per_channel[0, :, :2], torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1).expand(3, 2, 6)
    )
    assert torch.equal(
        translate(x, offsets, fill=torch.tensor(4.0)), translate(x, offsets, fill=4.0)
    )


def test_random_offsets_are_uniform_reproducible_and_leave_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first = random_offsets(4000, 3, torch.Generator().manual_seed(5))
    second = random_offsets(4000, 3, torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.dtype == torch.int64 and first.shape == (4000, 2)
    assert torch.equal(first, second)
    for axis in first.unbind(dim=1):
        counts = torch.bincount(axis + 3, minlength=7)
        assert len(counts) == 7 and counts.min() > 4000 / 7 * 0.8  # every value in [-3, 3]


def test_shifted_pair_uses_two_independent_offsets_per_sample() -> None:
    x = torch.randn(50, 1, 12, 12)
    first, second = shifted_pair(x, 4, "circular", torch.Generator().manual_seed(2))
    offsets = random_offsets(100, 4, torch.Generator().manual_seed(2))
    assert torch.equal(first, translate(x, offsets[:50], "circular"))
    assert torch.equal(second, translate(x, offsets[50:], "circular"))
    assert (offsets[:50] != offsets[50:]).any(dim=1).float().mean() > 0.9


def test_sample_offsets_are_keyed_by_image_uniform_and_independent() -> None:
    x = torch.rand(6000, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    offsets = sample_offsets(x, 3, seed=7)
    assert offsets.dtype == torch.int64 and offsets.shape == (6000, 2)
    # The same image gets the same offsets in any batch, position or order.
    assert torch.equal(sample_offsets(x[100:117], 3, seed=7), offsets[100:117])
    assert torch.equal(sample_offsets(x.flip(0), 3, seed=7), offsets.flip(0))
    for axis in offsets.unbind(dim=1):
        counts = torch.bincount(axis + 3, minlength=7)
        assert len(counts) == 7 and counts.min() > 6000 / 7 * 0.85
    # dy and dx independent; another seed gives unrelated offsets (chance agreement 1/49).
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 1])[0, 1]) < 0.05
    assert (sample_offsets(x, 3, seed=8) == offsets).all(dim=1).float().mean() < 0.05
    pair = sample_offset_pair(x, 3, seed=1)
    assert pair.shape == (12000, 2) and (pair[:6000] == pair[6000:]).all(1).float().mean() < 0.05


def test_offset_sweep_kinds() -> None:
    steps = range(-2, 3)
    assert offset_sweep(2).tolist() == [[s, s] for s in steps]
    assert offset_sweep(2, "horizontal").tolist() == [[0, s] for s in steps]
    assert offset_sweep(2, "grid").tolist() == [list(p) for p in itertools.product(steps, steps)]
    assert offset_sweep(0).tolist() == [[0, 0]]
    assert offset_sweep(3).dtype == torch.int64


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda x: translate(x, (1, 1), "wrap"),
            r"unknown mode 'wrap': choose one of zero, reflect, circular",
        ),
        (lambda x: translate(x, torch.tensor([[0.5, 1.0]] * 4)), "integer pixels.*float32"),
        (lambda x: translate(x, (1.5, 0)), "integer pixels"),
        (lambda x: translate(x, (8, 0)), r"\|dy\|=8.*8x6.*max_shift"),
        (lambda x: translate(x, torch.tensor([[0, 0]] * 3 + [[0, -6]])), r"\|dx\|=6.*8x6"),
        (lambda x: translate(x[0], (1, 1)), r"\[B, C, H, W\].*\(1, 8, 6\)"),
        (lambda x: translate(x, torch.zeros(3, 2, dtype=torch.long)), r"\[B=4, 2\].*\(3, 2\)"),
        (lambda x: translate(x, (1, 1), fill=[0.0, 1.0]), r"one value per channel \(C=1\)"),
        (lambda x: shifted_pair(x, 6), "max_shift=6 does not fit images of size 8x6"),
        (lambda x: random_offsets(3, -1), "max_shift=-1"),
        (lambda x: offset_sweep(2, "spiral"), r"kind='spiral'.*'diagonal', 'horizontal', 'grid'"),
    ],
)
def test_bad_input_raises_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(torch.zeros(4, 1, 8, 6))
