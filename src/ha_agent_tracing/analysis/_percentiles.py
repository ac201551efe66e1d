"""The project's one percentile definition: ``statistics.quantiles(method="inclusive")``.

The inclusive method interpolates linearly between the ranks of the sorted
values (numpy's default, and what the reports' summaries use), so the 0th
percentile is the minimum and the 100th the maximum. ::

    >>> percentile([10.0, 20.0, 30.0, 40.0], 50)
    25.0
    >>> percentiles([10.0, 20.0, 30.0, 40.0], (50, 95))
    (25.0, 38.5)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

__all__ = ["describe", "percentile", "percentiles"]

# Cut points of statistics.quantiles for a percentile with up to two decimals (99.99).
_RESOLUTIONS = (100, 1_000, 10_000)


def _cut(q: float) -> tuple[int, int]:
    """``(i, n)`` such that ``q`` percent is the ``i``-th of ``n`` quantiles, ``0 < i < n``."""
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 100:
        raise ValueError(f"a percentile is a number strictly between 0 and 100 here, not {q!r}")
    for n in _RESOLUTIONS:
        i = q * n / 100
        if math.isclose(i, round(i), rel_tol=0, abs_tol=1e-9):
            return round(i), n
    raise ValueError(f"percentile {q!r} has more than two decimals")


def percentiles(values: Iterable[float], qs: Sequence[float]) -> tuple[float, ...]:
    """The ``qs`` percentiles (each 0 to 100) of ``values``, by ``statistics.quantiles`` (inclusive).

    Raises ``ValueError`` for no values, a NaN among them, or a percentile out of range.
    """
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    if any(map(math.isnan, data)):  # map: the check runs in C, it is on every summary's path
        raise ValueError("percentile of values that include NaN")
    out: list[float] = []
    cuts: dict[int, list[float]] = {}
    for q in qs:
        if q == 0:
            out.append(float(data[0]))
            continue
        if q == 100:
            out.append(float(data[-1]))
            continue
        i, n = _cut(q)
        if len(data) == 1:
            out.append(float(data[0]))
            continue
        if n not in cuts:
            cuts[n] = statistics.quantiles(data, n=n, method="inclusive")
        out.append(float(cuts[n][i - 1]))
    return tuple(out)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100) of ``values``; see :func:`percentiles`."""
    return percentiles(values, (q,))[0]


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, p50, p95, p99 and max of ``values`` (not empty): a summary's statistics."""
    p50, p95, p99 = percentiles(values, (50, 95, 99))
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": max(values),
    }
