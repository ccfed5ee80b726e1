"""Per-sample pixel pairs: offsets (dy, dx) and crop starts (top, left), one for the whole batch
or one per sample, checked the same way wherever a batch is moved or cropped."""

from __future__ import annotations

from torch import Tensor


def per_sample(pairs: Tensor, batch: int, name: str, pair: str) -> Tensor:
    """``pairs`` as ``[batch, 2]``: one pair is broadcast (a view, no copy), one per sample kept;
    any other shape is a one-line ``ValueError`` naming ``name`` and the ``pair`` it holds."""
    if pairs.shape == (2,):
        return pairs.expand(batch, 2)
    if pairs.shape != (batch, 2):
        raise ValueError(
            f"{name} must be one {pair} or one per sample [B={batch}, 2], got shape "
            f"{tuple(pairs.shape)}"
        )
    return pairs
