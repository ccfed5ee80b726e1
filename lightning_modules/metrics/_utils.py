"""Helpers shared by the shift metrics: input checks and running a model for evaluation."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


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


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Run `model` in eval mode without gradients, then restore every submodule's own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
