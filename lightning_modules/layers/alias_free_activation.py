"""Alias-free nonlinearity: upsample, activate, low-pass, downsample (Michaeli, Michaeli &
Soudry, CVPR 2023)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from invariance_recipes.common.checks import check_choice, check_positive
from invariance_recipes.lightning_modules.layers.checks import check_stride
from invariance_recipes.lightning_modules.layers.ideal_lowpass import (
    ideal_downsample,
    ideal_upsample,
    ideal_upsampled_square,
    without_nyquist,
)

NONLINEARITIES = ("poly", "relu")


def relu_fit_coefficients() -> tuple[float, float, float]:
    """``(a, b, c)`` of the quadratic ``a + b x + c x^2`` closest to ReLU in mean square for
    ``x ~ N(0, 1)``, the input BatchNorm hands it at initialization.

    Normal equations with the moments of N(0, 1): ``b = E[x relu(x)] = 1/2``,
    ``a + c = E[relu] = 1/sqrt(2 pi)`` and ``a + 3c = E[x^2 relu] = 2/sqrt(2 pi)``.
    """
    mean_relu = 1 / math.sqrt(2 * math.pi)
    return mean_relu / 2, 0.5, mean_relu / 2


class AliasFreeActivation(nn.Module):
    """A pointwise nonlinearity that does not alias: ``downsample(act(upsample(x)))``.

    A pointwise nonlinearity widens the spectrum, and whatever lands above the grid's
    Nyquist folds back (aliases), so a sub-pixel shift of the input is no longer a shift of
    the output. Here the map is first interpolated onto a 2x finer grid (ideal FFT
    upsampling), the nonlinearity is applied there, and an ideal low-pass and subsampling
    bring it back (Michaeli, Michaeli & Soudry, CVPR 2023; their ``models/activation.py``
    ``UpPolyActPerChannel``).

    ``nonlinearity='poly'`` (default) is a per-channel quadratic ``a + b x + c x^2`` with
    learnable coefficients, initialized as the least-squares fit of ReLU under N(0, 1): a
    quadratic at most doubles the bandwidth, which the 2x grid holds, so the layer is
    exactly equivariant to fractional shifts of inputs without Nyquist content.
    ``'relu'`` keeps ReLU, whose spectrum is unbounded: filtered, not exactly alias-free.

    ``stride`` > 1 also downsamples, as an :class:`IdealLowPassDownsample2d` of that stride
    after the layer would, in the same pass: two ideal low-passes compose to the narrower one,
    so the squares on the 2x grid go straight to the output grid (stride ``2 * stride``) and
    the affine part is downsampled on its own. The same function (equal to 1e-15 in float64,
    tested) at fewer multiply-adds than the pair.

    Cost: the square runs on the smallest grid that folds none of its band into the output's
    (1.25-1.5x each side, not 2x; see :func:`ideal_upsampled_square`), reached and left by
    dense matrix products along each axis (see :class:`IdealLowPassDownsample2d`):
    ``O(C H W (H + W))`` multiply-adds against ``O(C H W)`` for a ReLU, many times its time
    (the benchmark recipe measures it).

    Args:
        channels: channels of the input (one set of coefficients each).
        nonlinearity: ``poly`` or ``relu``.
        stride: downsampling factor of the output (1: none).
    Shape:
        - Input: ``[N, channels, H, W]``.
        - Output: ``[N, channels, ceil(H / stride), ceil(W / stride)]``.

    Examples:
        >>> import torch
        >>> act = AliasFreeActivation(3)
        >>> act(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        nonlinearity: str = "poly",
        stride: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive("channels", channels)
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        check_stride(stride)
        self.channels = channels
        self.nonlinearity = nonlinearity
        self.stride = stride
        if nonlinearity == "poly":
            init = torch.tensor(relu_fit_coefficients(), device=device, dtype=dtype)
            init = init.repeat(channels, 1)
            self.coefficients = nn.Parameter(init)  # [channels, 3]: a, b, c

    def activate(self, x: Tensor) -> Tensor:
        """The nonlinearity alone, applied pointwise."""
        if self.nonlinearity == "relu":
            return torch.relu(x)
        a, b, c = (coef.view(1, -1, 1, 1).to(x.dtype) for coef in self.coefficients.unbind(1))
        return a + x * (b + c * x)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"AliasFreeActivation(channels={self.channels}) got an input of shape "
                f"{tuple(x.shape)}: pass a [batch, {self.channels}, height, width] tensor"
            )
        if self.nonlinearity == "relu":  # from the 2x grid straight to the output grid
            return ideal_downsample(self.activate(ideal_upsample(x, 2)), 2 * self.stride)
        # D(U(a + b x + c x^2)) = a + b D(U(x)) + c D(U(x)^2) (D and U linear, D(U(1)) = 1),
        # and D(U(x)) is x without its Nyquist rows and columns (which a further ideal
        # downsampling removes anyway): only the square needs a finer grid (the smallest that
        # aliases nothing into the output band), and the affine part costs a pass over x.
        a, b, c = (coef.view(1, -1, 1, 1).to(x.dtype) for coef in self.coefficients.unbind(1))
        squared = ideal_upsampled_square(x, self.stride)
        linear = without_nyquist(x) if self.stride == 1 else ideal_downsample(x, self.stride)
        return torch.addcmul(a + b * linear, c, squared)

    def extra_repr(self) -> str:
        stride = f", stride={self.stride}" if self.stride != 1 else ""
        return f"channels={self.channels}, nonlinearity={self.nonlinearity!r}{stride}"
