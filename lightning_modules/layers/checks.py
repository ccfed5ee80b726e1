"""Argument checks of the layers; the ones every package shares are in
``invariance_recipes.common.checks``."""

from __future__ import annotations

FILT_SIZES = range(1, 8)


def check_filt_size(filt_size: object) -> None:
    """Binomial low-pass filters of 1..7 taps, the sizes of Zhang (2019)."""
    if isinstance(filt_size, bool) or filt_size not in FILT_SIZES:
        raise ValueError(
            f"filt_size={filt_size!r} is out of range: use an integer from 1 (no blur) to 7 taps"
        )


def check_stride(stride: object) -> None:
    """Downsampling factors are positive integers (1 keeps the resolution)."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride={stride!r} is not supported: use a positive integer such as 2")


def renamed_argument(layer: str, old: str, old_value: int | None, new: str, new_value: int) -> int:
    """The value of argument `new`, taking the deprecated name `old` when only it was given.

    ``FutureWarning`` (shown to users, unlike ``DeprecationWarning``) names the replacement;
    both names with different values are a one-line ``ValueError``.
    """
    if old_value is None:
        return new_value
    import warnings

    warnings.warn(
        f"{layer}({old}=...) is deprecated and will be removed in 0.3: use {new}= "
        f"(the same value; {old} means the blur's size in kornia)",
        FutureWarning,
        stacklevel=3,
    )
    return old_value
