"""The uncertainty of a comparison: intervals per run, paired tests between variants, Holm.

Every metric of the tables is a share of test images (correct, consistent, flipped), so:

- one run gets a Wilson 95% interval over its test images (better than the normal approximation
  near 0% and 100%, where these metrics live);
- two variants are compared on the *same* images and offsets (every variant sees the same keyed
  offsets), so only the images where they disagree carry information: McNemar's exact test is a
  two-sided binomial test with p = 1/2 on those discordant pairs; several seeds are combined by
  summing their discordant counts (a stratified McNemar test: each seed's images are paired only
  with themselves);
- a paired bootstrap gives an interval for the seed-averaged difference (images resampled with
  the same indices for both variants, independently per seed, from a fixed generator);
- with several variants against one baseline, Holm's step-down correction keeps the chance of
  any false "established" difference at 0.05.

Standard library and numpy only, so the results code needs no statistics package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) over seeds; std is NaN for one value."""
    if not values:
        return math.nan, math.nan
    return fmean(values), stdev(values) if len(values) > 1 else math.nan


def wilson_interval(
    successes: int, total: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / total``."""
    if not 0 <= successes <= total or total < 1:
        raise ValueError(
            f"successes={successes} of total={total}: pass 0 <= successes <= total, total >= 1"
        )
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, n = successes / total, total
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` trials with p = 1/2.

    The distribution is symmetric, so this is ``min(1, 2 P(X <= min(k, n - k)))``, computed with
    exact integers.
    """
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on paired binary outcomes.

    Args:
        only_a: pairs where the first outcome is 1 and the second 0 (summed over seeds).
        only_b: pairs where the second outcome is 1 and the first 0.
        p_value: two-sided exact binomial p-value on the ``only_a + only_b`` discordant pairs.
    """

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> McNemar:
    """McNemar's exact test of outcomes ``a`` against ``b``, one ``(a, b)`` pair per seed.

    Each pair holds boolean arrays over the same images (and offsets) of that seed; the
    discordant counts of all seeds are summed before the one exact test.
    """
    only_a = only_b = 0
    for a, b in pairs:
        a, b = np.asarray(a, bool), np.asarray(b, bool)
        if a.shape != b.shape:
            raise ValueError(f"paired outcomes differ in shape: {a.shape} vs {b.shape}")
        only_a += int(np.count_nonzero(a & ~b))
        only_b += int(np.count_nonzero(b & ~a))
    return McNemar(only_a, only_b, binomial_two_sided(only_a, only_a + only_b))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    The i-th smallest p is multiplied by ``m - i`` (i from 0), made non-decreasing in that
    order, and capped at 1; a difference is established at level alpha when its adjusted p is
    at most alpha.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class Bootstrap:
    """A paired bootstrap of the seed-averaged difference ``mean(a) - mean(b)``.

    Args:
        difference: the observed difference, averaged over seeds.
        low, high: the percentile interval at the chosen confidence.
        p_value: two-sided: twice the smaller share of resampled differences on either side
            of 0 (capped at 1).
    """

    difference: float
    low: float
    high: float
    p_value: float


def paired_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Bootstrap:
    """Resample each seed's images (the same indices for ``a`` and ``b``) ``samples`` times.

    One generator (``numpy.random.default_rng(seed)``) draws the seeds' resamples in order, so
    the result is reproducible.
    """
    if not pairs:
        raise ValueError("paired_bootstrap needs at least one (a, b) pair of outcomes")
    rng = np.random.default_rng(seed)
    observed, resampled = [], np.zeros(samples)
    for a, b in pairs:
        diff = np.asarray(a, float) - np.asarray(b, float)
        if diff.ndim != 1 or len(diff) == 0:
            raise ValueError(f"paired outcomes must be non-empty 1-d arrays, got {diff.shape}")
        observed.append(diff.mean())
        resampled += diff[rng.integers(0, len(diff), (samples, len(diff)))].mean(axis=1)
    resampled /= len(pairs)
    alpha = 1 - confidence
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    sides = min(np.mean(resampled <= 0), np.mean(resampled >= 0))
    return Bootstrap(fmean(observed), float(low), float(high), min(1.0, 2 * float(sides)))
