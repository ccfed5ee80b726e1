"""The statistics of the results tables against scipy, hand computations and a simulation of\nseeds that share their test images."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit
from scipy.stats import binomtest
from scipy.stats import t as student_t

from invariance_recipes.compare.statistics import (
    Estimate,
    crossed_mean,
    holm,
    mean_std,
    outcome_matrix,
    two_level_bootstrap,
    wilson_interval,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (262, 270), (135, 270), (1, 1)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_interval_by_hand() -> None:
    # p = 0.5, n = 4, z = 1.959964: centre 0.5, half = z/(1+z^2/4) * sqrt(1/16 + z^2/64)
    z = 1.959963984540054
    half = z / (1 + z * z / 4) * math.sqrt(0.25 / 4 + z * z / 64)
    assert wilson_interval(2, 4) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes=5 of total=4"):
        wilson_interval(5, 4)


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.02, 0.04, 0.30 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08, 0.30, kept monotone
    assert holm([0.04, 0.30, 0.01, 0.02]) == pytest.approx([0.08, 0.30, 0.04, 0.06])
    # monotone step: 0.045 * 1 = 0.045 < the earlier 0.04 * 2 = 0.08 is raised to 0.08
    assert holm([0.045, 0.01, 0.04]) == pytest.approx([0.08, 0.03, 0.08])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_mean_std_matches_numpy() -> None:
    values = [0.91, 0.87, 0.95]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values))
    assert std == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(mean_std([0.5])[1])


def test_outcome_matrix_counts_an_image_once_whatever_its_passes() -> None:
    """Five passes of one image are one image: the matrix holds each image's share of them."""
    seed0 = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]], bool)
    seed1 = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0]], bool)
    matrix = outcome_matrix([seed0, seed1])
    assert matrix.shape == (2, 3)
    np.testing.assert_array_equal(matrix, [[1.0, 0.4, 0.0], [0.8, 1.0, 0.2]])
    # one pass per image stays as it is
    np.testing.assert_array_equal(outcome_matrix([np.array([True, False])]), [[1.0, 0.0]])


def test_crossed_mean_by_hand_on_a_small_matrix() -> None:
    # 3 seeds x 4 images; the ANOVA mean squares written out as loops
    x = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]], float)
    k, n = x.shape
    g = sum(map(sum, x)) / (k * n)
    rows = [sum(x[j]) / n for j in range(k)]
    cols = [sum(x[j][i] for j in range(k)) / k for i in range(n)]
    ms_a = n * sum((r - g) ** 2 for r in rows) / (k - 1)
    ms_b = k * sum((c - g) ** 2 for c in cols) / (n - 1)
    ms_e = sum((x[j][i] - rows[j] - cols[i] + g) ** 2 for j in range(k) for i in range(n)) / (
        (k - 1) * (n - 1)
    )
    assert ms_a > ms_e and ms_b > ms_e  # no component truncated in this example
    variance = (ms_a + ms_b - ms_e) / (k * n)
    df = (ms_a + ms_b - ms_e) ** 2 / (
        ms_a**2 / (k - 1) + ms_b**2 / (n - 1) + ms_e**2 / ((k - 1) * (n - 1))
    )
    found = crossed_mean(x)
    assert (found.mean, found.seeds, found.images) == (pytest.approx(g), 3, 4)
    assert found.se == pytest.approx(math.sqrt(variance))
    assert found.df == pytest.approx(df)
    half = student_t.ppf(0.975, df) * math.sqrt(variance)
    assert found.interval() == pytest.approx((g - half, g + half))


def test_one_column_is_students_t_over_seeds_and_one_row_over_images() -> None:
    per_run = crossed_mean(np.array([[0.10], [0.12], [0.14]]))
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t(0.975, 2 df) from tables; std 0.02
    assert per_run.interval() == pytest.approx((0.12 - half, 0.12 + half))
    one_seed = crossed_mean(np.array([[1, 0, 1, 1]], float))
    se = math.sqrt(np.var([1, 0, 1, 1], ddof=1) / 4)
    assert (one_seed.se, one_seed.df) == (pytest.approx(se), 3)
    assert crossed_mean(np.ones((5, 100))).interval() == (1.0, 1.0)
    lone = crossed_mean(np.array([[0.3]]))
    assert lone.interval() == (-math.inf, math.inf) and lone.p_value() == 1.0


def test_p_values_tost_and_non_inferiority_against_the_t_distribution() -> None:
    e = Estimate(mean=0.005, se=0.006, df=12.0, seeds=5, images=5000)
    # two-sided p of 0, and the two one-sided tests against a 2-point margin
    assert e.p_value() == pytest.approx(2 * student_t.sf(0.005 / 0.006, 12))
    lower, upper = student_t.sf(0.025 / 0.006, 12), student_t.sf(0.015 / 0.006, 12)
    assert e.p_equivalent(0.02) == pytest.approx(max(lower, upper))
    assert e.p_no_worse(0.02) == pytest.approx(lower)
    # not established is not equal: a wide interval around 0 is neither different nor equivalent
    wide = Estimate(0.0, 0.05, 4.0, 5, 300)
    assert wide.p_value() == 1.0 and wide.p_equivalent(0.02) > 0.3
    # an exact tie of every image is equivalent at any margin and not different
    tie = crossed_mean(np.zeros((5, 300)))
    assert (tie.p_value(), tie.p_equivalent(0.02)) == (1.0, 0.0)


def test_two_level_bootstrap_matches_drawing_the_indices_and_is_fast() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((5, 5000)) < rng.random(5000)  # images with their own difficulty
    start = time.perf_counter()
    fast = two_level_bootstrap(x, samples=2000, seed=11)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"two_level_bootstrap took {elapsed:.2f} s for 2000 x 5 x 5000"
    assert np.array_equal(fast, two_level_bootstrap(x, samples=2000, seed=11))
    assert not np.array_equal(fast, two_level_bootstrap(x, samples=2000, seed=12))
    # the same resampling written the plain way: seed indices, then shared image indices
    draw = np.random.default_rng(5)
    plain = np.empty(600)
    for b in range(len(plain)):
        seeds = draw.integers(0, 5, 5)
        images = draw.integers(0, 5000, 5000)
        plain[b] = x[seeds][:, images].mean()
    assert fast.mean() == pytest.approx(x.mean(), abs=0.001)
    assert fast.std() == pytest.approx(plain.std(), rel=0.15)


def _shared_difficulty(rng, sims: int, seeds: int, images: int, image_sd: float, seed_sd: float):
    """``sims`` experiments of per-image outcomes: P(correct) = logistic(MU + image difficulty +
    seed offset), the same images for every seed of an experiment."""
    difficulty = rng.normal(0, image_sd, (sims, 1, images))
    offset = rng.normal(0, seed_sd, (sims, seeds, 1))
    return rng.random((sims, seeds, images)) < expit(MU + difficulty + offset)


MU = 1.5  # about 80% accuracy


def _true_mean(image_sd: float, seed_sd: float) -> float:
    """E[logistic(MU + image_sd Z1 + seed_sd Z2)] by Gauss-Hermite quadrature."""
    nodes, weights = hermegauss(80)
    weights = weights / weights.sum()
    z = MU + image_sd * nodes[:, None] + seed_sd * nodes[None, :]
    return float(weights @ expit(z) @ weights)


@pytest.mark.parametrize(
    ("image_sd", "seed_sd", "floor"),
    [
        (2.0, 0.25, 0.94),  # images differ a lot, seeds a little: the tables' situation
        (1.0, 0.5, 0.925),  # the seeds' spread dominates: the hardest case for 5 seeds
    ],
)
def test_intervals_cover_the_truth_when_seeds_share_their_images(
    image_sd: float, seed_sd: float, floor: float
) -> None:
    """2,000 simulated experiments of 5 seeds x 300 shared images. The mixed-model interval
    (the tables' interval) covers the true mean at least 94% of the time in the tables'
    situation; the image-only bootstrap of the old tables (each seed's images resampled on
    their own, seeds fixed) does not; the two-level bootstrap's percentile interval (on the
    first 300 experiments, for time) does when images dominate and undercovers when seeds do,
    which is why the tables use the mixed model."""
    truth, sims, seeds, images, booted = _true_mean(image_sd, seed_sd), 2000, 5, 300, 300
    rng = np.random.default_rng(2024)
    x = _shared_difficulty(rng, sims, seeds, images, image_sd, seed_sd)
    intervals = np.array([crossed_mean(one).interval() for one in x])
    mixed = np.mean((intervals[:, 0] <= truth) & (truth <= intervals[:, 1]))
    # the old method: every seed's images resampled independently (for 0/1 outcomes a binomial
    # count per seed), the seeds averaged
    resampled = rng.binomial(images, x.mean(axis=2), size=(400, sims, seeds)).mean(axis=2)
    low, high = np.quantile(resampled / images, [0.025, 0.975], axis=0)
    image_only = np.mean((low <= truth) & (truth <= high))
    bounds = [
        np.quantile(two_level_bootstrap(x[sim], samples=400, seed=sim), [0.025, 0.975])
        for sim in range(booted)
    ]
    two_level = np.mean([low <= truth <= high for low, high in bounds])
    coverage = {"mixed": mixed, "two-level": two_level, "old": image_only}
    print(f"image sd {image_sd}, seed sd {seed_sd}: coverage {coverage}")
    assert coverage["mixed"] >= floor, coverage
    assert coverage["old"] < 0.90, coverage
    if floor >= 0.94:
        assert coverage["two-level"] >= 0.94, coverage
    else:
        assert coverage["two-level"] < coverage["mixed"], coverage
