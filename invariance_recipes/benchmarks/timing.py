"""Interleaved timing for the benchmark recipe: side-by-side medians that survive a noisy machine.

Timing one candidate after another lets a change in machine load (another process, thermal
throttling, a page-cache flush) land on one of them only. Here every round times every
candidate once, in a balanced order (each candidate first, and right after each other one,
equally often), and a comparison is the median over rounds of the
*paired* ratio of two candidates timed in the same round, so slow drifts cancel. The spread of
those per-round ratios says how much to trust the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    """Seconds per call of every candidate, one entry per round."""

    seconds: Mapping[str, list[float]]

    def median(self, name: str) -> float:
        """Median seconds per call of one candidate."""
        return statistics.median(self.seconds[name])

    def ratio(self, ours: str, baseline: str) -> tuple[float, float, float]:
        """``(median, first quartile, third quartile)`` of ``ours / baseline`` over rounds."""
        ratios = [a / b for a, b in zip(self.seconds[ours], self.seconds[baseline], strict=True)]
        if len(ratios) == 1:
            return ratios[0], ratios[0], ratios[0]
        q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return median, q1, q3


def alternate(measurements: Mapping[str, Callable[[], float]], rounds: int) -> Timings:
    """Run every measurement (which returns seconds per call) once per round, each round in
    the next order of :func:`balanced_order`."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    names = list(measurements)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for i in balanced_order(len(names), r):
            seconds[names[i]].append(measurements[names[i]]())
    return Timings(seconds)


def balanced_order(count: int, round_index: int) -> list[int]:
    """The order of ``count`` candidates in round ``round_index``: a row of a Williams design
    (its mirror image in every other block of ``count`` rounds), so that over ``2 * count``
    rounds each candidate runs first twice and right after each other candidate exactly twice.

    A plain rotation keeps every candidate behind the same one in every round, and what that
    one leaves in the caches and the allocator then lands on the same candidate's time: in the
    layers section BlurPool2d with zero padding, timed right after the alias-free activation,
    measured 1.265-1.291x the identical ``conv2d`` kornia runs, and 0.9326-1.05x in this order.
    """
    base = [0] + [(i + 1) // 2 if i % 2 else count - i // 2 for i in range(1, count)]
    row = [(b + round_index) % count for b in base]
    return row[::-1] if (round_index // count) % 2 else row


def interleaved(
    candidates: Mapping[str, Callable[[], object]],
    rounds: int,
    min_block: float,
    sync: Callable[[], None] = lambda: None,
) -> Timings:
    """Time every candidate once per round with :func:`alternate`, after a warm-up.

    Each measurement is a block of back-to-back calls long enough (``min_block`` seconds) for
    the clock's resolution not to matter; the block length of each candidate is fixed during
    warm-up so every round does the same work. ``sync`` waits for queued device work (CUDA
    kernels run asynchronously) and runs before a block starts and before it is stopped.
    """
    calls = {name: _calibrate(fn, min_block, sync) for name, fn in candidates.items()}
    return alternate(
        {
            name: lambda fn=fn, n=calls[name]: _block(fn, n, sync) / n
            for name, fn in candidates.items()
        },
        rounds,
    )


def _calibrate(fn: Callable[[], object], min_block: float, sync: Callable[[], None]) -> int:
    """Warm up, then the number of calls that makes a block last at least ``min_block``."""
    _block(fn, 1, sync)
    calls = 1
    while True:
        elapsed = _block(fn, calls, sync)
        if elapsed >= min_block or calls >= 1 << 16:
            return calls
        calls = max(calls + 1, int(calls * min(1.5 * min_block / max(elapsed, 1e-9), 16)))


def _block(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return time.perf_counter() - start
