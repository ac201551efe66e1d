"""Spans to reports: the processor that groups a request's spans, the fold, and the store.

Data flows one way through this package: the :class:`ReportProcessor` groups
finished spans by local root, :func:`fold` turns one request's spans into the
documented report, and the :class:`ReportStore` keeps the newest reports for
queries. Nothing here exports or reads configuration.
"""

from __future__ import annotations

from ha_agent_tracing.reports._fold import OPERATION_ATTRIBUTE, Report, fold
from ha_agent_tracing.reports._processor import TRACER_NAME, ReportProcessor, is_tracked_metric
from ha_agent_tracing.reports._store import ReportStore, summarize

__all__ = [
    "OPERATION_ATTRIBUTE",
    "TRACER_NAME",
    "Report",
    "ReportProcessor",
    "ReportStore",
    "fold",
    "is_tracked_metric",
    "summarize",
]
