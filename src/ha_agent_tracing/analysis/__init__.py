"""Reports to answers: percentiles, A/B comparisons with intervals and a verdict, bottleneck insights.

Everything here reads reports (dicts shaped as the report processor folds
them) and never records anything. ::

    from ha_agent_tracing.analysis import compare_samples

    result = compare_samples(before_units, after_units, seed=0)
    print(result.verdict, result.median_ratio)
"""

from __future__ import annotations

from ha_agent_tracing.analysis._percentiles import percentile, percentiles
from ha_agent_tracing.analysis._stats import (
    DEFAULT_RESAMPLES,
    Interval,
    MannWhitney,
    SampleComparison,
    Verdict,
    bootstrap_ratio,
    compare_samples,
    mann_whitney_u,
)

__all__ = [
    "DEFAULT_RESAMPLES",
    "Interval",
    "MannWhitney",
    "SampleComparison",
    "Verdict",
    "bootstrap_ratio",
    "compare_samples",
    "mann_whitney_u",
    "percentile",
    "percentiles",
]
