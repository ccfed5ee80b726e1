"""The statistics of the results tables against scipy and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from invariance_recipes.compare.statistics import (
    binomial_two_sided,
    holm,
    mcnemar_exact,
    mean_std,
    paired_bootstrap,
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


@pytest.mark.parametrize(("k", "n"), [(0, 0), (0, 5), (2, 9), (7, 9), (30, 41), (500, 1001)])
def test_exact_binomial_matches_scipy(k: int, n: int) -> None:
    expected = 1.0 if n == 0 else binomtest(k, n, 0.5).pvalue
    assert binomial_two_sided(k, n) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_sums_discordant_pairs_over_seeds() -> None:
    # seed 0: a right only on 3 images, b right only on 1; seed 1: 2 and 0; concordant ignored
    seed0 = (np.array([1, 1, 1, 0, 1, 0], bool), np.array([0, 0, 0, 1, 1, 0], bool))
    seed1 = (np.array([1, 1, 0, 1]), np.array([0, 0, 0, 1]))
    result = mcnemar_exact([seed0, seed1])
    assert (result.only_a, result.only_b) == (5, 1)
    # by hand: 2 * (C(6,0) + C(6,1)) / 2^6 = 14 / 64
    assert result.p_value == pytest.approx(14 / 64)
    assert result.p_value == pytest.approx(binomtest(1, 6, 0.5).pvalue)


def test_mcnemar_rejects_unpaired_outcomes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        mcnemar_exact([(np.ones(3), np.ones(4))])


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


def test_paired_bootstrap_agrees_with_the_normal_approximation() -> None:
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(3):
        a = rng.random(2000) < 0.8
        b = np.where(rng.random(2000) < 0.9, a, ~a)  # b differs from a on ~10% of images
        pairs.append((a, b))
    result = paired_bootstrap(pairs, samples=4000)
    diffs = [a.astype(float) - b.astype(float) for a, b in pairs]
    observed = np.mean([d.mean() for d in diffs])
    se = math.sqrt(sum(d.var() / len(d) for d in diffs)) / len(diffs)
    assert result.difference == pytest.approx(observed, abs=1e-12)
    assert result.low == pytest.approx(observed - 1.96 * se, abs=0.25 * se)
    assert result.high == pytest.approx(observed + 1.96 * se, abs=0.25 * se)
    # the same generator seed gives the same answer; another seed a slightly different one
    assert paired_bootstrap(pairs, samples=4000) == result
    assert paired_bootstrap(pairs, samples=4000, seed=1) != result


def test_paired_bootstrap_of_a_clear_and_of_no_difference() -> None:
    a = np.ones(300, bool)
    b = np.r_[np.zeros(60, bool), np.ones(240, bool)]
    clear = paired_bootstrap([(a, b)], samples=2000)
    assert clear.difference == pytest.approx(0.2)
    assert clear.p_value == 0.0 and clear.low > 0.1
    same = paired_bootstrap([(b, b)], samples=500)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
