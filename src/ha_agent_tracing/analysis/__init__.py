"""Reports to answers: percentiles, A/B comparisons with intervals and a verdict, bottleneck insights, alerts.

Everything here reads reports (dicts shaped as the report processor folds
them) or the measurements derived from them, and never records anything. ::

    from ha_agent_tracing.analysis import compare_samples

    result = compare_samples(before_units, after_units, seed=0)
    print(result.verdict, result.median_ratio)

The alert rules and their evaluator act on what is read: see ``_rules`` and ``_alerts``.
"""

from __future__ import annotations

from ha_agent_tracing.analysis._alerts import Alert, AlertEngine, WebhookNotifier, alertmanager_payload
from ha_agent_tracing.analysis._compare import (
    TOTAL,
    Comparison,
    MeasureComparison,
    OperationComparison,
    compare_reports,
    slower_than,
)
from ha_agent_tracing.analysis._insights import UNTRACKED, OperationInsights, analyze_reports, critical_path
from ha_agent_tracing.analysis._percentiles import percentile, percentiles
from ha_agent_tracing.analysis._render import render_comparison, render_insights
from ha_agent_tracing.analysis._rules import (
    AlertRule,
    RuleError,
    default_rules,
    parse_expression,
    parse_rules,
    parse_rules_file,
)
from ha_agent_tracing.analysis._sources import (
    ReportSet,
    ReportSetError,
    SourceSpec,
    load_report_set,
    parse_source,
    parse_time,
    select_reports,
    validate_reports,
)
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
from ha_agent_tracing.analysis._timeline import (
    INSIGHTS_SAMPLE,
    InsightsAnswer,
    InsightsSample,
    ReportQueries,
    parse_bucket,
    summarize_rows,
    timeline,
)

__all__ = [
    "DEFAULT_RESAMPLES",
    "INSIGHTS_SAMPLE",
    "TOTAL",
    "UNTRACKED",
    "Alert",
    "AlertEngine",
    "AlertRule",
    "Comparison",
    "InsightsAnswer",
    "InsightsSample",
    "Interval",
    "MannWhitney",
    "MeasureComparison",
    "OperationComparison",
    "OperationInsights",
    "ReportQueries",
    "ReportSet",
    "ReportSetError",
    "RuleError",
    "SampleComparison",
    "SourceSpec",
    "Verdict",
    "WebhookNotifier",
    "alertmanager_payload",
    "analyze_reports",
    "bootstrap_ratio",
    "compare_reports",
    "compare_samples",
    "critical_path",
    "default_rules",
    "load_report_set",
    "mann_whitney_u",
    "parse_bucket",
    "parse_expression",
    "parse_rules",
    "parse_rules_file",
    "parse_source",
    "parse_time",
    "percentile",
    "percentiles",
    "render_comparison",
    "render_insights",
    "select_reports",
    "slower_than",
    "summarize_rows",
    "timeline",
    "validate_reports",
]
