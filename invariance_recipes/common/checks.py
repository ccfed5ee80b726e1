"""Argument checks shared by every package: one-line errors that name the option, the bad
value, the valid choices and the fix, instead of a traceback from deep inside a library."""

from __future__ import annotations

from collections.abc import Iterable


def check_choice(option: str, value: object, choices: Iterable[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    names = tuple(choices)
    if value not in names:
        raise ValueError(f"unknown {option} {value!r}: choose one of {', '.join(names)}")


def check_positive(option: str, value: object) -> None:
    """Counts such as channels, widths and sizes are positive integers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option}={value!r} is invalid: use a positive integer")
