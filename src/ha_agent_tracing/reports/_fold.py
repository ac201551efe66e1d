"""Folding the finished spans of one request into the documented report.

A pure function over SDK ``ReadableSpan`` objects, so it is tested without a
processor. It runs when a report is first read, not while the request runs:
:class:`FoldOnRead` holds a finished request's spans until then, so a request
whose report nobody reads never pays for building it.

The report keeps the reference document's keys and units::

    {"operation": "chat_request",          # stable name, never a per-request id
     "total_duration": 2345.67,            # ms, the local root span's duration
     "timestamp": 1764100000.123,          # epoch seconds at the root's start
     "metrics": [{"name": "rate_limit_check", "duration": 0.5,  # ms
                  "metadata": {"exceeded": False}, ...}]}

and adds what a trace tool needs to cross-reference: ``trace_id`` (32 hex
digits), ``span_id``, ``status``, ``sampled``, and per metric ``start_offset``
(ms after the root started), ``parent`` (the enclosing metric, if any),
``span_id``, ``parent_span_id`` and ``status``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ha_agent_tracing._attributes import NOT_METADATA, RESERVED_PREFIX

__all__ = ["OPERATION_ATTRIBUTE", "FoldOnRead", "Report", "fold", "fold_metric"]

OPERATION_ATTRIBUTE = RESERVED_PREFIX + "operation"

Report = dict[str, Any]

_NS_PER_MS = 1_000_000.0


def _ms(start: int | None, end: int | None) -> float:
    if start is None or end is None:
        return 0.0
    return (end - start) / _NS_PER_MS


def _duration_ns(span: ReadableSpan) -> int:
    start, end = span.start_time, span.end_time
    return end - start if start is not None and end is not None else 0


def _span_id(span: ReadableSpan) -> int:
    return span.context.span_id if span.context is not None else 0


def _status(span: ReadableSpan) -> str:
    return "error" if span.status.status_code is StatusCode.ERROR else "ok"


def _attribute_items(span: ReadableSpan) -> Iterable[tuple[str, Any]]:
    # A finished span's attributes no longer change. Reading the SDK's plain dict
    # behind BoundedAttributes avoids a Python-level lookup per key through two
    # mapping wrappers (the largest share of folding); any other shape falls back.
    raw = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(raw) is dict:
        return raw.items()
    return (span.attributes or {}).items()


def _metadata(span: ReadableSpan) -> dict[str, Any]:
    return {
        key: list(value) if type(value) is tuple else value
        for key, value in _attribute_items(span)
        if not key.startswith(RESERVED_PREFIX) and key not in NOT_METADATA
    }


def operation_name(root: ReadableSpan, spans: Sequence[ReadableSpan]) -> str:
    """The operation a request belongs to.

    The root's ``ha_agent_tracing.operation`` attribute wins, then the
    earliest span that carries one, then the root span's own name.
    """
    attributes = root.attributes or {}
    named = attributes.get(OPERATION_ATTRIBUTE)
    if isinstance(named, str):
        return named
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        named = (span.attributes or {}).get(OPERATION_ATTRIBUTE)
        if isinstance(named, str):
            return named
    return root.name


def fold_metric(span: ReadableSpan, root_start: int, names: Mapping[int, str]) -> dict[str, Any]:
    """One span as a report metric; ``names`` maps span ids of the request's metrics to names."""
    parent = span.parent
    parent_id = parent.span_id if parent is not None else None
    start, end = span.start_time, span.end_time
    failed = span.status.status_code is StatusCode.ERROR
    metric: dict[str, Any] = {
        "name": span.name,
        "duration": (end - start) / _NS_PER_MS if start is not None and end is not None else 0.0,
        "metadata": _metadata(span),
        "start_offset": (start - root_start) / _NS_PER_MS if start is not None else 0.0,
        "parent": names.get(parent_id) if parent_id is not None else None,
        "parent_span_id": f"{parent_id:016x}" if parent_id is not None else None,
        "span_id": f"{_span_id(span):016x}",
        "status": "error" if failed else "ok",
    }
    if failed and span.status.description:
        metric["error"] = span.status.description
    return metric


def fold(
    root: ReadableSpan,
    spans: Sequence[ReadableSpan],
    is_metric: Callable[[ReadableSpan], bool],
) -> Report:
    """Build the report of one local root from its finished spans (root included or not)."""
    root_ctx = root.get_span_context()
    if root_ctx is None:
        raise ValueError("a span without a context cannot be folded")
    root_start = root.start_time or 0
    root_id = root_ctx.span_id
    tracked = [s for s in spans if _span_id(s) != root_id and is_metric(s)]
    tracked.sort(key=lambda s: s.start_time or 0)
    names = {_span_id(s): s.name for s in tracked}
    metrics = [fold_metric(span, root_start, names) for span in tracked]
    report: Report = {
        "operation": operation_name(root, spans),
        "total_duration": _ms(root.start_time, root.end_time),
        "timestamp": root_start / 1e9,
        "metrics": metrics,
        "trace_id": f"{root_ctx.trace_id:032x}",
        "span_id": f"{root_ctx.span_id:016x}",
        "root_span": root.name,
        "status": _status(root),
        "sampled": root_ctx.trace_flags.sampled,
    }
    return report


class FoldOnRead:
    """A finished request's spans, folded into its report the first time it is read.

    ``spans`` is the processor's own list of the request's finished spans: it
    only grows (late spans are appended after the root ended), and a read folds
    again when it has grown since the last one.
    """

    __slots__ = ("_cached", "_is_metric", "_on_error", "_root", "_spans", "key")

    def __init__(
        self,
        root: ReadableSpan,
        spans: list[ReadableSpan],
        is_metric: Callable[[ReadableSpan], bool],
        on_error: Callable[[Exception], None],
    ) -> None:
        ctx = root.get_span_context()
        if ctx is None:
            raise ValueError("a span without a context cannot be folded")
        self.key = (ctx.trace_id, ctx.span_id)  # formatted as hex only when folded
        self._root = root
        self._spans = spans
        self._is_metric = is_metric
        self._on_error = on_error
        self._cached: tuple[int, Report] | None = None

    def headline(self, slowest: int = 3) -> tuple[str, float, str, list[tuple[str, float]]]:
        """Operation, total ms, trace id and the ``slowest`` metrics (name, ms), without folding.

        What the per-request log line needs, read straight from the spans, so that
        logging each request does not build its report on the request's thread.
        """
        root = self._root
        spans = self._spans[:]
        tracked = [s for s in spans if self._is_metric(s) and s is not root]
        longest = heapq.nlargest(slowest, tracked, key=_duration_ns)
        return (
            operation_name(root, spans),
            _ms(root.start_time, root.end_time),
            f"{self.key[0]:032x}",
            [(s.name, _duration_ns(s) / _NS_PER_MS) for s in longest],
        )

    def report(self) -> Report | None:
        """The report, folded now if spans arrived since the last read; ``None`` if folding failed."""
        spans = self._spans[:]  # a snapshot: appends on other threads do not disturb the fold
        cached = self._cached
        if cached is not None and cached[0] == len(spans):
            return cached[1]
        try:
            report = fold(self._root, spans, self._is_metric)
        except Exception as exc:  # noqa: BLE001 - a broken span must not break the query
            self._on_error(exc)
            return None
        self._cached = (len(spans), report)
        return report
