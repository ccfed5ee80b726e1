"""Each cheaper computation of a layer against the computation it replaces, written out here
in float64: the same values (to rounding) and the same gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    select_phase,
    take_phase,
)
from invariance_recipes.lightning_modules.layers.ideal_lowpass import (
    ideal_downsample,
    ideal_upsample,
    ideal_upsampled_square,
    without_nyquist,
)
from invariance_recipes.lightning_modules.shifts import translate
from test_layers import NUMPY_PAD, reference_blur

PHASE_SIZES = [(8, 8), (6, 10)]  # multiples of the stride: the sizes the kept-phase path takes


def assert_same_values_and_gradients(
    out: torch.Tensor,
    expected: torch.Tensor,
    inputs: list[torch.Tensor],
    expected_inputs: list[torch.Tensor] | None = None,
    atol: float = 1e-12,
) -> None:
    """``out`` equals ``expected``, and so do their gradients for one random upstream
    gradient, with respect to ``inputs`` (``expected_inputs`` for ``expected``, if others)."""
    torch.testing.assert_close(out, expected, rtol=0, atol=atol)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, upstream)
    expected_grads = torch.autograd.grad(expected, expected_inputs or inputs, upstream)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=atol)


def reference_same_max(x: torch.Tensor, kernel: int, circular: bool) -> torch.Tensor:
    """Dense stride-1 max over ``kernel x kernel`` windows, padded ``(k - 1) // 2`` before and
    ``k // 2`` after by wrapping or by repeating the edge (np.pad index grids)."""
    before, after = (kernel - 1) // 2, kernel // 2
    mode = NUMPY_PAD["circular" if circular else "replicate"]
    height, width = x.shape[-2:]
    rows = torch.from_numpy(np.pad(np.arange(height), (before, after), mode=mode))
    cols = torch.from_numpy(np.pad(np.arange(width), (before, after), mode=mode))
    padded = x[..., rows, :][..., cols]
    windows = [
        padded[..., i : i + height, j : j + width] for i in range(kernel) for j in range(kernel)
    ]
    return torch.stack(windows).amax(dim=0)


@pytest.mark.parametrize("pad_type", ["circular", "reflect"])
@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize(("height", "width"), PHASE_SIZES)
def test_max_polyphase_pool_computing_the_kept_phase_only_equals_the_dense_pool(
    pad_type: str, kernel: int, height: int, width: int
) -> None:
    torch.manual_seed(0)
    layer = MaxPolyphasePool2d(3, kernel, pad_type=pad_type)
    x = torch.randn(6, 3, height, width, dtype=torch.float64, requires_grad=True)
    out, phase = layer.forward_with_phase(x)
    dense = reference_same_max(x, kernel, circular=pad_type == "circular")
    expected_phase = select_phase(dense.detach())
    expected = take_phase(dense, expected_phase)
    assert torch.equal(phase, expected_phase)
    assert_same_values_and_gradients(out, expected, [x], atol=0)
    forced = torch.tensor([3, 0, 1, 2, 2, 1])  # a given phase (a residual shortcut's)
    assert torch.equal(layer.forward_with_phase(x, forced)[0], take_phase(dense, forced))


@pytest.mark.parametrize("pad_type", ["circular", "reflect", "zero"])
@pytest.mark.parametrize("filt_size", [3, 4])
@pytest.mark.parametrize(("height", "width"), PHASE_SIZES)
def test_aps_with_a_blur_computing_the_kept_phase_only_equals_the_dense_blur(
    pad_type: str, filt_size: int, height: int, width: int
) -> None:
    torch.manual_seed(1)
    layer = PolyphaseDownsample2d(3, 2, filt_size, pad_type=pad_type).double()
    x = torch.randn(5, 3, height, width, dtype=torch.float64, requires_grad=True)
    out, phase = layer.forward_with_phase(x)
    dense = reference_blur(x, filt_size, 1, pad_type)
    expected = take_phase(dense, select_phase(dense.detach()))
    assert torch.equal(phase, select_phase(dense.detach()))
    assert_same_values_and_gradients(out, expected, [x])


def test_lps_scoring_without_its_second_convolution_has_the_reference_gradients() -> None:
    # Reference: conv2 run on the circularly padded hidden map of every component, averaged.
    torch.manual_seed(2)
    layer = LearnablePolyphaseDownsample2d(4, hidden=5).double()
    scorer = layer.scorer
    x = torch.randn(3, 4, 8, 6, dtype=torch.float64)
    parts = torch.stack([x[..., py::2, px::2] for py in range(2) for px in range(2)], 1)

    def reference(parts: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(scorer.conv1(F.pad(parts.flatten(0, 1), (1, 1, 1, 1), mode="circular")))
        out = scorer.conv2(F.pad(hidden, (1, 1, 1, 1), mode="circular"))
        return out.mean(dim=(1, 2, 3)).view(3, 4)

    upstream = torch.randn(3, 4, dtype=torch.float64)
    params = list(scorer.parameters())
    logits = scorer(parts)
    expected = reference(parts)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(logits, params, upstream)
    expected_grads = torch.autograd.grad(expected, params, upstream)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 7), (6, 9)])
def test_without_nyquist_is_ideal_downsampling_of_the_ideal_upsampling(
    height: int, width: int
) -> None:
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    expected = ideal_downsample(ideal_upsample(x, 2), 2)
    torch.testing.assert_close(without_nyquist(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize(("height", "width"), [(16, 16), (14, 18), (9, 7), (8, 6)])
def test_the_square_on_the_smallest_grid_is_the_square_on_the_2x_grid(
    stride: int, height: int, width: int
) -> None:
    """Values, gradients and second derivatives of the square on the smallest alias-free grid
    equal those of the square on the 2x grid, written with the 2x resampling (the FFT-built
    matrices the rest of the layers use)."""
    torch.manual_seed(5)
    x = torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True)
    out = ideal_upsampled_square(x, stride)
    expected = ideal_downsample(ideal_upsample(x, 2).square(), 2 * stride)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, x, upstream, create_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream, create_graph=True)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
    probe = torch.randn_like(grad)
    (second,) = torch.autograd.grad(grad, x, probe)
    (expected_second,) = torch.autograd.grad(expected_grad, x, probe)
    torch.testing.assert_close(second, expected_second, rtol=0, atol=1e-12)


def test_the_square_on_the_smallest_grid_goes_through_torch_func() -> None:
    xs = torch.randn(4, 3, 8, 6, dtype=torch.float64)

    def ours(x: torch.Tensor) -> torch.Tensor:
        return ideal_upsampled_square(x, 2).sin().sum()

    def reference(x: torch.Tensor) -> torch.Tensor:
        return ideal_downsample(ideal_upsample(x, 2).square(), 4).sin().sum()

    grads = torch.func.vmap(torch.func.grad(ours))(xs)
    torch.testing.assert_close(grads, torch.func.vmap(torch.func.grad(reference))(xs))


@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 7), (6, 9)])
def test_alias_free_activation_squares_only_on_the_fine_grid(height: int, width: int) -> None:
    # The replaced computation: the whole quadratic on the 2x grid, then back.
    torch.manual_seed(3)
    layer = AliasFreeActivation(3).double()
    with torch.no_grad():
        layer.coefficients.copy_(torch.randn(3, 3, dtype=torch.float64))
    x = torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True)
    a, b, c = (layer.coefficients[:, i].view(1, 3, 1, 1) for i in range(3))
    fine = ideal_upsample(x, 2)
    expected = ideal_downsample(a + b * fine + c * fine**2, 2)
    out = layer(x)
    assert_same_values_and_gradients(out, expected, [x, layer.coefficients])


@pytest.mark.parametrize("nonlinearity", ["poly", "relu"])
@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 7), (6, 9), (16, 12)])
def test_a_strided_alias_free_activation_is_the_activation_then_the_ideal_step(
    nonlinearity: str, height: int, width: int
) -> None:
    # The replaced pair: the stride-1 activation, then IdealLowPassDownsample2d(2). Values and
    # gradients (input and coefficients) agree, on even, odd and mixed sides.
    torch.manual_seed(4)
    fused = AliasFreeActivation(3, nonlinearity, stride=2).double()
    pair = AliasFreeActivation(3, nonlinearity).double()
    if nonlinearity == "poly":
        with torch.no_grad():
            fused.coefficients.copy_(torch.randn(3, 3, dtype=torch.float64))
        pair.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, height, width, dtype=torch.float64, requires_grad=True)
    out, expected = fused(x), IdealLowPassDownsample2d(2)(pair(x))
    assert out.shape == (2, 3, (height + 1) // 2, (width + 1) // 2)
    assert_same_values_and_gradients(
        out, expected, [x, *fused.parameters()], [x, *pair.parameters()]
    )


def test_ideal_lowpass_gives_the_same_values_for_an_input_stored_transposed() -> None:
    x = torch.randn(2, 3, 10, 6, dtype=torch.float64)
    transposed = x.mT.contiguous().mT  # the layout ideal_upsample hands to ideal_downsample
    assert not transposed.is_contiguous()
    for op in (ideal_downsample, ideal_upsample):
        torch.testing.assert_close(op(transposed, 2), op(x, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(8, 8), (7, 6), (6, 9)])
def test_fourier_translate_in_one_real_transform_equals_the_per_axis_complex_shift(
    height: int, width: int
) -> None:
    # The replaced computation: per axis a complex FFT, the phase ramp, the inverse, the real
    # part (which keeps cos(pi d) of an even axis's Nyquist term).
    torch.manual_seed(4)
    x = torch.randn(3, 2, height, width, dtype=torch.float64)
    offsets = torch.tensor([[0.5, -1.25], [2.0, 0.3], [-0.75, 3.5]], dtype=torch.float64)
    expected = x
    for dim, shift in ((-2, offsets[:, 0]), (-1, offsets[:, 1])):
        frequencies = torch.fft.fftfreq(x.shape[dim], dtype=torch.float64)
        ramp = torch.exp(-2j * torch.pi * shift[:, None] * frequencies[None, :])
        ramp = ramp[:, None, :, None] if dim == -2 else ramp[:, None, None, :]
        expected = torch.fft.ifft(torch.fft.fft(expected, dim=dim) * ramp, dim=dim).real
    torch.testing.assert_close(translate(x, offsets, "fourier"), expected, rtol=0, atol=1e-12)
