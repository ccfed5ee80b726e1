"""The uncertainty of a comparison when every seed is tested on the same images.

Every run of an experiment is tested on the same test images (a paired design), so a table
cell is the mean of a ``seeds x images`` matrix of per-image outcomes (accuracy, consistency,
AFC's score, ... or the paired difference of two arms). Its rows share the images' difficulty
and its columns the seed's luck, so neither the seeds x images values nor the seeds are
independent draws: an interval that resamples images only (or pools seeds x images as if
distinct) is too narrow, and one over the seeds' means only ignores that a new test set would
draw new images.

- :func:`crossed_mean` is the interval the tables print: a crossed random-effects model
  (value = mean + seed effect + image effect + residual) estimated by its ANOVA mean squares,
  which give the variance of the mean without bias, and a Student t quantile with
  Satterthwaite's degrees of freedom. Why a mixed model and not the percentile bootstrap: with
  5 seeds there are only 126 distinct seed resamples and their variance is (k - 1) / k of the
  truth, so the percentile interval undercovers when the seeds' spread dominates
  (``tests/test_statistics.py`` simulates both); the t quantile with the degrees of freedom the
  seeds give corrects that, and is exact arithmetic, so reproducible without a generator.
- :func:`two_level_bootstrap` resamples seeds, then images with the same indices for every
  seed: the nonparametric check of the same variance, and the method for a statistic that is
  not a mean.
- :func:`wilson_interval` over distinct images only (a share of the test set, never of
  seeds x images).
- :class:`Estimate` reads off the interval, the two-sided p-value of a difference (Holm-corrected
  over a table by :func:`holm`), and the one-sided and two one-sided (TOST) tests against an
  equivalence margin for "no drop", "matches" and "equal" claims: a difference that is not
  established is not an equivalence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

import numpy as np
from scipy.stats import t as student_t

CONFIDENCE = 0.95
ALPHA = 0.05  # the level of every test: a difference is established when its Holm p <= ALPHA
EQUIVALENCE_MARGIN = 0.02  # "no drop", "matches", "equal": within 2 points, fixed before the runs
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) over seeds; std is NaN for one value."""
    if not values:
        return math.nan, math.nan
    return fmean(values), stdev(values) if len(values) > 1 else math.nan


def outcome_matrix(per_seed: Sequence[np.ndarray]) -> np.ndarray:
    """One seed's per-image outcomes per row, as floats: the ``seeds x images`` matrix. An
    outcome with several passes or offsets per image (``[images, passes]``) becomes the image's
    mean over them: the passes share the image, so they are not more images."""
    if not per_seed:
        raise ValueError("no outcomes: pass at least one seed's per-image outcomes")
    rows = [np.asarray(values, float).reshape(len(values), -1).mean(axis=1) for values in per_seed]
    if len({len(row) for row in rows}) > 1 or len(rows[0]) == 0:
        raise ValueError(
            f"per-image outcomes of {[len(r) for r in rows]} images: every seed must be tested "
            "on the same (non-empty) set of images"
        )
    return np.stack(rows)


@dataclass(frozen=True)
class Estimate:
    """The mean of a ``seeds x images`` matrix with its standard error.

    Args:
        mean: the mean over every seed and image.
        se: its standard error, counting both seeds and images.
        df: the degrees of freedom of the t quantile (Satterthwaite).
        seeds, images: the matrix's shape; ``images`` is 1 for a per-run number.
    """

    mean: float
    se: float
    df: float
    seeds: int
    images: int

    def _quantile(self, level: float) -> float:
        return float(student_t.ppf(level, self.df)) if math.isfinite(self.df) else math.inf

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The two-sided interval; infinite when the data cannot estimate the spread."""
        if self.se == 0:
            return self.mean, self.mean
        half = self._quantile(0.5 + confidence / 2) * self.se
        return self.mean - half, self.mean + half

    def _above(self, value: float) -> float:
        """One-sided p of H0: mean <= value."""
        if self.se == 0:
            return 0.0 if self.mean > value else 1.0
        if not math.isfinite(self.df):
            return 1.0
        return float(student_t.sf((self.mean - value) / self.se, self.df))

    def p_value(self) -> float:
        """Two-sided p of H0: mean = 0 (for a difference of two arms)."""
        return min(1.0, 2 * min(self._above(0.0), self._below(0.0)))

    def _below(self, value: float) -> float:
        """One-sided p of H0: mean >= value."""
        return Estimate(-self.mean, self.se, self.df, self.seeds, self.images)._above(-value)

    def p_no_worse(self, margin: float = EQUIVALENCE_MARGIN) -> float:
        """Non-inferiority ("no drop", "matches or beats"): p of H0 mean <= -margin."""
        return self._above(-margin)

    def p_equivalent(self, margin: float = EQUIVALENCE_MARGIN) -> float:
        """TOST ("matches", "equal"): p of H0 |mean| >= margin, the larger one-sided p."""
        return max(self._above(-margin), self._below(margin))


def crossed_mean(values: np.ndarray) -> Estimate:
    """The mean of a ``seeds x images`` matrix under a crossed random-effects model.

    With k seeds, n images and the ANOVA mean squares of seeds (A), images (B) and residual (E),
    ``Var(mean) = sA^2 / k + sB^2 / n + sE^2 / (k n)`` is estimated by
    ``(MS_A + MS_B - MS_E) / (k n)`` (variance components truncated at 0), with Satterthwaite's
    degrees of freedom. One column (a per-run number) reduces to Student's t over the seeds; one
    row (a single seed) to the images alone, and the seed variance is then not counted.
    """
    x = np.asarray(values, float)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"crossed_mean needs a non-empty seeds x images matrix, got {x.shape}")
    k, n = x.shape
    mean = float(x.mean())
    if k * n == 1:
        return Estimate(mean, math.inf, math.nan, k, n)
    seed_means, image_means = x.mean(axis=1), x.mean(axis=0)
    terms = []  # (coefficient, mean square, degrees of freedom)
    if n == 1 or k == 1:  # one way: the rows (or columns) are independent
        spread = seed_means if n == 1 else image_means
        terms.append((1.0, float(np.var(spread, ddof=1)), len(spread) - 1))
    else:
        ms_a = n * float(np.sum((seed_means - mean) ** 2)) / (k - 1)
        ms_b = k * float(np.sum((image_means - mean) ** 2)) / (n - 1)
        residual = x - seed_means[:, None] - image_means[None, :] + mean
        ms_e = float(np.sum(residual**2)) / ((k - 1) * (n - 1))
        c_a, c_b = float(ms_a > ms_e), float(ms_b > ms_e)  # components truncated at 0
        terms = [(c_a, ms_a, k - 1), (c_b, ms_b, n - 1), (1 - c_a - c_b, ms_e, (k - 1) * (n - 1))]
    total = sum(c * ms for c, ms, _ in terms)
    if total <= 0:
        return Estimate(mean, 0.0, math.inf, k, n)
    df = total**2 / sum((c * ms) ** 2 / d for c, ms, d in terms if c)
    return Estimate(mean, math.sqrt(total / (k * n)), df, k, n)


def _multinomial_counts(
    rng: np.random.Generator, shares: np.ndarray, draws: int, samples: int
) -> np.ndarray:
    return rng.multinomial(draws, shares, size=samples).astype(float)


def two_level_bootstrap(
    values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """``samples`` resampled means of a ``seeds x images`` matrix: seeds drawn with replacement,
    then images drawn with replacement with the same indices for every seed.

    Images with the same outcomes in every seed are interchangeable, so the images are drawn as
    multinomial counts over the distinct columns (at most 2^k of them for a binary outcome):
    the same distribution as drawing indices, in milliseconds. ``numpy.random.default_rng(seed)``
    draws everything, so the result is reproducible.
    """
    x = np.asarray(values, float)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"two_level_bootstrap needs a seeds x images matrix, got {x.shape}")
    k, n = x.shape
    rng = np.random.default_rng(seed)
    columns, counts = np.unique(x.T, axis=0, return_counts=True)  # distinct images, counted
    image_counts = _multinomial_counts(rng, counts / n, n, samples)  # samples x distinct
    seed_counts = _multinomial_counts(rng, np.full(k, 1 / k), k, samples)  # samples x k
    per_seed = image_counts @ columns / n  # samples x k: each seed's mean on the drawn images
    return np.einsum("bk,bk->b", seed_counts, per_seed) / k


def wilson_interval(
    successes: float, total: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / total`` of ``total`` distinct
    images (``successes`` may be a mean count over seeds)."""
    if not 0 <= successes <= total or total < 1:
        raise ValueError(
            f"successes={successes} of total={total}: pass 0 <= successes <= total, total >= 1"
        )
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, n = successes / total, total
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


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
