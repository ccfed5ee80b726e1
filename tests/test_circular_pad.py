"""The circular pad with the folded backward, and the convolution that uses it, against
PyTorch's own circular pad and ``nn.Conv2d(padding_mode="circular")``, and against a wrap
written here by indexing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from invariance_recipes.lightning_modules.layers.circular_conv import CircularConv2d, conv2d
from invariance_recipes.lightning_modules.layers.padding import circular_pad, pad2d
from invariance_recipes.lightning_modules.nets.build import build_net


def wrapped(x: torch.Tensor, padding: tuple[int, int, int, int]) -> torch.Tensor:
    """The reference: padded pixel (i, j) is input pixel ((i - top) mod H, (j - left) mod W)."""
    left, right, top, bottom = padding
    height, width = x.shape[-2:]
    rows = (torch.arange(-top, height + bottom)) % height
    cols = (torch.arange(-left, width + right)) % width
    return x[..., rows[:, None], cols[None, :]]


PADDINGS = [(1, 1, 1, 1), (0, 1, 0, 1), (2, 0, 1, 3), (3, 3, 0, 0), (5, 4, 6, 5)]


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_equal_the_wrap_and_torchs_pad(
    padding: tuple[int, int, int, int], channels_last: bool
) -> None:
    generator = torch.Generator().manual_seed(sum(padding))
    x = torch.randn(3, 4, 6, 5, generator=generator, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = circular_pad(x, padding)
    reference = wrapped(x, padding)
    assert torch.equal(out, reference) and torch.equal(out, F.pad(x, padding, mode="circular"))
    weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    (expected,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: circular_pad(t, padding), (x,))


def test_pad2d_circular_takes_it_and_wraps_beyond_the_side_as_before() -> None:
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert torch.equal(pad2d(x, (1, 2, 1, 0), "circular"), wrapped(x, (1, 2, 1, 0)))
    assert torch.equal(pad2d(x, (6, 5, 9, 0), "circular"), wrapped(x, (6, 5, 9, 0)))


@pytest.mark.parametrize("padding", [1, "same"])
def test_circular_conv_equals_torchs_circular_conv(padding: int | str) -> None:
    torch.manual_seed(0)
    ours = CircularConv2d(3, 5, 3, padding=padding, bias=True).double()
    theirs = nn.Conv2d(3, 5, 3, padding=padding, padding_mode="circular", bias=True).double()
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-12)
    grads = [torch.autograd.grad(m(x).square().sum(), (x, m.weight)) for m in (ours, theirs)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert "padding_mode=circular" in repr(ours)


def test_conv2d_pads_each_border_its_way() -> None:
    assert type(conv2d(2, 2, 3, padding=1, padding_mode="circular")) is CircularConv2d
    zero = conv2d(2, 2, 3, padding=1, padding_mode="zero")
    assert type(zero) is nn.Conv2d and zero.padding_mode == "zeros"
    assert conv2d(2, 2, 3, padding=1, padding_mode="reflect").padding_mode == "reflect"


def test_a_circular_network_keeps_its_checkpoint_keys() -> None:
    """A network saved before the circular convolutions ran through CircularConv2d loads."""
    net = build_net(
        "small-cnn", in_channels=1, num_classes=10, image_size=16, padding_mode="circular"
    )
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is CircularConv2d for m in convs if m.padding != (0, 0))
    plain = build_net("small-cnn", in_channels=1, num_classes=10, image_size=16)
    assert net.state_dict().keys() == plain.state_dict().keys()


def test_torch_func_transforms_go_through_it() -> None:
    """``torch.func.grad`` and ``vmap`` of the pad equal those of PyTorch's own."""
    generator = torch.Generator().manual_seed(7)
    xs = torch.randn(4, 2, 3, 5, 4, generator=generator, dtype=torch.float64)
    weights = torch.randn(2, 3, 7, 6, generator=generator, dtype=torch.float64)

    def ours(x: torch.Tensor) -> torch.Tensor:
        return (circular_pad(x, (1, 1, 1, 1)) * weights).square().sum()

    def reference(x: torch.Tensor) -> torch.Tensor:
        return (wrapped(x, (1, 1, 1, 1)) * weights).square().sum()

    grads = torch.func.vmap(torch.func.grad(ours))(xs)
    torch.testing.assert_close(grads, torch.func.vmap(torch.func.grad(reference))(xs))


@pytest.mark.parametrize("padding", [(-1, 0, 0, 0), (0, 0, 5, 0), (0, 6, 0, 0)])
def test_a_padding_it_cannot_wrap_is_one_line_naming_pad2d(
    padding: tuple[int, int, int, int],
) -> None:
    with pytest.raises(ValueError, match=r"between 0 and the side it wraps; pad2d"):
        circular_pad(torch.randn(1, 2, 4, 5), padding)


def test_circular_conv_wraps_a_map_smaller_than_its_padding_periodically() -> None:
    """A 5x5 convolution (padding 2) on a 1x2 map: each tap sees the map repeated."""
    conv = CircularConv2d(1, 1, 5, padding=2, bias=False).double()
    x = torch.randn(1, 1, 1, 2, dtype=torch.float64)
    expected = F.conv2d(wrapped(x, (2, 2, 2, 2)), conv.weight)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)
