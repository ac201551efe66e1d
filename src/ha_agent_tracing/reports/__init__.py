"""Spans to reports: the processor that groups a request's spans, the fold, and the store.

Data flows one way through this package: the :class:`ReportProcessor` keeps a
compact :class:`SpanRecord` of each finished span, grouped by request;
:func:`fold` turns one request's records into the documented :class:`Report`;
the :class:`ReportStore` keeps the newest reports for queries and tells its
listeners about each one; the :class:`History` keeps every report in SQLite
for its retention. Nothing here exports or reads configuration.
"""

from __future__ import annotations

from ha_agent_tracing.reports._entries import ReportEntry
from ha_agent_tracing.reports._fold import OPERATION_ATTRIBUTE, fold
from ha_agent_tracing.reports._history import History, HistoryReader, HistoryUnavailable
from ha_agent_tracing.reports._jaeger import (
    JaegerError,
    is_metric_span,
    read_jaeger,
    read_jaeger_trace,
    reports_from_otlp_spans,
)
from ha_agent_tracing.reports._otlp_json import (
    OtlpEvent,
    OtlpJsonError,
    OtlpLimits,
    OtlpLink,
    OtlpSpan,
    parse_otlp_json,
    to_span_record,
)
from ha_agent_tracing.reports._processor import TRACER_NAME, ReportProcessor, is_tracked_metric
from ha_agent_tracing.reports._records import SpanRecord, SpanSource
from ha_agent_tracing.reports._store import ReportListener, ReportStore, copy_report
from ha_agent_tracing.reports._summary import summarize
from ha_agent_tracing.reports._types import Report, ReportMetric, ReportStatus

__all__ = [
    "OPERATION_ATTRIBUTE",
    "TRACER_NAME",
    "History",
    "HistoryReader",
    "HistoryUnavailable",
    "JaegerError",
    "OtlpEvent",
    "OtlpJsonError",
    "OtlpLimits",
    "OtlpLink",
    "OtlpSpan",
    "Report",
    "ReportEntry",
    "ReportListener",
    "ReportMetric",
    "ReportProcessor",
    "ReportStatus",
    "ReportStore",
    "SpanRecord",
    "SpanSource",
    "copy_report",
    "fold",
    "is_metric_span",
    "is_tracked_metric",
    "parse_otlp_json",
    "read_jaeger",
    "read_jaeger_trace",
    "reports_from_otlp_spans",
    "summarize",
    "to_span_record",
]
