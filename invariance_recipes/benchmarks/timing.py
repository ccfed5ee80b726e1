"""Interleaved timing for the benchmark recipe: side-by-side medians that survive a noisy machine.

Timing one candidate after another lets a change in machine load (another process, thermal
throttling, a page-cache flush) land on one of them only. Here every round times every
candidate once, in a rotated order, and a comparison is the median over rounds of the
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
    """Run every measurement (which returns seconds per call) once per round, in an order
    rotated every round so that no candidate always runs first or right after another."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1")
    names = list(measurements)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(measurements[name]())
    return Timings(seconds)


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
