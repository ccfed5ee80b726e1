"""Binomial low-pass taps, the filters of anti-aliased downsampling."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from invariance_recipes.lightning_modules.layers.checks import check_filt_size


def binomial_filter(size: int) -> Tensor:
    """Normalized 1D binomial taps ``C(size-1, k) / 2**(size-1)``, ``size`` in 1..7.

    Rows of Pascal's triangle are the discrete approximation of a Gaussian that Zhang
    (ICML 2019, "Making Convolutional Networks Shift-Invariant Again") uses for BlurPool:
    size 1 is no filter, 2 a box, 3 is [1, 2, 1] / 4 ("Tri-3"), 5 is "Bin-5". The taps sum
    to 1, so a blur keeps constant images constant.
    """
    check_filt_size(size)
    taps = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float32)
    return taps / taps.sum()
