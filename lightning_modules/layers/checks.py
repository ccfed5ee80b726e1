"""Argument checks shared by the layers and networks: one-line errors that name the option,
the bad value, the valid choices and the fix, instead of a traceback from deep inside torch."""

from __future__ import annotations

from collections.abc import Sequence

FILT_SIZES = range(1, 8)


def check_choice(option: str, value: object, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {option} {value!r}: choose one of {', '.join(choices)}")


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


def check_positive(option: str, value: object) -> None:
    """Counts such as channels, widths and sizes are positive integers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}={value!r} is invalid: use a positive integer")
