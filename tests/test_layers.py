"""Anti-aliasing and polyphase layers against independent NumPy/SciPy references."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import binom

from invariance_recipes.lightning_modules.layers import (
    NORMS,
    PAD_TYPES,
    BlurPool2d,
    ConvBlurPool2d,
    MaxBlurPool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    SameMaxPool2d,
    aps_downsample,
    binomial_filter,
    pad2d,
    select_phase,
    take_phase,
)
from invariance_recipes.lightning_modules.layers.blur_paths import (
    CHOICES,
    DENSE,
    DENSE_MAX_SIDE,
    PATHS,
    choose_path,
)
from invariance_recipes.lightning_modules.layers.same_max_pool import (
    dense_max_pool,
    takes_shift_path,
)

NUMPY_PAD = {"reflect": "reflect", "replicate": "edge", "zero": "constant", "circular": "wrap"}
SIZES = [(9, 12), (8, 7), (1, 1), (2, 3), (3, 2)]  # odd, even, and smaller than the padding


def reference_blur(x: torch.Tensor, filt_size: int, stride: int, pad_type: str) -> torch.Tensor:
    """Pad each plane by indexing with np.pad's index grid, sum the shifted copies weighted by
    the binomial outer product (SciPy), subsample; in float64, returned in the dtype of x.

    Written without the layers' padding or convolution, and differentiable, so it checks
    both the values and the gradients of every path of BlurPool2d.
    """
    taps = binom(filt_size - 1, np.arange(filt_size))
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    before, after = (filt_size - 1) // 2, int(np.ceil((filt_size - 1) / 2))
    height, width = x.shape[-2:]
    mode = NUMPY_PAD[pad_type]
    if pad_type == "reflect" and min(height, width) <= max(before, after):
        mode = "edge"  # the documented fallback for inputs smaller than the padding

    def source(size: int) -> torch.Tensor:  # the input index of every padded position, -1: zero
        index = np.arange(size)
        if mode == "constant":
            return torch.from_numpy(np.pad(index, (before, after), constant_values=-1))
        return torch.from_numpy(np.pad(index, (before, after), mode=mode))

    rows, cols = source(height), source(width)
    padded = x.double()[..., rows.clamp(min=0), :][..., cols.clamp(min=0)]
    padded = padded * ((rows >= 0)[:, None] & (cols >= 0)[None, :])
    out = sum(
        kernel[i, j] * padded[..., i : i + height, j : j + width]
        for i in range(filt_size)
        for j in range(filt_size)
    )
    return out[..., ::stride, ::stride].to(x.dtype)


def reference_components(x: np.ndarray, stride: int) -> list[np.ndarray]:
    """The stride**2 polyphase components of one sample, in (py, px) row-major order."""
    return [x[:, py::stride, px::stride] for py in range(stride) for px in range(stride)]


def circular_shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return torch.roll(x, (dy, dx), dims=(-2, -1))


@pytest.mark.parametrize("size", range(1, 8))
def test_binomial_filter_is_pascal_row_normalized_and_symmetric(size: int) -> None:
    taps = binomial_filter(size)
    expected = binom(size - 1, np.arange(size)) / 2 ** (size - 1)
    np.testing.assert_allclose(taps.numpy(), expected, rtol=1e-7)
    assert taps.sum().item() == pytest.approx(1.0)
    assert torch.equal(taps, taps.flip(0))


@pytest.mark.parametrize("filt_size", range(1, 8))
def test_blurpool_filter_sums_to_one_and_is_symmetric(filt_size: int) -> None:
    kernel = BlurPool2d(3, filt_size).filt
    assert kernel.shape == (3, 1, filt_size, filt_size)
    torch.testing.assert_close(kernel.sum(dim=(-2, -1)), torch.ones(3, 1))
    assert torch.equal(kernel, kernel.flip(-1)) and torch.equal(kernel, kernel.transpose(-2, -1))


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize("filt_size", range(1, 8))
def test_blurpool_matches_numpy_scipy_reference(filt_size: int, pad_type: str) -> None:
    generator = torch.Generator().manual_seed(filt_size)
    for (height, width), stride in itertools.product(SIZES, (1, 2, 3)):
        x = torch.randn(2, 3, height, width, generator=generator)
        out = BlurPool2d(3, filt_size, stride, pad_type)(x)
        expected = reference_blur(x, filt_size, stride, pad_type)
        assert out.shape == (2, 3, -(-height // stride), -(-width // stride))
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_blurpool_filt_size_one_is_plain_subsampling(stride: int) -> None:
    x = torch.randn(2, 4, 9, 10)
    assert torch.equal(BlurPool2d(4, 1, stride)(x), x[:, :, ::stride, ::stride])


@pytest.mark.parametrize("pad_type", PAD_TYPES)
def test_blurpool_gradcheck(pad_type: str) -> None:
    layer = BlurPool2d(2, 3, 2, pad_type).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_blurpool_filter_is_not_in_the_state_dict_and_follows_dtype() -> None:
    layer = BlurPool2d(4)
    assert layer.state_dict() == {}
    assert layer.double().filt.dtype == torch.float64


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize(
    ("size", "filt_size", "stride", "path"),
    [
        (8, 4, 2, "aten::kron"),  # 4x4 outputs: one product with the Kronecker matrix
        (34, 4, 2, "aten::bmm"),  # two products, along the width then the height
        (21, 5, 1, "aten::bmm"),  # stride 1 (the blur before APS)
        (DENSE_MAX_SIDE + 2, 3, 2, "aten::convolution"),  # large maps: padded convolution
    ],
)
def test_blurpool_paths_equal_the_padded_convolution(
    size: int, filt_size: int, stride: int, path: str, pad_type: str
) -> None:
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, size, size - 1, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    layer = BlurPool2d(3, filt_size, stride, pad_type).double()
    with torch.profiler.profile() as profile:
        out = layer(x)
    assert path in {event.key for event in profile.key_averages()}
    expected = reference_blur(x, filt_size, stride, pad_type)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(out, x, grad)
    (reference,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pad_type", ["reflect", "zero"])
@pytest.mark.parametrize(("size", "kernel_size"), [(8, 2), (33, 2), (30, 3), (26, 4)])
def test_fused_max_blur_pool_equals_dense_max_then_blur(
    size: int, kernel_size: int, pad_type: str
) -> None:
    generator = torch.Generator().manual_seed(size)
    x = torch.randn(2, 3, size, size + 3, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    out = MaxBlurPool2d(3, kernel_size, 4, 2, pad_type).double()(x)
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    dense = F.max_pool2d(pad2d(x, (before, after, before, after), "replicate"), kernel_size, 1)
    expected = reference_blur(dense, 4, 2, pad_type)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    (ours,) = torch.autograd.grad(out, x, grad)
    (reference,) = torch.autograd.grad(expected, x, grad)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)


def test_blurpool_keeps_channels_last_and_bfloat16() -> None:
    x = torch.randn(4, 8, 16, 16).contiguous(memory_format=torch.channels_last)
    layer = BlurPool2d(8)
    out = layer(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference_blur(x, 4, 2, "reflect"), rtol=1e-5, atol=1e-6)
    low = layer(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), out, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize("filt_size", [2, 3, 4, 5])
def test_the_dense_blur_of_a_channels_last_map_equals_the_reference(
    filt_size: int, pad_type: str
) -> None:
    # Multiplied in the channels-last memory as it lies: small planes (one Kronecker product)
    # and larger ones (two products), values, gradients and the layout of both.
    generator = torch.Generator().manual_seed(filt_size)
    for height, width in [(8, 8), (17, 16), (33, 31)]:
        x = torch.randn(2, 5, height, width, generator=generator, dtype=torch.float64)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        out = BlurPool2d(5, filt_size, 2, pad_type).double().dense(x)
        expected = reference_blur(x, filt_size, 2, pad_type)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        grad = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
        (ours,) = torch.autograd.grad(out, x, grad)
        (reference,) = torch.autograd.grad(expected, x, grad)
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
        assert ours.is_contiguous(memory_format=torch.channels_last)


def test_the_fused_max_blur_pool_of_a_channels_last_map_equals_the_contiguous_one() -> None:
    x = torch.randn(3, 6, 15, 18, dtype=torch.float64, requires_grad=True)
    layer = MaxBlurPool2d(6, 2, 3, 2, "zero").double()
    last = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out, expected = layer(last), layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(expected)
    torch.testing.assert_close(
        torch.autograd.grad(out, last, grad)[0], torch.autograd.grad(expected, x, grad)[0]
    )


def test_blurpool_trains_after_running_under_inference_mode() -> None:
    layer = BlurPool2d(2, 3)
    x = torch.randn(1, 2, 10, 12, requires_grad=True)
    with torch.inference_mode():  # validation first, as Lightning's sanity check does
        layer(x.detach())
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("pad_type", PAD_TYPES)
@pytest.mark.parametrize("filt_size", range(2, 8))
def test_every_blurpool_path_equals_the_reference(filt_size: int, pad_type: str) -> None:
    generator = torch.Generator().manual_seed(filt_size)
    for (height, width), stride in itertools.product([(1, 4), (5, 8), (8, 7)], (1, 2, 3)):
        x = torch.randn(2, 3, height, width, generator=generator, dtype=torch.float64)
        layer = BlurPool2d(3, filt_size, stride, pad_type).double()
        expected = reference_blur(x, filt_size, stride, pad_type)
        for out in (layer.dense(x), layer.convolve(x), layer.convolve(x, channels_last=True)):
            torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
            assert out.is_contiguous()


@pytest.mark.parametrize("threads", [1, 2, 16])
def test_float32_cpu_blurs_take_the_path_of_the_choice_table(threads: int) -> None:
    for (zero, table_threads, side, filt_size), choice in CHOICES.items():
        if table_threads != min(threads, 2):
            continue
        x = torch.empty(1, 1, side, side - 1)
        pad_type = "zero" if zero else "circular"
        assert choose_path(x, filt_size, pad_type, threads) == choice.path
        assert choice.path in PATHS and choice.measured
    big = torch.empty(1, 1, DENSE_MAX_SIDE + 1, 8)
    assert choose_path(big, 4, "reflect", threads) != DENSE  # dense only up to its limit
    assert choose_path(big.double(), 4, "reflect", threads) != DENSE
    assert choose_path(torch.empty(1, 1, 8, 8, dtype=torch.float64), 3, "zero", threads) == DENSE


@pytest.mark.parametrize(
    "layer", [BlurPool2d(3, 4, 2, "circular"), BlurPool2d(3, 5, 3, "circular")]
)
def test_circular_blurpool_commutes_with_shifts_by_multiples_of_the_stride(
    layer: BlurPool2d,
) -> None:
    s = layer.stride
    x = torch.randn(2, 3, 6 * s, 4 * s)
    out = layer(x)
    for dy, dx in [(1, 0), (0, 1), (2, 3), (-1, 2)]:
        shifted = layer(circular_shift(x, dy * s, dx * s))
        torch.testing.assert_close(shifted, circular_shift(out, dy, dx), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4])
def test_same_max_pool_matches_numpy_sliding_max(kernel_size: int, circular: bool) -> None:
    x = torch.randn(2, 3, 7, 6)
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    pad = ((0, 0), (0, 0), (before, after), (before, after))
    if circular:
        padded = np.pad(x.numpy(), pad, mode="wrap")
    else:
        padded = np.pad(x.numpy(), pad, mode="constant", constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel_size, kernel_size), (2, 3))
    out = SameMaxPool2d(kernel_size, circular)(x)
    np.testing.assert_array_equal(out.numpy(), windows.max(axis=(-2, -1)))


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("kernel_size", [2, 3, 4, 9])
def test_same_max_pool_inference_path_equals_the_autograd_path(
    kernel_size: int, circular: bool
) -> None:
    """Without autograd on CPU the max runs as maxima of shifted copies: the same numbers as
    ``max_pool2d`` (the autograd path), NaN and infinities included, windows wider than the
    image included; MaxBlurPool2d's output (finite input) does not depend on the path."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    special = x.clone()
    special[0, 0, 2, 3], special[1, 2, 0, 0], special[1, 1, 6, 5] = (
        float("nan"),
        float("inf"),
        float("-inf"),
    )
    layer = SameMaxPool2d(kernel_size, circular)
    blur = MaxBlurPool2d(3, kernel_size, 4, 2, "circular" if circular else "zero").double()
    with torch.no_grad():
        assert takes_shift_path(x)
        inference, blurred = layer(special), blur(x)
    trained = special.clone().requires_grad_(True)
    assert not takes_shift_path(trained)
    torch.testing.assert_close(inference, layer(trained).detach(), rtol=0, atol=0, equal_nan=True)
    expected = blur(x.clone().requires_grad_(True)).detach()
    torch.testing.assert_close(blurred, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_same_max_pool_training_path_has_the_numbers_of_the_plain_pool(
    kernel_size: int, circular: bool, layout: torch.memory_format
) -> None:
    """Under autograd the dense max runs its forward in channels-last memory and PyTorch's
    backward on the contiguous map: the maxima of numpy's sliding windows, the gradient each
    window's maximum receives counted by hand, and bit for bit the output, layout and
    gradient of the plain ``max_pool2d`` on the padded map."""
    x = torch.randn(3, 5, 8, 7, dtype=torch.float64).contiguous(memory_format=layout)
    layer = SameMaxPool2d(kernel_size, circular)
    trained = x.clone().requires_grad_(True)
    out = layer(trained)
    grad = torch.randn(out.shape, dtype=torch.float64)
    out.backward(grad)

    before, after = (kernel_size - 1) // 2, kernel_size // 2
    pad = ((0, 0), (0, 0), (before, after), (before, after))
    source = x.numpy()
    padded_np = np.pad(source, pad, mode="wrap" if circular else "edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded_np, (kernel_size,) * 2, (2, 3))
    np.testing.assert_array_equal(out.detach().numpy(), windows.max(axis=(-2, -1)))
    expected = np.zeros_like(source)  # each output's gradient goes to its window's maximum
    height, width = source.shape[-2:]
    for n, c, i, j in np.ndindex(*out.shape):
        window = windows[n, c, i, j]
        di, dj = np.unravel_index(window.argmax(), window.shape)
        row, col = i + di - before, j + dj - before
        if circular:
            row, col = row % height, col % width
        else:
            row, col = min(max(row, 0), height - 1), min(max(col, 0), width - 1)
        expected[n, c, row, col] += grad[n, c, i, j].item()
    np.testing.assert_allclose(trained.grad.numpy(), expected, rtol=1e-12, atol=1e-12)

    plain_input = x.clone().requires_grad_(True)
    plain = F.max_pool2d(layer.pad(plain_input), kernel_size, stride=1)
    plain.backward(grad)
    assert torch.equal(out, plain) and torch.equal(trained.grad, plain_input.grad)
    assert out.is_contiguous(memory_format=layout) == plain.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("padding", [0, 1])
def test_dense_max_pool_matches_the_plain_pool_and_its_second_derivative(padding: int) -> None:
    """The fast training path of the dense max (MaxBlurPool2d's fused pool pads by one) against
    ``max_pool2d``: values, gradients and the gradient of a gradient, bit for bit."""
    x = torch.randn(2, 4, 9, 6, dtype=torch.float64)
    ours, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = dense_max_pool(ours, 2, padding)
    expected = F.max_pool2d(plain, 2, stride=1, padding=padding)
    assert torch.equal(out, expected)
    upstream = torch.randn_like(out, requires_grad=True)
    (grad,) = torch.autograd.grad(out, ours, upstream, create_graph=True)
    (expected_grad,) = torch.autograd.grad(expected, plain, upstream, create_graph=True)
    assert torch.equal(grad, expected_grad)
    probe = torch.randn_like(grad)
    (second,) = torch.autograd.grad(grad, upstream, probe)
    (expected_second,) = torch.autograd.grad(expected_grad, upstream, probe)
    assert torch.equal(second, expected_second)
    # under torch.func's transforms it is the plain pool (their tensors have no layouts)
    per_sample = torch.func.vmap(torch.func.grad(lambda i: dense_max_pool(i, 2, padding).sum()))
    plain_grads = torch.func.vmap(
        torch.func.grad(lambda i: F.max_pool2d(i, 2, stride=1, padding=padding).sum())
    )
    assert torch.equal(per_sample(x), plain_grads(x))


@pytest.mark.parametrize("pad_type", PAD_TYPES)
def test_max_blur_pool_is_dense_max_then_reference_blur(pad_type: str) -> None:
    x = torch.randn(2, 3, 9, 8)
    padded = np.pad(
        x.numpy(),
        ((0, 0), (0, 0), (0, 1), (0, 1)),
        mode="wrap" if pad_type == "circular" else "edge",
    )
    dense = np.maximum.reduce(
        [padded[..., :-1, :-1], padded[..., 1:, :-1], padded[..., :-1, 1:], padded[..., 1:, 1:]]
    )
    expected = reference_blur(torch.from_numpy(dense), 4, 2, pad_type)
    out = MaxBlurPool2d(3, 2, 4, 2, pad_type)(x)
    assert out.shape == (2, 3, 5, 4)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("filt_size", [3, 4, 5])
@pytest.mark.parametrize("pad_type", ["zero", "reflect"])
def test_float32_max_blur_pool_equals_dense_max_then_reference_blur(
    filt_size: int, pad_type: str
) -> None:
    """Whatever path the choice table picks (zero padding and 3 taps take a convolution)."""
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    out = MaxBlurPool2d(3, 2, filt_size, 2, pad_type)(x)
    dense = F.max_pool2d(F.pad(x.double(), (0, 1, 0, 1), mode="replicate"), 2, 1)
    expected = reference_blur(dense, filt_size, 2, pad_type)
    torch.testing.assert_close(out, expected.float(), rtol=1e-5, atol=1e-6)
    grad = torch.randn(expected.shape)
    (ours,) = torch.autograd.grad(out, x, grad)
    (reference,) = torch.autograd.grad(expected, x, grad.double())
    torch.testing.assert_close(ours, reference.float(), rtol=1e-5, atol=1e-6)


def test_circular_max_blur_pool_commutes_with_even_shifts() -> None:
    layer = MaxBlurPool2d(3, pad_type="circular")
    x = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(layer(circular_shift(x, 4, -2)), circular_shift(layer(x), 2, -1))


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_conv_blur_pool_circular_commutes_with_even_shifts(kernel_size: int) -> None:
    layer = ConvBlurPool2d(3, 5, kernel_size, padding_mode="circular").eval()
    x = torch.randn(2, 3, 8, 10)
    out = layer(x)
    assert out.shape == (2, 5, 4, 5)
    torch.testing.assert_close(layer(circular_shift(x, 2, 4)), circular_shift(out, 1, 2))


def test_conv_blur_pool_blurs_the_dense_relu_map() -> None:
    layer = ConvBlurPool2d(3, 4, 3, stride=2, filt_size=3, norm=False).eval()
    x = torch.randn(1, 3, 9, 9)
    dense = F.relu(F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1))
    expected = reference_blur(dense.detach(), 3, 2, "reflect")
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("stride", [2, 3])
def test_aps_keeps_the_component_of_largest_norm_per_sample(norm: str, stride: int) -> None:
    x = torch.randn(5, 3, 4 * stride, 2 * stride)
    order = {"l1": 1, "l2": 2, "linf": np.inf}[norm]
    out = aps_downsample(x, stride, norm)
    for sample, result in zip(x.numpy(), out.numpy(), strict=True):
        parts = reference_components(sample, stride)
        best = int(np.argmax([np.linalg.norm(p.ravel(), order) for p in parts]))
        np.testing.assert_array_equal(result, parts[best])


def test_aps_chooses_per_sample_and_breaks_ties_to_the_first_phase() -> None:
    x = torch.zeros(4, 1, 4, 4)
    x[1, 0, 1, 1] = 1.0  # phase (1, 1) -> 3
    x[2, 0, 0, 1] = 1.0  # phase (0, 1) -> 1
    x[3] = 1.0  # all phases tie -> 0
    assert select_phase(x).tolist() == [0, 3, 1, 0]


def test_aps_output_is_a_circular_shift_of_the_unshifted_output_for_every_shift() -> None:
    x = torch.randn(3, 2, 8, 6)
    out = aps_downsample(x)
    rolls = [circular_shift(out, a, b) for a in range(4) for b in range(3)]
    for dy, dx in itertools.product(range(8), range(6)):
        shifted = aps_downsample(circular_shift(x, dy, dx))
        for i in range(3):
            assert any(torch.equal(shifted[i], r[i]) for r in rolls), (dy, dx, i)


def test_take_phase_reuses_given_phases_on_another_map() -> None:
    x, other = torch.randn(4, 2, 6, 8), torch.randn(4, 5, 6, 8)
    phase = torch.tensor([0, 3, 2, 1])
    taken = take_phase(other, phase)
    for i, p in enumerate(phase.tolist()):
        assert torch.equal(taken[i], other[i, :, p // 2 :: 2, p % 2 :: 2])
    assert torch.equal(take_phase(x, select_phase(x)), aps_downsample(x))


def test_aps_gradient_flows_to_the_selected_component_only() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    aps_downsample(x).sum().backward()
    phase = select_phase(x)
    for i, p in enumerate(phase.tolist()):
        mask = torch.zeros(4, 4)
        mask[p // 2 :: 2, p % 2 :: 2] = 1
        assert torch.equal(x.grad[i], mask.expand(3, 4, 4))


@pytest.mark.parametrize("filt_size", [1, 3, 4])
def test_polyphase_downsample_with_circular_blur_is_shift_consistent(filt_size: int) -> None:
    layer = PolyphaseDownsample2d(3, 2, filt_size, pad_type="circular")
    x = torch.randn(2, 3, 8, 8)
    pooled = layer(x).sum(dim=(-2, -1))  # any shift-invariant summary
    for dy, dx in [(1, 0), (0, 1), (3, 5), (7, 2)]:
        torch.testing.assert_close(layer(circular_shift(x, dy, dx)).sum(dim=(-2, -1)), pooled)


def test_polyphase_downsample_pads_odd_sizes_and_shares_phases() -> None:
    layer = MaxPolyphasePool2d(3, filt_size=3)
    x = torch.randn(2, 3, 7, 9)
    out, phase = layer.forward_with_phase(x)
    assert out.shape == (2, 3, 4, 5) and phase.shape == (2,)
    assert torch.equal(layer(x), out)
    forced = torch.tensor([3, 0])
    blurred = F.pad(layer.aps.blur(layer.pool(x)), (0, 1, 0, 1), mode="circular")
    assert torch.equal(layer.forward_with_phase(x, forced)[0], take_phase(blurred, forced))


@pytest.mark.parametrize(
    "layer",
    [BlurPool2d(3), MaxBlurPool2d(3, pad_type="circular"), PolyphaseDownsample2d(3, filt_size=3)],
    ids=["blur", "maxblur", "aps"],
)
@pytest.mark.slow
def test_layers_compile_to_one_graph(layer: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 8, 10)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), layer(x))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: BlurPool2d(3, filt_size=0), "filt_size=0"),
        (lambda: BlurPool2d(3, filt_size=8), "filt_size=8"),
        (lambda: BlurPool2d(3, stride=0), "stride=0"),
        (lambda: BlurPool2d(0), "channels=0"),
        (lambda: BlurPool2d(3, pad_type="edge"), "zero, reflect, replicate, circular"),
        (lambda: PolyphaseDownsample2d(3, norm="l3"), "l1, l2, linf"),
        (lambda: binomial_filter(9), "filt_size=9"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"BlurPool2d\(channels=4\) got an input of shape"):
        BlurPool2d(4)(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        aps_downsample(torch.randn(1, 3, 5, 4))
    with pytest.raises(ValueError, match="one index per sample"):
        take_phase(torch.randn(2, 3, 4, 4), torch.tensor([0]))


# --- Ideal (FFT) resampling, alias-free activation, learnable polyphase sampling ---------

from invariance_recipes.lightning_modules.layers import (  # noqa: E402
    AliasFreeActivation,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxLearnablePolyphasePool2d,
    PolyphaseFollower2d,
    ideal_upsample,
)


def fft_crop_downsample(x: np.ndarray) -> np.ndarray:
    """Reference: the spectrum of an even n x n map cropped to |k| < n/4 on an n/2 grid."""
    n = x.shape[-1]
    m = n // 2
    spectrum = np.fft.fft2(x)
    k = np.fft.fftfreq(n, 1 / n)
    keep = np.flatnonzero(np.abs(k) < m / 2)
    target = k[keep].astype(int) % m
    cropped = np.zeros((*x.shape[:-2], m, m), dtype=complex)
    cropped[..., target[:, None], target[None, :]] = spectrum[..., keep[:, None], keep[None, :]]
    return np.real(np.fft.ifft2(cropped)) * (m / n) ** 2


def zero_padded_spectrum(x: np.ndarray, factor: int) -> np.ndarray:
    """Reference interpolation: the spectrum zero-padded onto a factor-times finer grid, the
    Nyquist bin (even sizes) split evenly between +-n/2."""
    for axis in (-2, -1):
        n = x.shape[axis]
        spectrum = np.moveaxis(np.fft.fft(x, axis=axis), axis, -1)
        fine = np.zeros((*spectrum.shape[:-1], n * factor), dtype=complex)
        for k in range(-(n // 2), n // 2 + 1):
            if abs(k) * 2 == n:
                fine[..., k % (n * factor)] += spectrum[..., (n // 2)] / 2
            elif abs(k) * 2 < n:
                fine[..., k % (n * factor)] = spectrum[..., k % n]
        x = np.moveaxis(np.real(np.fft.ifft(fine)) * factor, -1, axis)
    return x


@pytest.mark.parametrize("size", [8, 12, 16, 20])
def test_ideal_downsample_equals_an_fft_crop(size: int) -> None:
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    out = IdealLowPassDownsample2d(2)(x)
    np.testing.assert_allclose(out.numpy(), fft_crop_downsample(x.numpy()), atol=1e-12)


@pytest.mark.parametrize(("height", "width"), [(9, 12), (7, 7), (1, 1), (3, 2)])
def test_ideal_downsample_maps_odd_sizes_to_ceil_half(height: int, width: int) -> None:
    out = IdealLowPassDownsample2d(2)(torch.randn(1, 2, height, width))
    assert out.shape == (1, 2, -(-height // 2), -(-width // 2))


@pytest.mark.parametrize(("height", "width"), [(8, 8), (6, 10), (7, 5)])
def test_ideal_upsample_equals_zero_padded_spectrum_and_keeps_the_samples(
    height: int, width: int
) -> None:
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    up = ideal_upsample(x, 2)
    np.testing.assert_allclose(up.numpy(), zero_padded_spectrum(x.numpy(), 2), atol=1e-12)
    torch.testing.assert_close(up[..., ::2, ::2], x, rtol=0, atol=1e-12)


def test_alias_free_polynomial_activation_matches_a_dense_reference() -> None:
    # The quadratic evaluated on an 8x finer grid (far beyond what it needs), low-passed to
    # the original band and sampled: the layer's 2x grid must give the same numbers.
    torch.manual_seed(0)
    layer = AliasFreeActivation(3).double()
    with torch.no_grad():
        layer.coefficients.copy_(torch.randn(3, 3, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    a, b, c = (layer.coefficients[:, i].detach().numpy()[None, :, None, None] for i in range(3))
    fine = zero_padded_spectrum(x.numpy(), 8)
    activated = a + b * fine + c * fine**2
    reference = np.real(np.fft.ifft2(np.fft.fft2(activated) * band_mask_np(64, 4)))[..., ::8, ::8]
    np.testing.assert_allclose(layer(x).detach().numpy(), reference, atol=1e-10)


def band_mask_np(n: int, band: float) -> np.ndarray:
    k = np.abs(np.fft.fftfreq(n, 1 / n))
    keep = (k < band).astype(float)
    return keep[:, None] * keep[None, :]


def test_alias_free_activation_starts_as_the_least_squares_quadratic_for_relu() -> None:
    # Independent fit: regress ReLU on (1, x, x^2) over standard-normal samples.
    x = np.random.default_rng(0).standard_normal(2_000_000)
    fit = np.linalg.lstsq(np.stack([np.ones_like(x), x, x**2], 1), np.maximum(x, 0), rcond=None)
    layer = AliasFreeActivation(2)
    np.testing.assert_allclose(layer.coefficients[0].detach().numpy(), fit[0], atol=3e-3)


def polyphase_parts(x: torch.Tensor) -> list[torch.Tensor]:
    return [x[..., py::2, px::2] for py in range(2) for px in range(2)]


def reference_logits(layer: LearnablePolyphaseDownsample2d, x: torch.Tensor) -> torch.Tensor:
    """The scoring net applied to each component separately (circular 3x3 convolutions)."""
    conv1, conv2 = layer.scorer.conv1, layer.scorer.conv2
    scores = []
    for part in polyphase_parts(x):
        hidden = F.relu(
            F.conv2d(F.pad(part, (1, 1, 1, 1), mode="circular"), conv1.weight, conv1.bias)
        )
        out = F.conv2d(F.pad(hidden, (1, 1, 1, 1), mode="circular"), conv2.weight, conv2.bias)
        scores.append(out.mean(dim=(1, 2, 3)))
    return torch.stack(scores, 1)


def test_lps_evaluation_keeps_the_component_of_largest_logit() -> None:
    torch.manual_seed(0)
    layer = LearnablePolyphaseDownsample2d(4, hidden=6).double().eval()
    x = torch.randn(5, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        best = reference_logits(layer, x).argmax(1)
        expected = torch.stack([polyphase_parts(x)[p][i] for i, p in enumerate(best.tolist())])
        out, weights = layer.forward_with_phase(x)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        torch.testing.assert_close(weights, F.one_hot(best, 4).double())
        torch.testing.assert_close(layer(x), out, rtol=0, atol=0)  # deterministic


def test_lps_training_mixes_components_by_softmax_and_trains_the_scorer() -> None:
    torch.manual_seed(0)
    layer = LearnablePolyphaseDownsample2d(4, hidden=6, mixture="softmax", tau=0.5).double()
    x = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    out, weights = layer.forward_with_phase(x)
    expected_weights = torch.softmax(reference_logits(layer, x) / 0.5, dim=1)
    torch.testing.assert_close(weights, expected_weights)
    parts = polyphase_parts(x)
    expected = sum(expected_weights[:, p, None, None, None] * parts[p] for p in range(4))
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.scorer.parameters())


def test_lps_gumbel_training_weights_are_a_random_distribution() -> None:
    layer = LearnablePolyphaseDownsample2d(2, hidden=3)
    x = torch.randn(4, 2, 6, 6)
    first, second = layer.forward_with_phase(x)[1], layer.forward_with_phase(x)[1]
    torch.testing.assert_close(first.sum(1), torch.ones(4))
    assert (first >= 0).all() and not torch.equal(first, second)


def test_lps_choice_follows_a_circular_shift_of_the_input() -> None:
    torch.manual_seed(1)
    layer = LearnablePolyphaseDownsample2d(3, hidden=4).double().eval()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        logits = reference_logits(layer, x)
        shifted = reference_logits(layer, torch.roll(x, 1, dims=-1))
    # A one-pixel shift along the width swaps px: components (0,1)<->(0,0)... as a permutation.
    torch.testing.assert_close(shifted[:, [1, 0, 3, 2]], logits)
    with torch.no_grad():
        out, moved = layer(x), layer(torch.roll(x, 1, dims=-1))
    best = logits.argmax(1)
    wraps = (best % 2 == 1).long()  # taking the odd columns then the even ones shifts by one
    for i in range(4):
        torch.testing.assert_close(moved[i], torch.roll(out[i], int(wraps[i]), dims=-1))


def test_polyphase_follower_applies_the_main_paths_weights() -> None:
    torch.manual_seed(0)
    main = LearnablePolyphaseDownsample2d(3, hidden=4, mixture="softmax").double()
    follower = PolyphaseFollower2d(5).double()
    x, y = (
        torch.randn(2, 3, 8, 8, dtype=torch.float64),
        torch.randn(2, 5, 8, 8, dtype=torch.float64),
    )
    weights = main.forward_with_phase(x)[1]
    parts = polyphase_parts(y)
    expected = sum(weights[:, p, None, None, None] * parts[p] for p in range(4))
    torch.testing.assert_close(follower.forward_with_phase(y, weights)[0], expected)
    torch.testing.assert_close(follower(y), y[..., ::2, ::2])  # no weights: the fixed grid


def test_max_learnable_polyphase_pool_is_dense_circular_max_then_lps() -> None:
    torch.manual_seed(0)
    layer = MaxLearnablePolyphasePool2d(3, hidden=4).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    dense = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="circular"), 2, stride=1)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.lps(dense), rtol=0, atol=0)
        assert layer(torch.randn(1, 3, 7, 9, dtype=torch.float64)).shape == (1, 3, 4, 5)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: LearnablePolyphaseDownsample2d(3, mixture="hard"), "unknown mixture 'hard'"),
        (lambda: LearnablePolyphaseDownsample2d(3, tau=0.0), "tau=0.0"),
        (lambda: AliasFreeActivation(3, "gelu"), "unknown nonlinearity 'gelu'"),
        (lambda: IdealLowPassDownsample2d(0), "stride=0"),
    ],
)
def test_new_layers_reject_bad_arguments(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()
