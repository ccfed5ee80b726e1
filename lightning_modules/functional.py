"""Functional twins of the layers and metrics, torch only, as ``torch.nn.functional`` and
``torchmetrics.functional`` are to their classes: one call on one batch, no state.

    >>> import torch
    >>> from invariance_recipes.lightning_modules import functional as IF
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    >>> shifted = torch.tensor([[1.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    >>> IF.flip_rate(logits, shifted)
    tensor(0.3333)
    >>> IF.blur_pool2d(torch.ones(1, 2, 8, 8), filt_size=3).shape
    torch.Size([1, 2, 4, 4])

The metric classes (:class:`ShiftConsistency`, :class:`FlipRate`, :class:`MeanAbsoluteChange`)
are shells over the ``*_update`` functions here: each returns the sums a batch adds to the
class's state, and the public function divides them. ``blur_pool2d`` runs :class:`BlurPool2d`
itself (its filter is fixed and tiny), so the fast paths the layer picks per input are the
functional's too and live in one place. This module needs torch only (not torchmetrics), so it
comes with the core install.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invariance_recipes.lightning_modules.layers.blur_pool import BlurPool2d
from invariance_recipes.lightning_modules.layers.max_blur_pool import MaxBlurPool2d
from invariance_recipes.lightning_modules.layers.polyphase import aps_downsample

__all__ = [
    "aps_downsample",
    "blur_pool2d",
    "check_same_samples",
    "flip_rate",
    "flip_rate_update",
    "max_blur_pool2d",
    "mean_absolute_change",
    "mean_absolute_change_update",
    "shift_consistency",
    "shift_consistency_update",
    "top1",
]


# --- inputs ------------------------------------------------------------------------------


def top1(preds: Tensor, name: str, layout: str = "B") -> Tensor:
    """Top-1 class indices of `preds`: scores [layout, C] (floating) or indices [layout] (integer).

    Scores may be logits or probabilities: both have the same argmax.
    """
    batch_dims = layout.count(",") + 1
    if preds.is_floating_point() and preds.ndim == batch_dims + 1:
        return preds.argmax(dim=-1)
    if not preds.is_floating_point() and preds.dtype != torch.bool and preds.ndim == batch_dims:
        return preds
    raise ValueError(
        f"{name} must be class scores [{layout}, C] (floating) or class indices [{layout}] "
        f"(integer), got shape {tuple(preds.shape)} and dtype {preds.dtype}"
    )


def check_same_samples(first: Tensor, second: Tensor, names: tuple[str, str]) -> None:
    """Raise unless the two inputs hold the same samples (same shape)."""
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must hold the same samples, got shapes "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )


# --- metrics -----------------------------------------------------------------------------


def shift_consistency_update(preds_a: Tensor, preds_b: Tensor) -> tuple[Tensor, Tensor]:
    """(agreeing samples, samples) of logits [B, C] or class indices [B] of two shifted copies."""
    first, second = top1(preds_a, "preds_a"), top1(preds_b, "preds_b")
    check_same_samples(first, second, ("preds_a", "preds_b"))
    return (first == second).sum(), torch.tensor(first.numel(), device=first.device)


def shift_consistency(preds_a: Tensor, preds_b: Tensor) -> Tensor:
    """Fraction of samples whose top-1 class agrees on two shifted copies (Zhang, ICML 2019);
    see :class:`ShiftConsistency` for the protocol."""
    agree, total = shift_consistency_update(preds_a, preds_b)
    return agree / total


def flip_rate_update(preds: Tensor, preds_shifted: Tensor) -> tuple[Tensor, Tensor]:
    """(changed samples, samples) between logits [B, C] or class indices [B] of x and shifted x."""
    before, after = top1(preds, "preds"), top1(preds_shifted, "preds_shifted")
    check_same_samples(before, after, ("preds", "preds_shifted"))
    return (before != after).sum(), torch.tensor(before.numel(), device=before.device)


def flip_rate(preds: Tensor, preds_shifted: Tensor) -> Tensor:
    """Fraction of samples whose top-1 class changes under the shift (Azulay & Weiss, JMLR 2019)."""
    flips, total = flip_rate_update(preds, preds_shifted)
    return flips / total


def mean_absolute_change_update(
    logits: Tensor, logits_shifted: Tensor, probabilities: bool = False
) -> tuple[Tensor, Tensor]:
    """(sum of |p(c | x) - p(c | shifted x)|, samples) with c the top-1 class of x, for scores
    [B, C]; logits go through a softmax unless ``probabilities``. Summed in float32 at least."""
    check_same_samples(logits, logits_shifted, ("logits", "logits_shifted"))
    if logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be floating class scores [B, C], got shape {tuple(logits.shape)} "
            f"and dtype {logits.dtype}"
        )
    dtype = torch.promote_types(logits.dtype, torch.float32)
    before, after = logits.to(dtype), logits_shifted.to(dtype)
    if not probabilities:
        before, after = before.softmax(dim=1), after.softmax(dim=1)
    top = before.argmax(dim=1, keepdim=True)
    change = (before.gather(1, top) - after.gather(1, top)).abs().sum()
    return change, torch.tensor(logits.shape[0], device=logits.device)


def mean_absolute_change(
    logits: Tensor, logits_shifted: Tensor, probabilities: bool = False
) -> Tensor:
    """Mean absolute change of the top-1 probability under the shift (Azulay & Weiss)."""
    change, total = mean_absolute_change_update(logits, logits_shifted, probabilities)
    return change / total


# --- layers ------------------------------------------------------------------------------


def blur_pool2d(
    x: Tensor, filt_size: int = 4, stride: int = 2, pad_type: str = "reflect"
) -> Tensor:
    """:class:`BlurPool2d` on `x` [B, C, H, W] (the same arguments, the channels from `x`)."""
    if x.ndim != 4:
        raise ValueError(
            f"blur_pool2d needs [batch, channels, height, width], got {tuple(x.shape)}"
        )
    return BlurPool2d(x.shape[1], filt_size, stride, pad_type, device=x.device)(x)


def max_blur_pool2d(
    x: Tensor,
    max_pool_size: int = 2,
    filt_size: int = 4,
    stride: int = 2,
    pad_type: str = "reflect",
) -> Tensor:
    """:class:`MaxBlurPool2d` on `x` [B, C, H, W]: a dense max then the blur."""
    if x.ndim != 4:
        raise ValueError(
            f"max_blur_pool2d needs [batch, channels, height, width], got {tuple(x.shape)}"
        )
    layer = MaxBlurPool2d(x.shape[1], max_pool_size, filt_size, stride, pad_type, device=x.device)
    return layer(x)
