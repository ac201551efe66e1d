"""Two-sample statistics for latency: bootstrap intervals, Mann-Whitney U, a verdict.

Standard library only. Everything random takes a seed, so the same data and
seed always give the same interval::

    >>> a = [100.0, 102.0, 98.0, 110.0, 105.0, 99.0, 101.0, 97.0, 120.0, 103.0]
    >>> b = [v * 0.8 for v in a]
    >>> result = compare_samples([[v] for v in a], [[v] for v in b], seed=1)
    >>> result.verdict
    'faster'

Samples are given as *units*: each unit is the list of values one request (or
one conversation) contributed. The bootstrap resamples whole units, so values
that belong together (the tool calls of one request) stay together and the
interval is not made narrower than the data allow. The rank test compares one
value per unit (its median), so its units are independent.

The ratio is always ``B / A``: below 1 means B is faster than A.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ha_agent_tracing.analysis._percentiles import percentiles

__all__ = [
    "DEFAULT_RESAMPLES",
    "SMALL_SAMPLE",
    "Interval",
    "MannWhitney",
    "SampleComparison",
    "Verdict",
    "bootstrap_ratio",
    "compare_samples",
    "mann_whitney_u",
]

Verdict = Literal["faster", "slower", "no evidence", "too few"]

DEFAULT_RESAMPLES = 2000
SMALL_SAMPLE = 20
"""Fewer units than this on either side: the comparison says its intervals are wide."""

# Power used to state the smallest change a sample could have detected.
_POWER = 0.8
# The exact null distribution of U is built in O(min(n1, n2) * n1 * n2) steps.
_EXACT_MAX_PRODUCT = 2500


def _check_alpha(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number between 0 and 1, not {value!r}")


# --- Mann-Whitney U -------------------------------------------------------------------


@dataclass(frozen=True)
class MannWhitney:
    """The two-sided Mann-Whitney U test of ``x`` against ``y``.

    ``statistic`` is U of ``x`` (scipy's convention); ``method`` is ``exact``
    (the exact null distribution; no ties) or ``asymptotic`` (normal, with tie
    and continuity correction).
    """

    statistic: float
    p_value: float
    method: Literal["exact", "asymptotic"]


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of groups of tied values."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@functools.lru_cache(maxsize=64)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the ``C(m+n, m)`` arrangements give each U = 0..m*n (no ties).

    The coefficients of the Gaussian binomial ``[m+n choose m]_q``, built as
    ``prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)``.
    """
    size = m * n + 1
    poly = [0] * size
    poly[0] = 1
    for i in range(1, m + 1):
        shift = n + i
        for k in range(size - 1, shift - 1, -1):  # multiply by (1 - q^shift)
            poly[k] -= poly[k - shift]
        for k in range(i, size):  # divide by (1 - q^i): a running sum with stride i
            poly[k] += poly[k - i]
    return tuple(poly)


def mann_whitney_u(x: Sequence[float], y: Sequence[float], *, method: str = "auto") -> MannWhitney:
    """Two-sided Mann-Whitney U test; ``method`` is ``auto``, ``exact`` or ``asymptotic``.

    ``auto`` is exact when there are no ties and ``len(x) * len(y) <= 2500``
    (the exact distribution is then cheap and better than the normal
    approximation for small samples), otherwise asymptotic. ``exact`` with
    ties ignores them, as scipy does.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("the Mann-Whitney test needs at least one value on each side")
    if method not in ("auto", "exact", "asymptotic"):
        raise ValueError(f"method must be 'auto', 'exact' or 'asymptotic', not {method!r}")
    values = [*x, *y]
    if any(math.isnan(v) for v in values):
        raise ValueError("the Mann-Whitney test got NaN")
    ranks, ties = _ranks(values)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    if method == "auto":
        method = "exact" if not ties and n1 * n2 <= _EXACT_MAX_PRODUCT else "asymptotic"
    if method == "exact":
        counts = _u_counts(min(n1, n2), max(n1, n2))
        at_least = sum(counts[math.ceil(u) :])
        p = 2 * at_least / sum(counts)
        return MannWhitney(u1, min(p, 1.0), "exact")
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties)
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value equal: no evidence either way
        return MannWhitney(u1, 1.0, "asymptotic")
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    p = math.erfc(z / math.sqrt(2))  # two-sided: 2 * P(Z > z)
    return MannWhitney(u1, min(max(p, 0.0), 1.0), "asymptotic")


# --- bootstrap ------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A ratio ``B / A`` with its bootstrap confidence interval.

    ``low``/``high`` are ``None`` when the sample is too small to resample;
    ``log_sd`` is the bootstrap standard deviation of ``log(ratio)``, the
    spread the smallest detectable change is stated from.
    """

    estimate: float
    low: float | None
    high: float | None
    log_sd: float | None


def _stats(values: list[float]) -> tuple[float, float]:
    """Median and 95th percentile by the project's definition (``statistics.quantiles``, inclusive)."""
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return cuts[9], cuts[18]


def _flatten(units: Sequence[Sequence[float]]) -> list[float]:
    return [v for unit in units for v in unit]


def _ratio(b: float, a: float) -> float:
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def bootstrap_ratio(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[Interval, Interval]:
    """Bootstrap intervals of ``median(B) / median(A)`` and ``p95(B) / p95(A)``.

    ``a`` and ``b`` are lists of units (each a list of values); resampling
    draws whole units with replacement, independently on each side, and the
    interval is the percentile interval of the resampled ratios.
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a whole number of at least 1, not {resamples!r}")
    _check_alpha("confidence", confidence)
    units_a = [list(u) for u in a if len(u)]
    units_b = [list(u) for u in b if len(u)]
    if not units_a or not units_b:
        raise ValueError("each side needs at least one value")
    med_a, p95_a = _stats(_flatten(units_a))
    med_b, p95_b = _stats(_flatten(units_b))
    point_median, point_p95 = _ratio(med_b, med_a), _ratio(p95_b, p95_a)
    if len(units_a) < 2 or len(units_b) < 2:
        return Interval(point_median, None, None, None), Interval(point_p95, None, None, None)
    rng = random.Random(seed)
    medians: list[float] = []
    tails: list[float] = []
    ka, kb = len(units_a), len(units_b)
    for _ in range(resamples):
        ra = _flatten([units_a[i] for i in rng.choices(range(ka), k=ka)])
        rb = _flatten([units_b[i] for i in rng.choices(range(kb), k=kb)])
        ma, ta = _stats(ra)
        mb, tb = _stats(rb)
        medians.append(_ratio(mb, ma))
        tails.append(_ratio(tb, ta))
    return _interval(point_median, medians, confidence), _interval(point_p95, tails, confidence)


def _interval(estimate: float, ratios: list[float], confidence: float) -> Interval:
    finite = sorted(r for r in ratios if 0 < r < math.inf)
    if len(finite) < 2:
        return Interval(estimate, None, None, None)
    tail = (1 - confidence) / 2 * 100
    low, high = percentiles(finite, (round(tail, 2), round(100 - tail, 2)))
    logs = [math.log(r) for r in finite]
    return Interval(estimate, low, high, statistics.stdev(logs))


# --- the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class SampleComparison:
    """B against A for one measure: sizes, percentiles, intervals, test and verdict.

    ``detectable`` is the smallest change of the median this sample could
    have detected (two-sided, at ``alpha``, with 80 % power), as a factor
    either way: ``0.12`` means B's median times 1.12 or divided by 1.12; ``None`` when it
    cannot be estimated. It is read from the bootstrap spread of
    ``log(ratio)``, so it grows as samples shrink or get noisier.
    """

    n_a: int
    n_b: int
    units_a: int
    units_b: int
    p50_a: float
    p50_b: float
    p95_a: float
    p95_b: float
    median_ratio: Interval
    p95_ratio: Interval
    test: MannWhitney | None
    verdict: Verdict
    detectable: float | None
    notes: tuple[str, ...]


def compare_samples(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]],
    *,
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> SampleComparison:
    """Compare B with A: ``faster``, ``slower``, ``no evidence``, or ``too few`` to say.

    B is called faster (slower) when the rank test's p-value is below
    ``alpha`` *and* the ``1 - alpha`` bootstrap interval of the ratio of
    medians lies wholly below (above) 1.
    """
    _check_alpha("alpha", alpha)
    units_a = [list(u) for u in a if len(u)]
    units_b = [list(u) for u in b if len(u)]
    flat_a, flat_b = _flatten(units_a), _flatten(units_b)
    if not flat_a or not flat_b:
        raise ValueError("each side needs at least one value")
    if any(math.isnan(v) or math.isinf(v) for v in (*flat_a, *flat_b)):
        raise ValueError("durations must be finite numbers")
    p50_a, p95_a = _stats(flat_a)
    p50_b, p95_b = _stats(flat_b)
    median_ratio, p95_ratio = bootstrap_ratio(
        units_a, units_b, resamples=resamples, confidence=1 - alpha, seed=seed
    )
    notes: list[str] = []
    ka, kb = len(units_a), len(units_b)
    test: MannWhitney | None = None
    detectable: float | None = None
    if ka < 2 or kb < 2:
        verdict: Verdict = "too few"
        notes.append(f"too few to compare ({ka} vs {kb}); at least 2 on each side are needed")
    else:
        test = mann_whitney_u(
            [statistics.median(u) for u in units_a], [statistics.median(u) for u in units_b]
        )
        low, high = median_ratio.low, median_ratio.high
        verdict = "no evidence"
        if test.p_value < alpha and low is not None and high is not None:
            if high < 1:
                verdict = "faster"
            elif low > 1:
                verdict = "slower"
        if median_ratio.log_sd is not None:
            z = statistics.NormalDist()
            k = z.inv_cdf(1 - alpha / 2) + z.inv_cdf(_POWER)
            detectable = math.exp(k * median_ratio.log_sd) - 1
        if min(ka, kb) < SMALL_SAMPLE:
            notes.append(
                f"small sample ({ka} vs {kb}): intervals are wide; "
                f"at least {SMALL_SAMPLE} on each side give steadier answers"
            )
    return SampleComparison(
        n_a=len(flat_a),
        n_b=len(flat_b),
        units_a=ka,
        units_b=kb,
        p50_a=p50_a,
        p50_b=p50_b,
        p95_a=p95_a,
        p95_b=p95_b,
        median_ratio=median_ratio,
        p95_ratio=p95_ratio,
        test=test,
        verdict=verdict,
        detectable=detectable,
        notes=tuple(notes),
    )
