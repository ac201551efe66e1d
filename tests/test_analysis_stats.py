"""Statistics for comparisons: checked against scipy and numpy on fixed data, and over many seeds."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ha_agent_tracing.analysis import (
    bootstrap_ratio,
    compare_samples,
    mann_whitney_u,
    percentile,
    percentiles,
)

# Fixed data: request durations in ms, with ties and a long tail.
FIXED_A = [112.0, 98.5, 104.2, 131.9, 99.0, 101.7, 250.3, 99.0, 107.4, 120.0, 95.2, 143.8, 102.2, 99.0]
FIXED_B = [90.1, 84.0, 99.0, 87.3, 93.9, 120.5, 88.8, 91.0, 84.0, 96.4, 201.7]


def units(values: list[float]) -> list[list[float]]:
    return [[v] for v in values]


def lognormal(rng: random.Random, n: int, scale: float = 1.0) -> list[float]:
    return [100.0 * scale * rng.lognormvariate(0, 0.35) for _ in range(n)]


# --- percentiles ----------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 1, 5, 25, 50, 75, 90, 95, 99, 99.9, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    """The inclusive definition is numpy's default (linear) interpolation."""
    data = FIXED_A + FIXED_B
    assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)), rel=1e-12)


def test_percentiles_of_one_value_and_of_unsorted_input() -> None:
    assert percentiles([7.0], (50, 95)) == (7.0, 7.0)
    assert percentiles([40.0, 10.0, 30.0, 20.0], (50, 95)) == (25.0, 38.5)


@pytest.mark.parametrize(
    ("values", "q", "message"),
    [
        ([], 50, "no values"),
        ([1.0, math.nan], 50, "NaN"),
        ([1.0], 101, "between 0 and 100"),
        ([1.0], 50.123, "decimals"),
    ],
)
def test_percentile_rejects_bad_arguments(values: list[float], q: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        percentile(values, q)


# --- Mann-Whitney U -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["exact", "asymptotic"])
def test_mann_whitney_matches_scipy_on_fixed_data(method: str) -> None:
    """U and the two-sided p-value equal scipy's for the same method (ties corrected in asymptotic)."""
    a, b = FIXED_A[:9], FIXED_B[:8]
    if method == "exact":  # the exact distribution assumes no ties
        a, b = sorted(set(a)), [v + 0.05 for v in sorted(set(b))]
    ours = mann_whitney_u(a, b, method=method)
    ref = scipy_stats.mannwhitneyu(a, b, method=method, alternative="two-sided", use_continuity=True)
    assert ours.statistic == float(ref.statistic)
    assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-12, abs=1e-15)


def test_mann_whitney_matches_scipy_over_many_random_samples() -> None:
    """Random sizes 1..40, with and without ties, both methods: always scipy's p-value."""
    rng = random.Random(20261127)
    for _ in range(200):
        n1, n2 = rng.randint(1, 40), rng.randint(1, 40)
        tied = rng.random() < 0.5
        draw = (lambda: float(rng.randint(0, 8))) if tied else (lambda: rng.lognormvariate(0, 1))
        x = [draw() for _ in range(n1)]
        y = [draw() * 1.3 for _ in range(n2)]
        for method in ("asymptotic",) if tied else ("exact", "asymptotic"):
            ours = mann_whitney_u(x, y, method=method)
            ref = scipy_stats.mannwhitneyu(x, y, method=method)
            assert ours.statistic == float(ref.statistic)
            assert ours.p_value == pytest.approx(float(ref.pvalue), rel=1e-10, abs=1e-300), (n1, n2, method)


def test_mann_whitney_auto_is_exact_for_small_untied_samples_only() -> None:
    assert mann_whitney_u([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).method == "exact"
    assert mann_whitney_u([1.0, 2.0, 2.0], [4.0, 5.0, 6.0]).method == "asymptotic"  # ties
    rng = random.Random(1)
    big = [rng.random() for _ in range(60)]
    assert mann_whitney_u(big, [v + 0.5 for v in big]).method == "asymptotic"  # 60 x 60 > 2500


def test_mann_whitney_of_all_equal_values_is_no_evidence() -> None:
    assert mann_whitney_u([5.0] * 10, [5.0] * 12).p_value == 1.0


def test_mann_whitney_false_positive_rate_is_within_its_level() -> None:
    """Identical distributions, 2000 seeds: p < 0.05 about 5 % of the time, not more."""
    rng = random.Random(7)
    hits = sum(mann_whitney_u(lognormal(rng, 30), lognormal(rng, 30)).p_value < 0.05 for _ in range(2000))
    assert hits / 2000 <= 0.06
    assert hits / 2000 >= 0.03, "a test that never rejects is not a test"


@pytest.mark.parametrize(
    ("x", "y", "message"), [([], [1.0], "at least one value"), ([math.nan], [1.0], "NaN")]
)
def test_mann_whitney_rejects_bad_input(x: list[float], y: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mann_whitney_u(x, y)


# --- bootstrap ------------------------------------------------------------------------


def test_bootstrap_is_reproducible_with_a_seed_and_varies_without() -> None:
    first = bootstrap_ratio(units(FIXED_A), units(FIXED_B), seed=3)
    again = bootstrap_ratio(units(FIXED_A), units(FIXED_B), seed=3)
    other = bootstrap_ratio(units(FIXED_A), units(FIXED_B), seed=4)
    assert first == again
    assert first[0].low != other[0].low


def test_bootstrap_point_estimates_are_ratios_of_the_project_percentiles() -> None:
    median, tail = bootstrap_ratio(units(FIXED_A), units(FIXED_B), resamples=10)
    assert median.estimate == pytest.approx(np.percentile(FIXED_B, 50) / np.percentile(FIXED_A, 50))
    assert tail.estimate == pytest.approx(np.percentile(FIXED_B, 95) / np.percentile(FIXED_A, 95))


def test_bootstrap_interval_agrees_with_scipy_percentile_bootstrap() -> None:
    """Same data, same percentile method: the interval's ends agree with scipy's within a few percent."""
    rng = random.Random(11)
    a, b = lognormal(rng, 150), lognormal(rng, 150, 0.85)
    ours, _ = bootstrap_ratio(units(a), units(b), resamples=4000, seed=1)

    def ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    ref = scipy_stats.bootstrap(
        (np.array(a), np.array(b)),
        ratio,
        paired=False,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(1),
    )
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=0.03)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=0.03)
    assert ours.log_sd == pytest.approx(float(np.std(np.log(ref.bootstrap_distribution), ddof=1)), rel=0.1)


def test_bootstrap_resamples_whole_units_not_single_values() -> None:
    """Values that come together (one request's tool calls) move together: a wider interval."""
    rng = random.Random(5)
    # 20 requests of 10 strongly correlated values each.
    grouped_a = [[base * rng.uniform(0.98, 1.02) for _ in range(10)] for base in lognormal(rng, 20)]
    grouped_b = [[base * rng.uniform(0.98, 1.02) for _ in range(10)] for base in lognormal(rng, 20)]
    by_unit, _ = bootstrap_ratio(grouped_a, grouped_b, seed=2)
    flat = [[v] for u in grouped_a for v in u], [[v] for u in grouped_b for v in u]
    by_value, _ = bootstrap_ratio(*flat, seed=2)
    assert by_unit.high is not None and by_unit.low is not None
    assert by_value.high is not None and by_value.low is not None
    assert (by_unit.high - by_unit.low) > 2 * (by_value.high - by_value.low)


def test_bootstrap_with_one_unit_has_no_interval() -> None:
    median, tail = bootstrap_ratio([[1.0, 2.0]], [[3.0], [4.0]])
    assert median.low is None and median.high is None and tail.low is None


@pytest.mark.parametrize("bad", [{"resamples": 0}, {"confidence": 1.0}, {"confidence": 0}])
def test_bootstrap_rejects_bad_arguments(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"resamples|confidence"):
        bootstrap_ratio([[1.0]], [[2.0]], **bad)  # type: ignore[arg-type]


# --- the verdict ----------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "verdict"), [(0.75, "faster"), (1.3, "slower")])
def test_a_known_shift_is_detected_and_its_size_estimated(scale: float, verdict: str) -> None:
    rng = random.Random(42)
    result = compare_samples(units(lognormal(rng, 80)), units(lognormal(rng, 80, scale)), seed=1)
    assert result.verdict == verdict
    ratio = result.median_ratio
    assert ratio.low is not None and ratio.high is not None
    assert ratio.low < scale < ratio.high
    # The detectable change is a factor either way: x(1 + d) or /(1 + d).
    assert result.detectable is not None and math.log1p(result.detectable) < abs(math.log(scale))
    assert result.notes == ()


def test_identical_distributions_rarely_give_a_verdict() -> None:
    """Over 200 seeds of identical distributions the false verdicts stay within the 5 % level."""
    false_verdicts = 0
    for seed in range(200):
        rng = random.Random(seed)
        result = compare_samples(
            units(lognormal(rng, 30)), units(lognormal(rng, 30)), resamples=300, seed=seed
        )
        false_verdicts += result.verdict != "no evidence"
    assert false_verdicts / 200 <= 0.05


def test_most_shifts_of_a_detectable_size_are_found() -> None:
    """Power: a 25 % shift with 60 requests a side is found in most seeds."""
    found = 0
    for seed in range(40):
        rng = random.Random(1000 + seed)
        result = compare_samples(
            units(lognormal(rng, 60)), units(lognormal(rng, 60, 1.25)), resamples=300, seed=seed
        )
        found += result.verdict == "slower"
    assert found >= 32


def test_small_samples_give_wide_intervals_and_say_so() -> None:
    rng = random.Random(9)
    small = compare_samples(units(lognormal(rng, 5)), units(lognormal(rng, 5, 0.9)), seed=1)
    large = compare_samples(units(lognormal(rng, 200)), units(lognormal(rng, 200, 0.9)), seed=1)
    assert small.median_ratio.low is not None and small.median_ratio.high is not None
    assert large.median_ratio.low is not None and large.median_ratio.high is not None
    assert small.median_ratio.high - small.median_ratio.low > 3 * (
        large.median_ratio.high - large.median_ratio.low
    )
    assert small.verdict == "no evidence"
    assert any("small sample (5 vs 5)" in note for note in small.notes)
    assert small.detectable is not None and large.detectable is not None
    assert small.detectable > 2 * large.detectable


def test_one_request_a_side_is_too_few() -> None:
    result = compare_samples([[100.0]], [[50.0], [51.0]])
    assert result.verdict == "too few"
    assert result.test is None
    assert "at least 2" in result.notes[0]


def test_rank_test_compares_one_value_per_unit() -> None:
    """Units of several values are tested by their medians: sizes count units, not values."""
    result = compare_samples([[1.0, 100.0, 2.0], [3.0, 4.0, 5.0]], [[10.0], [20.0]], resamples=10)
    assert (result.n_a, result.units_a, result.n_b, result.units_b) == (6, 2, 2, 2)
    assert result.test is not None
    assert result.test.statistic == float(scipy_stats.mannwhitneyu([2.0, 4.0], [10.0, 20.0]).statistic)


@pytest.mark.parametrize(
    ("a", "b", "message"), [([], [[1.0]], "at least one value"), ([[math.inf]], [[1.0]], "finite")]
)
def test_compare_rejects_bad_samples(a: list[list[float]], b: list[list[float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare_samples(a, b)
