"""The Fourier equivariance error sees aliasing at a one-pixel shift: ideal low-pass < BlurPool <
MaxPool, where the integer error at shifts by the stride scores MaxPool as perfect."""

import pytest
import torch
from torch import nn

from invariance_recipes.lightning_modules.layers import BlurPool2d
from invariance_recipes.lightning_modules.metrics import (
    equivariance_error,
    feature_equivariance_error,
)


class IdealLowPassSubsample(nn.Module):
    """Keep only frequencies strictly below a quarter cycle per pixel, then take every 2nd pixel:
    the subsampled map is then band-limited below its own Nyquist frequency, with no alias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fy, fx = torch.fft.fftfreq(h, dtype=x.dtype), torch.fft.fftfreq(w, dtype=x.dtype)
        keep = (fy.abs()[:, None] < 0.25) & (fx.abs()[None, :] < 0.25)
        return torch.fft.ifft2(torch.fft.fft2(x) * keep).real[..., ::2, ::2]


def noise() -> torch.Tensor:
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("offset", [(1, 1), (0, 1), (1, 0)])
def test_one_pixel_error_orders_ideal_lowpass_blurpool_maxpool(offset: tuple[int, int]) -> None:
    layers = {
        "ideal": IdealLowPassSubsample(),
        "blur": BlurPool2d(3, filt_size=4, stride=2, pad_type="circular"),
        "max": nn.MaxPool2d(2),
    }
    errors = {
        name: float(feature_equivariance_error(layer, layer, noise(), offset, 2, "fourier"))
        for name, layer in layers.items()
    }
    assert errors["ideal"] < 1e-5
    assert 0.05 < errors["blur"] < errors["max"]
    assert errors["max"] > 0.5


def test_integer_error_at_a_stride_multiple_cannot_see_maxpool_aliasing() -> None:
    """The blind spot the Fourier mode removes: at even shifts a circular MaxPool is exact."""
    pool, x = nn.MaxPool2d(2), noise()
    error = equivariance_error(pool(torch.roll(x, (2, -4), (2, 3))), pool(x), (2, -4), 2)
    assert float(error.max()) == 0.0


def test_a_stride_that_does_not_divide_the_feature_map_is_a_one_line_error() -> None:
    pool = nn.MaxPool2d(2)
    with pytest.raises(ValueError, match=r"stride=4 does not divide the 32x32 input.*16x16"):
        feature_equivariance_error(pool, pool, noise(), (1, 1), 4, "fourier")
