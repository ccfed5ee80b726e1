"""The layers plug into the anchors' APIs: timm's ``aa_layer`` (which passes ``channels``,
``stride`` and the factory arguments ``device`` and ``dtype``), the factory convention itself
for every layer, and MaxBlurPool2d's unambiguous argument names with the old one deprecated."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from invariance_recipes.lightning_modules import layers
from invariance_recipes.lightning_modules.layers import (
    AliasFreeActivation,
    BlurPool2d,
    CircularConv2d,
    ConvBlurPool2d,
    IdealLowPassDownsample2d,
    LearnablePolyphaseDownsample2d,
    MaxBlurPool2d,
    MaxLearnablePolyphasePool2d,
    MaxPolyphasePool2d,
    PolyphaseDownsample2d,
    PolyphaseFollower2d,
    PolyphaseScoringNet,
    SameMaxPool2d,
    SpatialPyramidPool2d,
)

#: every public layer, built with its required arguments and the factory ones
BUILD = {
    "AliasFreeActivation": lambda **kw: AliasFreeActivation(4, **kw),
    "BlurPool2d": lambda **kw: BlurPool2d(4, **kw),
    "CircularConv2d": lambda **kw: CircularConv2d(4, 6, 3, padding=1, **kw),
    "ConvBlurPool2d": lambda **kw: ConvBlurPool2d(4, 6, **kw),
    "IdealLowPassDownsample2d": lambda **kw: IdealLowPassDownsample2d(**kw),
    "LearnablePolyphaseDownsample2d": lambda **kw: LearnablePolyphaseDownsample2d(4, **kw),
    "MaxBlurPool2d": lambda **kw: MaxBlurPool2d(4, **kw),
    "MaxLearnablePolyphasePool2d": lambda **kw: MaxLearnablePolyphasePool2d(4, **kw),
    "MaxPolyphasePool2d": lambda **kw: MaxPolyphasePool2d(4, filt_size=3, **kw),
    "PolyphaseDownsample2d": lambda **kw: PolyphaseDownsample2d(4, filt_size=3, **kw),
    "PolyphaseFollower2d": lambda **kw: PolyphaseFollower2d(4, filt_size=3, **kw),
    "PolyphaseScoringNet": lambda **kw: PolyphaseScoringNet(4, 5, **kw),
    "SameMaxPool2d": lambda **kw: SameMaxPool2d(**kw),
    "SpatialPyramidPool2d": lambda **kw: SpatialPyramidPool2d(**kw),
}


def test_every_public_layer_is_covered() -> None:
    public = {
        name
        for name in layers.__all__
        if inspect.isclass(getattr(layers, name)) and issubclass(getattr(layers, name), nn.Module)
    }
    assert public == set(BUILD)


@pytest.mark.parametrize("name", sorted(BUILD))
def test_factory_arguments_place_every_tensor(name: str) -> None:
    """``device='meta'`` and ``dtype=float64`` reach every parameter and floating buffer, as
    they do for ``nn.Conv2d``; without them the layer is float32 on the CPU as before."""
    for device, dtype in (("meta", torch.float64), (None, torch.float64), ("meta", None)):
        layer = BUILD[name](device=device, dtype=dtype)
        tensors = [*layer.parameters(), *layer.buffers()]
        for tensor in tensors:
            assert tensor.device.type == (device or "cpu"), (name, tensor.shape)
            if tensor.is_floating_point():
                assert tensor.dtype == (dtype or torch.float32), (name, tensor.shape)
    plain = BUILD[name]()
    assert all(t.device.type == "cpu" for t in [*plain.parameters(), *plain.buffers()])


@pytest.mark.parametrize(
    "name", ["IdealLowPassDownsample2d", "SameMaxPool2d", "SpatialPyramidPool2d"]
)
def test_weight_free_layers_accept_channels(name: str) -> None:
    layer = BUILD[name](channels=7)
    x = torch.randn(2, 7, 8, 8)
    assert torch.equal(layer(x), BUILD[name]()(x))


FIXED_FILTER = {
    "BlurPool2d": lambda c, pad: BlurPool2d(c, filt_size=3, pad_type=pad),
    "MaxBlurPool2d": lambda c, pad: MaxBlurPool2d(c, filt_size=3, pad_type=pad),
    "PolyphaseDownsample2d": lambda c, pad: PolyphaseDownsample2d(c, filt_size=3, pad_type=pad),
    "MaxPolyphasePool2d": lambda c, pad: MaxPolyphasePool2d(c, filt_size=3, pad_type=pad),
}


@pytest.mark.parametrize("name", sorted(FIXED_FILTER))
@pytest.mark.parametrize("pad", ["reflect", "zero", "circular"])
def test_fixed_filter_layers_need_no_channel_count(name: str, pad: str) -> None:
    """Built without ``channels``, a layer takes any number of them and computes what the
    layer built for that number computes: on small maps (the dense path) and large ones (the
    convolution), for 3 and then 5 channels with one instance."""
    shared = FIXED_FILTER[name](None, pad).double()
    for channels, side in ((3, 9), (5, 9), (3, 64), (5, 65)):
        x = torch.randn(2, channels, side, side, dtype=torch.float64)
        expected = FIXED_FILTER[name](channels, pad).double()(x)
        torch.testing.assert_close(shared(x), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"channels=4\) got an input of shape \(2, 3, 9, 9\)"):
        FIXED_FILTER[name](4, pad)(torch.randn(2, 3, 9, 9))


def test_factory_float64_blur_computes_in_float64() -> None:
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    ours = BlurPool2d(4, 3, dtype=torch.float64)(x)
    reference = BlurPool2d(4, 3).double()(x)
    assert ours.dtype == torch.float64
    assert torch.equal(ours, reference)


def test_max_blur_pool_names_the_max_window_max_pool_size() -> None:
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    new = MaxBlurPool2d(3, max_pool_size=3, filt_size=3).double()
    with pytest.warns(FutureWarning, match=r"kernel_size=\.\.\.\) is deprecated.*max_pool_size="):
        old = MaxBlurPool2d(3, kernel_size=3, filt_size=3).double()
    assert torch.equal(new(x), old(x))
    assert new.pool.kernel_size == 3 and new.blur.filt_size == 3
    assert "max_pool_size=3" in repr(new)
    # the max window: a 3x3 max then the blur, written out here
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=-torch.inf)
    dense_max = torch.nn.functional.max_pool2d(padded, 3, stride=1)
    assert torch.equal(new(x), BlurPool2d(3, 3).double()(dense_max))
    for cls in (MaxPolyphasePool2d, MaxLearnablePolyphasePool2d):
        with pytest.warns(FutureWarning, match="max_pool_size"):
            layer = cls(3, kernel_size=3)
        assert layer.pool.kernel_size == 3
        with pytest.raises(ValueError, match="max_pool_size=0"):
            cls(3, max_pool_size=0)


class ThreeTapBlurPool2d(BlurPool2d):
    """timm's default filter size (timm's ResNet needs a class, not a partial)."""

    def __init__(self, channels: int, stride: int = 2, **factory: object) -> None:
        super().__init__(channels, 3, stride, **factory)  # type: ignore[arg-type]


def test_timm_resnet_takes_blurpool_as_aa_layer() -> None:
    """``timm.create_model(..., aa_layer=BlurPool2d)`` builds and, with timm's filter size,
    is timm's own anti-aliased ResNet: same layers, same state dict, same output."""
    timm = pytest.importorskip("timm")
    from timm.layers import BlurPool2d as TimmBlurPool2d

    torch.manual_seed(0)
    ours = timm.create_model("resnet18", aa_layer=BlurPool2d, num_classes=10).eval()
    assert sum(isinstance(m, BlurPool2d) for m in ours.modules()) >= 3
    x = torch.randn(2, 3, 64, 64)
    theirs = timm.create_model("resnet18", aa_layer=TimmBlurPool2d, num_classes=10).eval()
    with torch.no_grad():
        assert ours(x).shape == theirs(x).shape == (2, 10)
    same_filter = timm.create_model("resnet18", aa_layer=ThreeTapBlurPool2d, num_classes=10).eval()
    same_filter.load_state_dict(theirs.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(same_filter(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_timm_passes_its_factory_arguments_to_the_stem_blur() -> None:
    """timm builds the stem's ``aa_layer(channels=..., stride=2, device=..., dtype=...)``; the
    blocks go through ``create_aa``, which passes the factory arguments to timm's own layer only."""
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", aa_layer=BlurPool2d, device="meta", dtype=torch.float64)
    stem_blur = model.maxpool[1]
    assert isinstance(stem_blur, BlurPool2d)
    assert stem_blur.filt.device.type == "meta" and stem_blur.filt.dtype == torch.float64
