"""Compare two sets of reports: per operation, the total and each metric, B against A.

::

    from ha_agent_tracing.analysis import compare_reports

    result = compare_reports(before, after, seed=0)       # lists of report dicts
    for measure in result["operations"]["chat_request"]["measures"]:
        print(measure["name"], measure["verdict"], measure["median_ratio"])

A *unit* is what the bootstrap resamples and the rank test counts: a request
(default), or a conversation (reports grouped by the ``conversation_id`` any
of their metrics carries in its metadata). A metric's values in a unit are the
durations of its spans there, so a request's two concurrent tool calls stay
together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from ha_agent_tracing.analysis._stats import DEFAULT_RESAMPLES, Interval, SampleComparison, compare_samples

__all__ = [
    "TOTAL",
    "Comparison",
    "MeasureComparison",
    "OperationComparison",
    "RatioJSON",
    "Unit",
    "compare_reports",
    "slower_than",
]

Unit = Literal["request", "conversation"]

TOTAL = "total"
"""The measure name of a report's ``total_duration``."""


class RatioJSON(TypedDict):
    """A ratio ``B / A`` and its interval (``None`` when the sample is too small)."""

    estimate: float
    low: float | None
    high: float | None


class MeasureComparison(TypedDict):
    """One measure (the total or a metric) of one operation, B against A."""

    name: str
    n_a: int
    n_b: int
    units_a: int
    units_b: int
    p50_a: float
    p50_b: float
    p95_a: float
    p95_b: float
    median_ratio: RatioJSON
    p95_ratio: RatioJSON
    p_value: float | None
    test: str | None
    verdict: str
    detectable_change: float | None
    notes: list[str]


class OperationComparison(TypedDict):
    """Every measure of one operation; ``only_in`` lists metrics seen on one side only."""

    reports_a: int
    reports_b: int
    measures: list[MeasureComparison]
    only_in: dict[str, list[str]]


class Comparison(TypedDict):
    """The whole comparison, JSON-ready."""

    unit: str
    alpha: float
    resamples: int
    seed: int
    operations: dict[str, OperationComparison]
    only_in: dict[str, list[str]]


def _unit_key(report: Mapping[str, Any], unit: Unit, index: int) -> str:
    if unit == "conversation":
        for metric in report.get("metrics", ()):
            conversation = metric.get("metadata", {}).get("conversation_id")
            if isinstance(conversation, str) and conversation:
                return "c:" + conversation
    return f"r:{report.get('trace_id', '')}:{report.get('span_id', '')}:{index}"


def _units(reports: Sequence[Mapping[str, Any]], unit: Unit) -> dict[str, dict[str, list[float]]]:
    """Measure name -> unit key -> values, in report order."""
    by_measure: dict[str, dict[str, list[float]]] = {}
    for index, report in enumerate(reports):
        key = _unit_key(report, unit, index)
        by_measure.setdefault(TOTAL, {}).setdefault(key, []).append(float(report["total_duration"]))
        for metric in report["metrics"]:
            by_measure.setdefault(metric["name"], {}).setdefault(key, []).append(float(metric["duration"]))
    return by_measure


def _ratio(interval: Interval) -> RatioJSON:
    return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}


_TINY_MS = 0.1


def _measure(name: str, result: SampleComparison) -> MeasureComparison:
    notes = list(result.notes)
    if max(result.p50_a, result.p50_b) < _TINY_MS and result.verdict in ("faster", "slower"):
        notes.append(f"under {_TINY_MS} ms at p50 on both sides: a difference this small rarely matters")
    return {
        "name": name,
        "n_a": result.n_a,
        "n_b": result.n_b,
        "units_a": result.units_a,
        "units_b": result.units_b,
        "p50_a": result.p50_a,
        "p50_b": result.p50_b,
        "p95_a": result.p95_a,
        "p95_b": result.p95_b,
        "median_ratio": _ratio(result.median_ratio),
        "p95_ratio": _ratio(result.p95_ratio),
        "p_value": result.test.p_value if result.test else None,
        "test": f"Mann-Whitney U ({result.test.method})" if result.test else None,
        "verdict": result.verdict,
        "detectable_change": result.detectable,
        "notes": notes,
    }


def compare_reports(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    *,
    operations: Sequence[str] | None = None,
    unit: Unit = "request",
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Comparison:
    """Compare reports ``b`` with reports ``a``, per operation present in both (or ``operations``).

    Each operation gets its total first, then its metrics by name. Reports must
    be well formed (see :func:`~ha_agent_tracing.analysis.validate_reports`).
    """
    if unit not in ("request", "conversation"):
        raise ValueError(f"unit must be 'request' or 'conversation', not {unit!r}")
    ops_a = list(dict.fromkeys(r["operation"] for r in a))
    ops_b = list(dict.fromkeys(r["operation"] for r in b))
    if operations is None:
        wanted = [op for op in ops_a if op in ops_b]
    else:
        missing = [op for op in operations if op not in ops_a or op not in ops_b]
        if missing:
            raise ValueError(f"operation(s) not in both sets: {', '.join(missing)}")
        wanted = list(operations)
    result: Comparison = {
        "unit": unit,
        "alpha": alpha,
        "resamples": resamples,
        "seed": seed,
        "operations": {},
        "only_in": {
            "a": [op for op in ops_a if op not in ops_b],
            "b": [op for op in ops_b if op not in ops_a],
        },
    }
    for operation in wanted:
        reports_a = [r for r in a if r["operation"] == operation]
        reports_b = [r for r in b if r["operation"] == operation]
        units_a, units_b = _units(reports_a, unit), _units(reports_b, unit)
        names = [TOTAL, *sorted(n for n in units_a if n != TOTAL and n in units_b)]
        measures = [
            _measure(
                operation if name == TOTAL else name,
                compare_samples(
                    list(units_a[name].values()),
                    list(units_b[name].values()),
                    alpha=alpha,
                    resamples=resamples,
                    seed=seed,
                ),
            )
            for name in names
        ]
        result["operations"][operation] = {
            "reports_a": len(reports_a),
            "reports_b": len(reports_b),
            "measures": measures,
            "only_in": {
                "a": sorted(n for n in units_a if n not in units_b),
                "b": sorted(n for n in units_b if n not in units_a),
            },
        }
    return result


def slower_than(comparison: Comparison, threshold: float) -> list[tuple[str, float]]:
    """The operations whose total is ``slower`` by at least ``threshold`` (0.10 for 10 %).

    A total counts when its verdict is ``slower`` (the rank test and the
    interval agree) and its ratio of medians is at least ``1 + threshold``.
    Returns ``(operation, ratio)`` pairs; empty when the gate passes.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or threshold < 0:
        raise ValueError(f"threshold must be a number of 0 or more, not {threshold!r}")
    failed: list[tuple[str, float]] = []
    for operation, data in comparison["operations"].items():
        total = data["measures"][0]
        ratio = total["median_ratio"]["estimate"]
        if total["verdict"] == "slower" and ratio >= 1 + threshold:
            failed.append((operation, ratio))
    return failed
