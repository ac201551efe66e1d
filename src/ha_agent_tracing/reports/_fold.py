"""Folding the finished spans of one request into the documented report.

A pure function over :class:`~ha_agent_tracing.reports.SpanRecord` s, so it
serves every source of spans alike: the processor's records of this process,
the browser relay's, a trace read back from a trace backend::

    report = fold(root_record, records)     # root included in records or not

The report keeps the reference document's keys and units::

    {"operation": "chat_request",          # stable name, never a per-request id
     "total_duration": 2345.67,            # ms, the local root span's duration
     "timestamp": 1764100000.123,          # epoch seconds at the root's start
     "metrics": [{"name": "rate_limit_check", "duration": 0.5,  # ms
                  "metadata": {"exceeded": False}, ...}]}

and adds what a trace tool needs to cross-reference: ``trace_id`` (32 hex
digits), ``span_id``, ``root_span``, ``status``, ``sampled``, ``truncated``,
and per metric ``start_offset`` (ms after the root started), ``parent`` (the
name of the nearest enclosing metric, if any: spans in between that are not
metrics, such as an HTTP client span, are looked through), ``span_id``,
``parent_span_id`` (the direct parent span, metric or not), ``status`` and
``source``. :mod:`ha_agent_tracing.reports._types` types every key.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from ha_agent_tracing._attributes import NOT_METADATA, RESERVED_PREFIX, VARIANT_ATTRIBUTE
from ha_agent_tracing.reports._records import SpanRecord
from ha_agent_tracing.reports._types import Report, ReportMetric

__all__ = [
    "OPERATION_ATTRIBUTE",
    "SERVICE_VERSION",
    "deployment_attributes",
    "fold",
    "fold_metric",
    "headline",
    "operation_name",
]

OPERATION_ATTRIBUTE = RESERVED_PREFIX + "operation"

_NS_PER_MS = 1_000_000.0
_start = attrgetter("start_ns")
_duration = attrgetter("duration_ns")


_METADATA_KEYS: dict[str, bool] = {}
"""Whether an attribute key is metadata, per key seen: the same few dozen keys recur in every report."""


def _is_metadata(key: str) -> bool:
    kept = not key.startswith(RESERVED_PREFIX) and key not in NOT_METADATA
    if len(_METADATA_KEYS) < 4096:  # bounded, against keys made per request
        _METADATA_KEYS[key] = kept
    return kept


def _metadata(attributes: Mapping[str, Any]) -> dict[str, Any]:
    known = _METADATA_KEYS
    metadata: dict[str, Any] = {}
    for key, value in attributes.items():
        kept = known.get(key)
        if kept is None:
            kept = _is_metadata(key)
        if kept:
            metadata[key] = list(value) if type(value) is tuple else value
    return metadata


def _hex16(span_id: int, cache: dict[int, str]) -> str:
    text = cache.get(span_id)
    if text is None:
        text = cache[span_id] = f"{span_id:016x}"
    return text


def operation_name(root: SpanRecord, spans: Sequence[SpanRecord]) -> str:
    """The operation a request belongs to.

    The root's ``ha_agent_tracing.operation`` attribute wins, then the
    earliest-starting span that carries one, then the root span's own name.
    """
    named = root.attributes.get(OPERATION_ATTRIBUTE)
    if isinstance(named, str):
        return named
    earliest: SpanRecord | None = None
    for span in spans:
        if isinstance(span.attributes.get(OPERATION_ATTRIBUTE), str) and (
            earliest is None or span.start_ns < earliest.start_ns
        ):
            earliest = span
    if earliest is not None:
        return earliest.attributes[OPERATION_ATTRIBUTE]
    return root.name


def fold_metric(
    span: SpanRecord,
    root_start: int,
    names: Mapping[int, str],
    parents: Mapping[int, int | None] | None = None,
) -> ReportMetric:
    """One span as a report metric.

    ``names`` maps span ids of the request's metrics to names; ``parents`` maps the
    ids of its other spans to their parents' ids, so that ``parent`` names the
    nearest enclosing metric through spans that are not metrics (without it, only
    the direct parent is looked at).
    """
    return _fold_metric(span, root_start, names, parents, {})


def _fold_metric(
    span: SpanRecord,
    root_start: int,
    names: Mapping[int, str],
    parents: Mapping[int, int | None] | None,
    hexes: dict[int, str],
) -> ReportMetric:
    """:func:`fold_metric`, with the hex text of span ids shared across one report (most share a parent)."""
    parent_id = span.parent_id
    start = span.start_ns
    metric: ReportMetric = {
        "name": span.name,
        "duration": max(span.end_ns - start, 0) / _NS_PER_MS,
        "metadata": _metadata(span.attributes),
        "start_offset": (start - root_start) / _NS_PER_MS,
        "parent": _enclosing_metric(parent_id, names, parents) if parent_id is not None else None,
        "parent_span_id": _hex16(parent_id, hexes) if parent_id is not None else None,
        "span_id": _hex16(span.span_id, hexes),
        "status": "error" if span.failed else "ok",
        "source": span.source,
    }
    if span.failed and span.error:
        metric["error"] = span.error
    return metric


def _enclosing_metric(
    parent_id: int, names: Mapping[int, str], parents: Mapping[int, int | None] | None
) -> str | None:
    """The name of the nearest metric at or above ``parent_id``, through spans that are not metrics."""
    name = names.get(parent_id)
    if name is not None or not parents:
        return name
    seen = 0
    ancestor: int | None = parents.get(parent_id)
    while ancestor is not None and seen < len(parents):  # a bound, against cycles in odd data
        name = names.get(ancestor)
        if name is not None:
            return name
        ancestor = parents.get(ancestor)
        seen += 1
    return None


def fold(root: SpanRecord, spans: Sequence[SpanRecord], *, truncated_spans: int = 0) -> Report:
    """Build the report of one local root from its request's finished spans.

    ``spans`` may include the root itself; only spans with ``is_metric`` become
    metrics, in order of start. ``truncated_spans`` says how many spans of the
    request were left out before folding (the report is then marked truncated).
    """
    root_start = root.start_ns
    root_id = root.span_id
    tracked = [s for s in spans if s.is_metric and s.span_id != root_id]
    tracked.sort(key=_start)
    names = {s.span_id: s.name for s in tracked}
    # Spans that are not metrics (HTTP client spans, other libraries'), to look through.
    parents = {s.span_id: s.parent_id for s in spans if not s.is_metric and s.span_id != root_id}
    hexes = {root_id: f"{root_id:016x}"}
    report: Report = {
        "operation": operation_name(root, spans),
        "total_duration": root.duration_ns / _NS_PER_MS,
        "timestamp": root_start / 1e9,
        "metrics": [_fold_metric(span, root_start, names, parents, hexes) for span in tracked],
        "trace_id": f"{root.trace_id:032x}",
        "span_id": hexes[root_id],
        "root_span": root.name,
        "status": "error" if root.failed else "ok",
        "sampled": root.sampled,
        "truncated": truncated_spans > 0,
        "service_version": root.extra.get(SERVICE_VERSION),
        "variant": root.extra.get(VARIANT_ATTRIBUTE),
    }
    if truncated_spans > 0:
        report["truncated_spans"] = truncated_spans
    return report


SERVICE_VERSION = "service.version"


def deployment_attributes(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a report keeps of its root's resource: ``service.version`` and the variant, when text.

    Sources put it in the root record's ``extra``; :func:`fold` reads it from there.
    """
    return MappingProxyType(
        {
            key: resource[key]
            for key in (SERVICE_VERSION, VARIANT_ATTRIBUTE)
            if isinstance(resource.get(key), str)
        }
    )


def headline(
    root: SpanRecord, spans: Sequence[SpanRecord], slowest: int = 3
) -> tuple[str, float, list[tuple[str, float]]]:
    """Operation, total ms and the ``slowest`` metrics (name, ms) of a request, without folding.

    What the per-request log line needs, read straight from the records, so
    that logging each request does not build its report on the request's thread.
    """
    tracked = [s for s in spans if s.is_metric and s.span_id != root.span_id]
    longest = heapq.nlargest(slowest, tracked, key=_duration)
    return (
        operation_name(root, spans),
        root.duration_ns / _NS_PER_MS,
        [(s.name, s.duration_ns / _NS_PER_MS) for s in longest],
    )
